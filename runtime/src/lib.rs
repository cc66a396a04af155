//! berth's container runtime layer. See ARCHITECTURE.md.
