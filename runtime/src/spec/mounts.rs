//! The mounts of a container: containerd's defaults, the pod's files, and volume mounts.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use super::SpecError;

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(typ.to_owned()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

/// A bind mount, recursive, private.
pub fn bind(source: &Path, destination: &str, read_only: bool) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some("bind".to_owned()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(vec![
        "rbind".to_owned(),
        "rprivate".to_owned(),
        if read_only { "ro" } else { "rw" }.to_owned(),
    ]));
    m
}

/// Where /dev/shm comes from.
pub enum Shm<'a> {
    /// The pod's shared tmpfs (bind-mounted, so the pod's containers share it).
    Pod(&'a Path),
    /// The host's /dev/shm (hostIPC).
    Host,
    /// A private tmpfs.
    Private,
}

/// The filesystems every container gets, as containerd's CRI plugin sets them up. `own_netns`:
/// sysfs can only be mounted in a network namespace of one's own; otherwise the host's /sys is
/// bind-mounted read-only, as runc does.
pub fn defaults(privileged: bool, own_netns: bool, shm: Shm<'_>) -> Vec<Mount> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    mounts.push(match shm {
        Shm::Pod(path) => {
            let mut m = bind(path, "/dev/shm", false);
            if let Some(o) = m.options_mut() {
                o.extend(["nosuid", "nodev", "noexec"].map(String::from));
            }
            m
        }
        Shm::Host => bind(Path::new("/dev/shm"), "/dev/shm", false),
        Shm::Private => mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    });
    let ro = if privileged { "rw" } else { "ro" };
    if own_netns {
        mounts.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", ro],
        ));
    } else {
        mounts.push(mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "rprivate", "nosuid", "noexec", "nodev", ro],
        ));
    }
    mounts.push(mount(
        "/sys/fs/cgroup",
        "cgroup",
        "cgroup",
        &["nosuid", "noexec", "nodev", "relatime", ro],
    ));
    mounts
}

/// containerd's masked paths: hidden behind /dev/null or an empty read-only tmpfs.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Checks a mount path inside the container: absolute, not the root itself, and not climbing
/// above the root with `..`. Returns it normalised (no `.`, `..` or repeated slashes).
pub fn normalise_mount_path(path: &str) -> Result<String, SpecError> {
    let outside = || SpecError::MountPathOutsideRoot {
        path: path.to_owned(),
    };
    if !path.starts_with('/') {
        return Err(SpecError::RelativeMountPath {
            path: path.to_owned(),
        });
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or_else(outside)?;
            }
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(outside)?),
            Component::Prefix(_) => return Err(outside()),
        }
    }
    if parts.is_empty() {
        return Err(SpecError::MountOverRoot {
            path: path.to_owned(),
        });
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Depth of a normalised path, for ordering mounts parents first (as containerd does).
pub fn depth(path: &str) -> usize {
    path.split('/').filter(|s| !s.is_empty()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_normalised_or_rejected_with_their_name() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("/data", Ok("/data")),
            ("/data/", Ok("/data")),
            ("//a/./b", Ok("/a/b")),
            ("/a/b/../c", Ok("/a/c")),
            (
                "/../etc",
                Err("mount path \"/../etc\" resolves outside the container's root"),
            ),
            (
                "/a/../../etc",
                Err("mount path \"/a/../../etc\" resolves outside the container's root"),
            ),
            ("data", Err("mount path \"data\" must be absolute")),
            (
                "/",
                Err("mount path \"/\" would cover the container's whole root filesystem"),
            ),
            (
                "/a/..",
                Err("mount path \"/a/..\" would cover the container's whole root filesystem"),
            ),
        ];
        for (input, want) in cases {
            let got = normalise_mount_path(input).map_err(|e| e.to_string());
            let want = want.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn sysfs_is_bind_mounted_without_a_network_namespace() {
        let own = defaults(false, true, Shm::Private);
        let sys = own
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert_eq!(sys.typ().as_deref(), Some("sysfs"));
        let host = defaults(false, false, Shm::Private);
        let sys = host
            .iter()
            .find(|m| m.destination() == Path::new("/sys"))
            .unwrap();
        assert_eq!(sys.typ().as_deref(), Some("bind"));
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
    }

    #[test]
    fn pod_shm_is_shared_by_bind_mount() {
        let m = defaults(
            false,
            true,
            Shm::Pod(Path::new("/run/berth/sandboxes/p/shm")),
        );
        let shm = m
            .iter()
            .find(|m| m.destination() == Path::new("/dev/shm"))
            .unwrap();
        assert_eq!(shm.typ().as_deref(), Some("bind"));
        assert_eq!(
            shm.source().as_deref(),
            Some(Path::new("/run/berth/sandboxes/p/shm"))
        );
    }
}
