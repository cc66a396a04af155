//! Cluster state: commands, the state machine and its replicated, persisted log.
