//! The default seccomp profile (moby's / containerd's RuntimeDefault) as data, turned into an
//! OCI `linux.seccomp` for a given capability set and architecture.

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde::Deserialize;

const DEFAULT_PROFILE: &str = include_str!("seccomp_default.json");

#[derive(Deserialize)]
struct Profile {
    default_errno: u32,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno: Option<u32>,
    #[serde(default)]
    args: Vec<(usize, u64, u64, String)>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    not_arches: Vec<String>,
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    not_caps: Vec<String>,
}

/// The host architecture in the Go naming the profile uses, and the seccomp architectures a
/// filter must cover on it (native plus compat ABIs), as containerd chooses them.
pub fn host_arch() -> (&'static str, Vec<Arch>) {
    match std::env::consts::ARCH {
        "x86_64" => (
            "amd64",
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        ),
        "aarch64" => ("arm64", vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]),
        "x86" => ("x86", vec![Arch::ScmpArchX86]),
        "arm" => ("arm", vec![Arch::ScmpArchArm]),
        "riscv64" => ("riscv64", vec![Arch::ScmpArchRiscv64]),
        "s390x" => ("s390x", vec![Arch::ScmpArchS390x, Arch::ScmpArchS390]),
        "powerpc64" => ("ppc64le", vec![Arch::ScmpArchPpc64le]),
        other => (other, Vec::new()),
    }
}

fn operator(op: &str) -> LinuxSeccompOperator {
    match op {
        "ne" => LinuxSeccompOperator::ScmpCmpNe,
        "lt" => LinuxSeccompOperator::ScmpCmpLt,
        "le" => LinuxSeccompOperator::ScmpCmpLe,
        "ge" => LinuxSeccompOperator::ScmpCmpGe,
        "gt" => LinuxSeccompOperator::ScmpCmpGt,
        "masked_eq" => LinuxSeccompOperator::ScmpCmpMaskedEq,
        _ => LinuxSeccompOperator::ScmpCmpEq,
    }
}

/// Builds the default profile for a container whose effective capabilities are `caps`
/// (`CAP_...` names) on architecture `arch` (Go naming, e.g. `amd64`) covering `arches`.
pub fn default_profile(caps: &BTreeSet<String>, arch: &str, arches: Vec<Arch>) -> LinuxSeccomp {
    // The profile is compiled into the binary and covered by tests: a parse failure is a
    // build defect, not a runtime condition.
    let profile: Profile =
        serde_json::from_str(DEFAULT_PROFILE).expect("built-in seccomp profile is valid JSON");
    let mut syscalls = Vec::new();
    for rule in profile.rules {
        if !rule.arches.is_empty() && !rule.arches.iter().any(|a| a == arch) {
            continue;
        }
        if rule.not_arches.iter().any(|a| a == arch) {
            continue;
        }
        if !rule.caps.iter().all(|c| caps.contains(c)) {
            continue;
        }
        if rule.not_caps.iter().any(|c| caps.contains(c)) {
            continue;
        }
        let (action, errno) = match rule.action.as_str() {
            "errno" => (LinuxSeccompAction::ScmpActErrno, rule.errno),
            _ => (LinuxSeccompAction::ScmpActAllow, None),
        };
        let mut syscall = LinuxSyscall::default();
        syscall.set_names(rule.names);
        syscall.set_action(action);
        syscall.set_errno_ret(errno);
        if !rule.args.is_empty() {
            let args = rule
                .args
                .iter()
                .map(|(index, value, value_two, op)| {
                    LinuxSeccompArgBuilder::default()
                        .index(*index)
                        .value(*value)
                        .value_two(*value_two)
                        .op(operator(op))
                        .build()
                        .expect("all fields of a seccomp arg are set")
                })
                .collect();
            syscall.set_args(Some(args));
        }
        syscalls.push(syscall);
    }
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActErrno);
    seccomp.set_default_errno_ret(Some(profile.default_errno));
    seccomp.set_architectures(Some(arches));
    seccomp.set_syscalls(Some(syscalls));
    seccomp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(seccomp: &LinuxSeccomp, name: &str) -> bool {
        seccomp.syscalls().as_ref().unwrap().iter().any(|s| {
            s.action() == LinuxSeccompAction::ScmpActAllow
                && s.args().is_none()
                && s.names().iter().any(|n| n == name)
        })
    }

    fn caps(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_profile_denies_by_default_with_eperm() {
        let p = default_profile(&caps(&[]), "amd64", vec![Arch::ScmpArchX86_64]);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        assert!(allowed(&p, "read"));
        assert!(allowed(&p, "execve"));
        assert!(!allowed(&p, "mount"));
        assert!(!allowed(&p, "kexec_load"));
    }

    #[test]
    fn capability_gated_rules_follow_the_capabilities() {
        let table: &[(&[&str], &str, bool)] = &[
            (&[], "mount", false),
            (&["CAP_SYS_ADMIN"], "mount", true),
            (&["CAP_SYS_ADMIN"], "unshare", true),
            (&[], "chroot", false),
            (&["CAP_SYS_CHROOT"], "chroot", true),
            (&["CAP_SYS_PTRACE"], "kcmp", true),
            (&[], "kcmp", false),
            (&["CAP_SYS_TIME"], "settimeofday", true),
        ];
        for (cap_list, name, want) in table {
            let p = default_profile(&caps(cap_list), "amd64", vec![]);
            assert_eq!(allowed(&p, name), *want, "{name} with {cap_list:?}");
        }
    }

    #[test]
    fn clone_is_restricted_and_clone3_returns_enosys_without_sys_admin() {
        let p = default_profile(&caps(&[]), "amd64", vec![]);
        let rules = p.syscalls().as_ref().unwrap();
        let clone = rules
            .iter()
            .find(|s| s.names() == &vec!["clone".to_string()])
            .expect("clone rule");
        let arg = clone.args().as_ref().unwrap()[0];
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(
            (arg.index(), arg.value(), arg.value_two()),
            (0, 0x7E02_0000, Some(0))
        );
        let clone3 = rules
            .iter()
            .find(|s| s.names() == &vec!["clone3".to_string()])
            .expect("clone3 rule");
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(38));

        let admin = default_profile(&caps(&["CAP_SYS_ADMIN"]), "amd64", vec![]);
        assert!(allowed(&admin, "clone3"));
        assert!(
            !admin
                .syscalls()
                .as_ref()
                .unwrap()
                .iter()
                .any(|s| s.action() == LinuxSeccompAction::ScmpActErrno)
        );
    }

    #[test]
    fn arch_specific_rules_apply_only_on_their_arch() {
        let amd64 = default_profile(&caps(&[]), "amd64", vec![]);
        assert!(allowed(&amd64, "arch_prctl"));
        assert!(!allowed(&amd64, "set_tls"));
        let arm64 = default_profile(&caps(&[]), "arm64", vec![]);
        assert!(!allowed(&arm64, "arch_prctl"));
        assert!(allowed(&arm64, "set_tls"));
    }

    #[test]
    fn host_arch_covers_compat_abis() {
        let (name, arches) = host_arch();
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(name, "amd64");
            assert!(arches.contains(&Arch::ScmpArchX86));
        }
        assert!(!arches.is_empty());
    }
}
