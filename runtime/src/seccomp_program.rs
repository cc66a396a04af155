//! A container's seccomp filter compiled once, ahead of time, instead of in every container
//! process.
//!
//! libcontainer compiles the OCI `linux.seccomp` profile with libseccomp inside each container
//! init and each exec'd process; for the default profile (about 350 syscalls, several with
//! argument checks) that is most of the CPU an exec readiness probe costs. berth compiles the
//! profile in the agent instead ([`Programs::compile`], cached per distinct profile), writes
//! the BPF program into the container's bundle, and the shim installs it with one `seccomp(2)`
//! call right before `execve` ([`install`]). The program is exactly what libseccomp would have
//! loaded: the same translation as libcontainer's, exported with `seccomp_export_bpf`.
//!
//! Only profiles without flags or notify actions are compiled ahead, and only for processes
//! with no_new_privs (a filter can be installed after the capabilities are dropped only then);
//! the others keep libcontainer's own path.

use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

/// Size of one classic BPF instruction (`struct sock_filter`).
const INSTRUCTION: usize = std::mem::size_of::<libc::sock_filter>();

/// A profile that could not be compiled ahead of time.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("the seccomp profile uses {what}, which berth leaves to libcontainer")]
    NotPrecompilable { what: &'static str },
    #[error("seccomp errno {errno} does not fit a trace action")]
    TraceErrno { errno: u32 },
    #[error("compiling the seccomp profile: {step}")]
    Libseccomp {
        step: &'static str,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("exporting the compiled seccomp filter")]
    Export {
        #[source]
        source: std::io::Error,
    },
}

/// A seccomp program that cannot be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the seccomp program is {len} bytes, not a whole number of instructions")]
    Malformed { len: usize },
    #[error("installing the seccomp program")]
    Syscall {
        #[source]
        source: std::io::Error,
    },
}

/// Compiled programs by profile, so each distinct profile is compiled once per agent (an
/// agent sees a handful: the default profile per capability set).
#[derive(Debug, Default)]
pub struct Programs {
    cache: Mutex<Vec<(LinuxSeccomp, Arc<[u8]>)>>,
}

impl Programs {
    /// The BPF program for `profile`, compiled on first use.
    pub fn compile(&self, profile: &LinuxSeccomp) -> Result<Arc<[u8]>, CompileError> {
        let cached = |cache: &[(LinuxSeccomp, Arc<[u8]>)]| {
            cache
                .iter()
                .find(|(known, _)| known == profile)
                .map(|(_, program)| program.clone())
        };
        if let Some(program) = cached(&self.cache.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(program);
        }
        let program: Arc<[u8]> = compile(profile)?.into();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cached(&cache).is_none() {
            cache.push((profile.clone(), program.clone()));
        }
        Ok(program)
    }
}

/// Compiles `profile` to the BPF program libseccomp would load for it.
pub fn compile(profile: &LinuxSeccomp) -> Result<Vec<u8>, CompileError> {
    if profile.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(CompileError::NotPrecompilable {
            what: "filter flags",
        });
    }
    let notify = profile.default_action() == LinuxSeccompAction::ScmpActNotify
        || profile
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.action() == LinuxSeccompAction::ScmpActNotify);
    if notify {
        return Err(CompileError::NotPrecompilable {
            what: "notify actions",
        });
    }
    let lib = |step| move |source| CompileError::Libseccomp { step, source };
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("creating the filter"))?;
    for &arch in profile.architectures().iter().flatten() {
        ctx.add_arch(architecture(arch))
            .map_err(lib("adding an architecture"))?;
    }
    // As libcontainer: no_new_privs is the process spec's business, not the filter's.
    ctx.set_ctl_nnp(false)
        .map_err(lib("clearing the nnp attribute"))?;
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue;
        }
        let comparators: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                ScmpArgCompare::new(a.index() as u32, operator(a.op(), a.value_two()), a.value())
            })
            .collect();
        let mut indexes: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            // A name this libseccomp does not know is a syscall this kernel does not have.
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                continue;
            };
            if comparators.is_empty() {
                ctx.add_rule(act, syscall).map_err(lib("adding a rule"))?;
            } else if repeated {
                // One argument compared twice: one rule per comparison (libseccomp allows an
                // argument once per rule), as runc and libcontainer do.
                for c in &comparators {
                    ctx.add_rule_conditional(act, syscall, std::slice::from_ref(c))
                        .map_err(lib("adding a rule"))?;
                }
            } else {
                ctx.add_rule_conditional(act, syscall, &comparators)
                    .map_err(lib("adding a rule"))?;
            }
        }
    }
    export(&ctx)
}

/// A compiled program ready to install: decoded and checked beforehand, so that installing
/// it allocates nothing (the shim installs it in a freshly forked container process).
#[derive(Debug, Clone)]
pub struct Program {
    instructions: Vec<libc::sock_filter>,
}

impl Program {
    /// Decodes a program as [`compile`] produced it (native-endian `struct sock_filter`s).
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, InstallError> {
        let malformed = || InstallError::Malformed { len: bytes.len() };
        if bytes.is_empty() || bytes.len() % INSTRUCTION != 0 {
            return Err(malformed());
        }
        if u16::try_from(bytes.len() / INSTRUCTION).is_err() {
            return Err(malformed());
        }
        let instructions = bytes
            .chunks_exact(INSTRUCTION)
            .map(|c| libc::sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Program { instructions })
    }

