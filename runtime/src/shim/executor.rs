//! The last step inside a container process before it becomes the workload: reset the signal
//! state inherited from the shim and install the container's seccomp filter when berth, not
//! libcontainer, applies it (a precompiled program, and for exec'd processes the profile,
//! since libcontainer's tenant path does not carry `linux.seccomp` over).

use libcontainer::oci_spec::runtime::{LinuxSeccomp, Spec};
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use crate::seccomp_program::Program;

/// The seccomp filter the executor installs right before `execve`.
#[derive(Clone)]
pub enum SeccompFilter {
    /// Compiled ahead of time by the agent: one `seccomp(2)` call.
    Program(Program),
    /// An OCI profile, compiled here with libseccomp.
    Profile(LinuxSeccomp),
}

/// berth's libcontainer executor.
#[derive(Clone)]
pub struct ContainerExecutor {
    /// Installed right before `execve` when set.
    pub seccomp: Option<SeccompFilter>,
}

impl Executor for ContainerExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // The shim blocks the signals it reads through a signalfd; a container must start with
        // an empty mask and default dispositions (`SigIgn: 0`, as under runc).
        super::process_setup::reset_signals()
            .map_err(|e| ExecutorError::Other(format!("failed to reset signals: {e}")))?;
        let installed = match &self.seccomp {
            None => Ok(()),
            Some(SeccompFilter::Program(program)) => program.install().map_err(|e| e.to_string()),
            Some(SeccompFilter::Profile(profile)) => {
                libcontainer::seccomp::initialize_seccomp(profile)
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        installed
            .map_err(|e| ExecutorError::Other(format!("failed to install seccomp filter: {e}")))?;
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}
