//! berth agent. See ARCHITECTURE.md.