    /// Installs the program on the calling thread (the shim does it in a single-threaded
    /// process right before `execve`). Needs no_new_privs or CAP_SYS_ADMIN.
    pub fn install(&self) -> Result<(), InstallError> {
        let fprog = libc::sock_fprog {
            // Checked by `from_bytes`.
            len: self.instructions.len() as u16,
            filter: self.instructions.as_ptr().cast_mut(),
        };
        // SAFETY: `fprog` points at `len` initialised instructions that live until the call
        // returns; the kernel copies the program and validates it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &fprog as *const libc::sock_fprog,
            )
        };
        if rc != 0 {
            return Err(InstallError::Syscall {
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }
}

/// The program, through an anonymous file (libseccomp 2.5 exports only to a descriptor).
fn export(ctx: &ScmpFilterContext) -> Result<Vec<u8>, CompileError> {
    let export = |source| CompileError::Export { source };
    let fd = nix::sys::memfd::memfd_create(
        c"berth-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| export(e.into()))?;
    let mut file = std::fs::File::from(fd);
    ctx.export_bpf(&file)
        .map_err(|e| export(std::io::Error::other(e)))?;
    let mut program = Vec::new();
    file.seek(SeekFrom::Start(0)).map_err(export)?;
    file.read_to_end(&mut program).map_err(export)?;
    Ok(program)
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction, CompileError> {
    let errno_value = errno.map(|e| e as i32).unwrap_or(libc::EPERM);
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno_value),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(u16::try_from(errno_value).map_err(
            |_| CompileError::TraceErrno {
                errno: errno.unwrap_or_default(),
            },
        )?),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(CompileError::NotPrecompilable {
                what: "notify actions",
            });
        }
    })
}

fn operator(op: LinuxSeccompOperator, datum_b: Option<u64>) -> ScmpCompareOp {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(datum_b.unwrap_or(0)),
    }
}

fn architecture(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::seccomp as profile;

    fn default_profile() -> LinuxSeccomp {
        let (arch, arches) = profile::host_arch();
        profile::default_profile(&Default::default(), arch, arches)
    }

    #[test]
    fn the_default_profile_compiles_to_whole_instructions() {
        let program = compile(&default_profile()).unwrap();
        assert!(program.len() > 100 * INSTRUCTION, "{} bytes", program.len());
        assert_eq!(program.len() % INSTRUCTION, 0);
    }

    #[test]
    fn the_same_profile_is_compiled_once_and_a_different_one_again() {
        let programs = Programs::default();
        let a = programs.compile(&default_profile()).unwrap();
        let b = programs.compile(&default_profile()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let mut other = default_profile();
        other.set_default_errno_ret(Some(libc::ENOSYS as u32));
        let c = programs.compile(&other).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_ne!(&a[..], &c[..]);
    }

    #[test]
    fn profiles_with_flags_or_notify_are_left_to_libcontainer() {
        let mut flagged = default_profile();
        flagged.set_flags(Some(vec![
            oci_spec::runtime::LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        ]));
        assert!(matches!(
            compile(&flagged),
            Err(CompileError::NotPrecompilable { .. })
        ));
        let mut notify = default_profile();
        notify.set_default_action(LinuxSeccompAction::ScmpActNotify);
        assert!(matches!(
            compile(&notify),
            Err(CompileError::NotPrecompilable { .. })
        ));
    }

    #[test]
    fn a_torn_program_is_refused_before_the_kernel_sees_it() {
        assert!(matches!(
            Program::from_bytes(&[0u8; 7]),
            Err(InstallError::Malformed { len: 7 })
        ));
        assert!(matches!(
            Program::from_bytes(&[]),
            Err(InstallError::Malformed { len: 0 })
        ));
    }

    #[test]
    fn an_installed_program_denies_what_the_profile_denies() {
        // In a child process: a filter cannot be removed once installed.
        let mut p = default_profile();
        // Deny one harmless syscall on top of the default profile so the child can observe it.
        let mut deny = oci_spec::runtime::LinuxSyscall::default();
        deny.set_names(vec!["getppid".to_owned()]);
        deny.set_action(LinuxSeccompAction::ScmpActErrno);
        deny.set_errno_ret(Some(libc::EACCES as u32));
        let mut syscalls = vec![deny];
        for mut rule in p.syscalls().clone().unwrap_or_default() {
            let names: Vec<String> = rule
                .names()
                .iter()
                .filter(|n| *n != "getppid")
                .cloned()
                .collect();
            if !names.is_empty() {
                rule.set_names(names);
                syscalls.push(rule);
            }
        }
        p.set_syscalls(Some(syscalls));
        let program = Program::from_bytes(&compile(&p).unwrap()).unwrap();
        // SAFETY: the child allocates nothing: it makes raw syscalls (prctl, seccomp through
        // the program decoded beforehand, getppid) and leaves with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                // SAFETY: plain syscalls in the forked child.
                unsafe {
                    libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                }
                let code = match program.install() {
                    Err(_) => 2,
                    Ok(()) => {
                        // SAFETY: getppid has no preconditions; the filter makes it fail.
                        let r = unsafe { libc::syscall(libc::SYS_getppid) };
                        let errno = std::io::Error::last_os_error().raw_os_error();
                        if r == -1 && errno == Some(libc::EACCES) {
                            0
                        } else {
                            3
                        }
                    }
                };
                // SAFETY: leave the forked child without running the test harness's exit.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
