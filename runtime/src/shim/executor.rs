//! The last step inside a container process before it becomes the workload: reset the signal
//! state inherited from the shim and, for exec'd processes, install the container's seccomp
//! filter (libcontainer's tenant path does not carry `linux.seccomp` over).

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

/// berth's libcontainer executor.
#[derive(Clone)]
pub struct ContainerExecutor {
    /// Installed right before `execve` when set (exec'd processes only: the init process gets
    /// the spec's filter from libcontainer).
    pub seccomp: Option<LinuxSeccomp>,
}

impl Executor for ContainerExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // The shim blocks the signals it reads through a signalfd; a container must start with
        // an empty mask and default dispositions (`SigIgn: 0`, as under runc).
        super::process_setup::reset_signals()
            .map_err(|e| ExecutorError::Other(format!("failed to reset signals: {e}")))?;
        if let Some(seccomp) = &self.seccomp {
            libcontainer::seccomp::initialize_seccomp(seccomp).map_err(|e| {
                ExecutorError::Other(format!("failed to install seccomp filter: {e}"))
            })?;
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
