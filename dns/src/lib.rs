//! berth DNS authority. See ARCHITECTURE.md.
