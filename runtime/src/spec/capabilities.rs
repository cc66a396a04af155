//! Capability sets: containerd's defaults, Kubernetes' add/drop, privileged.

use std::collections::BTreeSet;

use super::SpecError;

/// Every capability Linux defines (up to 6.x), by its `CAP_` name.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's default set for unprivileged containers (the 14 Docker also grants).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Normalises a Kubernetes capability name (`NET_ADMIN`, `CAP_NET_ADMIN`, any case) to its
/// `CAP_` form, or `ALL`.
fn normalise(field: &'static str, name: &str) -> Result<String, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(SpecError::UnknownCapability {
            field,
            name: name.to_owned(),
        })
    }
}

/// The capability set of a container: all of `host` for a privileged container; otherwise the
/// defaults, minus `drop` (`ALL` drops everything), plus `add` (`ALL` adds everything the host
/// has). A capability the host itself lacks cannot be granted: that is an error naming it.
pub fn resolve(
    add: &[String],
    drop: &[String],
    privileged: bool,
    host: &BTreeSet<String>,
) -> Result<BTreeSet<String>, SpecError> {
    if privileged {
        return Ok(host.clone());
    }
    let add = add
        .iter()
        .map(|n| normalise("capabilities.add", n))
        .collect::<Result<Vec<_>, _>>()?;
    let drop = drop
        .iter()
        .map(|n| normalise("capabilities.drop", n))
        .collect::<Result<Vec<_>, _>>()?;
    let mut caps: BTreeSet<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    if drop.iter().any(|c| c == "ALL") {
        caps.clear();
    }
    for c in &drop {
        caps.remove(c);
    }
    for c in add {
        if c == "ALL" {
            caps.extend(host.iter().cloned());
        } else if host.contains(&c) {
            caps.insert(c);
        } else {
            return Err(SpecError::CapabilityUnavailable { name: c });
        }
    }
    // A default the host lacks is silently left out, as containerd does.
    caps.retain(|c| host.contains(c));
    Ok(caps)
}

/// Parses a `CapBnd:`-style hex mask from /proc/<pid>/status into capability names.
pub fn from_mask(mask: u64) -> BTreeSet<String> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1u64 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

/// The capabilities in this process's bounding set: what any container can be granted.
pub fn host_bounding_set() -> std::io::Result<BTreeSet<String>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| std::io::Error::other("no CapBnd line in /proc/self/status"))?;
    Ok(from_mask(mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn all() -> BTreeSet<String> {
        set(ALL_CAPABILITIES)
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn capability_bits_follow_the_kernel_numbering() {
        assert_eq!(ALL_CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(ALL_CAPABILITIES[24], "CAP_SYS_RESOURCE");
        assert_eq!(ALL_CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
        // This host's mask 0x1fffeffffff lacks exactly CAP_SYS_RESOURCE.
        let caps = from_mask(0x1ff_feff_ffff);
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains("CAP_SYS_RESOURCE"));
    }

    #[test]
    fn add_and_drop_adjust_the_default_set() {
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&[], &[], DEFAULT_CAPABILITIES),
            (
                &["NET_ADMIN"],
                &[],
                &[DEFAULT_CAPABILITIES, &["CAP_NET_ADMIN"]].concat(),
            ),
            (&[], &["ALL"], &[]),
            (&["NET_BIND_SERVICE"], &["all"], &["CAP_NET_BIND_SERVICE"]),
            (
                &[],
                &["CAP_NET_RAW", "mknod"],
                &[
                    "CAP_CHOWN",
                    "CAP_DAC_OVERRIDE",
                    "CAP_FSETID",
                    "CAP_FOWNER",
                    "CAP_SETGID",
                    "CAP_SETUID",
                    "CAP_SETFCAP",
                    "CAP_SETPCAP",
                    "CAP_NET_BIND_SERVICE",
                    "CAP_SYS_CHROOT",
                    "CAP_KILL",
                    "CAP_AUDIT_WRITE",
                ],
            ),
            (&["ALL"], &[], ALL_CAPABILITIES),
        ];
        for (add, drop, want) in cases {
            let got = resolve(&strings(add), &strings(drop), false, &all()).unwrap();
            assert_eq!(got, set(want), "add {add:?} drop {drop:?}");
        }
    }

    #[test]
    fn privileged_gets_everything_the_host_has() {
        let host = set(&["CAP_CHOWN", "CAP_SYS_ADMIN"]);
        assert_eq!(resolve(&[], &strings(&["ALL"]), true, &host).unwrap(), host);
    }

    #[test]
    fn unknown_or_unavailable_capabilities_are_errors_naming_them() {
        let err = resolve(&strings(&["FLY"]), &[], false, &all()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "capabilities.add: unknown capability \"FLY\""
        );
        let host = set(DEFAULT_CAPABILITIES);
        let err = resolve(&strings(&["SYS_RESOURCE"]), &[], false, &host).unwrap_err();
        assert_eq!(
            err.to_string(),
            "capability CAP_SYS_RESOURCE cannot be granted: this host's runtime does not have it"
        );
    }
}
