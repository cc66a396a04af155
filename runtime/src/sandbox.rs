//! Pod sandboxes: what a pod's containers share.
//!
//! - network, UTS and IPC namespaces, as files under `<run>/sandboxes/<pod-uid>/ns/` that the
//!   containers join by path (a `hostNetwork` pod uses the host's network and UTS namespaces,
//!   a `hostIPC` pod the host's IPC namespace); the UTS namespace carries the pod's hostname
//!   and the network namespace has its loopback up. Addresses and links are the networking
//!   layer's business: it can configure [`Sandbox::netns_path`] between creation and the first
//!   container start.
//! - the pod's /dev/shm (a tmpfs under the sandbox dir),
//! - the pod cgroup ([`crate::cgroup::PodCgroup`]).
//!
//! Teardown ([`remove`]) kills whatever still runs in the pod cgroup, removes the cgroups,
//! unmounts and deletes the namespace files and the shm, and is idempotent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::MsFlags;
use serde::{Deserialize, Serialize};

use crate::cgroup::{CgroupError, CgroupLayout, PodCgroup, PodResources};
use crate::layout::{PodUid, RuntimeDirs};
use crate::nsfs;
use crate::spec::{NamespaceMode, PodNamespaces};

/// Default size of a pod's /dev/shm, as containerd's.
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// What a pod sandbox is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    pub pod_uid: PodUid,
    /// The pod's hostname (its UTS namespace's); ignored with `host_network`.
    pub hostname: String,
    /// Use the host's network (and UTS) namespace.
    pub host_network: bool,
    /// Use the host's IPC namespace (and /dev/shm).
    pub host_ipc: bool,
    /// Pod-level cgroup limits.
    pub resources: PodResources,
    /// Size of the pod's /dev/shm; [`DEFAULT_SHM_SIZE`] when `None`.
    pub shm_size: Option<u64>,
}

/// A sandbox operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox for pod {pod} already exists")]
    AlreadyExists { pod: PodUid },
    #[error("no sandbox for pod {pod}")]
    NotFound { pod: PodUid },
    #[error("hostname {hostname:?} of pod {pod} is invalid: {reason}")]
    BadHostname {
        pod: PodUid,
        hostname: String,
        reason: &'static str,
    },
    #[error("creating {what} for pod {pod} at {path}")]
    Io {
        pod: PodUid,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pod {pod} cgroup")]
    Cgroup {
        pod: PodUid,
        #[source]
        source: CgroupError,
    },
}

/// A pod's sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    config: SandboxConfig,
    dir: PathBuf,
    cgroup: PodCgroup,
}

fn ns_dir(dir: &Path) -> PathBuf {
    dir.join("ns")
}

impl Sandbox {
    /// The sandbox's configuration.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// The sandbox directory under the run dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The network namespace file, for the networking layer (`None` for hostNetwork).
    pub fn netns_path(&self) -> Option<PathBuf> {
        (!self.config.host_network).then(|| ns_dir(&self.dir).join("net"))
    }

    /// The namespaces a container of this pod joins.
    pub fn namespaces(&self) -> PodNamespaces {
        let ns = ns_dir(&self.dir);
        let join = |host: bool, name: &str| {
            if host {
                NamespaceMode::Host
            } else {
                NamespaceMode::Join(ns.join(name))
            }
        };
        PodNamespaces {
            network: join(self.config.host_network, "net"),
            uts: join(self.config.host_network, "uts"),
            ipc: join(self.config.host_ipc, "ipc"),
        }
    }

    /// The pod's /dev/shm (`None` with hostIPC: the host's is used).
    pub fn shm_path(&self) -> Option<PathBuf> {
        (!self.config.host_ipc).then(|| self.dir.join("shm"))
    }

    /// The pod cgroup.
    pub fn cgroup(&self) -> &PodCgroup {
        &self.cgroup
    }
}

/// Kubernetes' hostname rule (an RFC 1123 label) and the kernel's 64-byte limit.
fn check_hostname(pod: &PodUid, hostname: &str) -> Result<(), SandboxError> {
    let bad = |reason| SandboxError::BadHostname {
        pod: pod.clone(),
        hostname: hostname.to_owned(),
        reason,
    };
    if hostname.is_empty() {
        return Err(bad("it is empty"));
    }
    if hostname.len() > 63 {
        return Err(bad("it is longer than 63 characters"));
    }
    if !hostname
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad("only lowercase letters, digits and '-' are allowed"));
    }
    if hostname.starts_with('-') || hostname.ends_with('-') {
        return Err(bad("it must start and end with a letter or digit"));
    }
    Ok(())
}

/// Creates a pod's sandbox. On failure everything created so far is torn down again.
pub fn create(
    dirs: &RuntimeDirs,
    layout: &CgroupLayout,
    cgroup_parent: &Path,
    config: &SandboxConfig,
) -> Result<Sandbox, SandboxError> {
    let pod = &config.pod_uid;
    if !config.host_network {
        check_hostname(pod, &config.hostname)?;
    }
    let dir = dirs.sandbox_dir(pod);
    let io_err = |what: &'static str, path: &Path| {
        let pod = pod.clone();
        let path = path.to_path_buf();
        move |source| SandboxError::Io {
            pod,
            what,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dirs.sandboxes_dir())
        .map_err(io_err("the sandboxes directory", &dirs.sandboxes_dir()))?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(SandboxError::AlreadyExists { pod: pod.clone() });
        }
        Err(e) => return Err(io_err("the sandbox directory", &dir)(e)),
    }
    let sandbox = Sandbox {
        config: config.clone(),
        dir: dir.clone(),
        cgroup: PodCgroup::new(layout.clone(), cgroup_parent, pod),
    };
    let built = build(&sandbox);
    if let Err(e) = built {
        let _ = remove(dirs, layout, cgroup_parent, pod);
        return Err(e);
    }
    Ok(sandbox)
}

fn build(sandbox: &Sandbox) -> Result<(), SandboxError> {
    let config = &sandbox.config;
    let pod = &config.pod_uid;
    let dir = &sandbox.dir;
    let io_err = |what: &'static str, path: &Path| {
        let pod = pod.clone();
        let path = path.to_path_buf();
        move |source| SandboxError::Io {
            pod,
            what,
            path,
            source,
        }
    };
    let json = serde_json::to_vec_pretty(config).unwrap_or_default();
    let config_path = dir.join("sandbox.json");
    crate::fsutil::replace_file(&config_path, &json, 0o644)
        .map_err(io_err("the sandbox config", &config_path))?;

    let ns = ns_dir(dir);
    std::fs::create_dir_all(&ns).map_err(io_err("the namespace directory", &ns))?;
    let spec = nsfs::NewNamespaces {
        net: (!config.host_network).then(|| ns.join("net")),
        uts: (!config.host_network).then(|| (ns.join("uts"), config.hostname.clone())),
        ipc: (!config.host_ipc).then(|| ns.join("ipc")),
    };
    nsfs::create(&spec).map_err(io_err("namespaces", &ns))?;

    if let Some(shm) = sandbox.shm_path() {
        std::fs::create_dir_all(&shm).map_err(io_err("/dev/shm", &shm))?;
        let size = config.shm_size.unwrap_or(DEFAULT_SHM_SIZE);
        crate::sys::mount(
            Some(Path::new("shm")),
            &shm,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(&format!("mode=1777,size={size}")),
        )
        .map_err(io_err("/dev/shm", &shm))?;
    }

    sandbox
        .cgroup
        .create(&config.resources)
        .map_err(|source| SandboxError::Cgroup {
            pod: pod.clone(),
            source,
        })
}

/// Loads an existing sandbox (after an agent restart); `None` if there is none.
pub fn load(
    dirs: &RuntimeDirs,
    layout: &CgroupLayout,
    cgroup_parent: &Path,
    pod: &PodUid,
) -> Option<Sandbox> {
    let dir = dirs.sandbox_dir(pod);
    let config: SandboxConfig =
        serde_json::from_slice(&std::fs::read(dir.join("sandbox.json")).ok()?).ok()?;
    Some(Sandbox {
        cgroup: PodCgroup::new(layout.clone(), cgroup_parent, pod),
        config,
        dir,
    })
}

/// Tears a pod's sandbox down: kills every process in the pod cgroup, removes the cgroups,
/// unmounts and deletes the namespaces and /dev/shm, removes the directory. Idempotent.
pub fn remove(
    dirs: &RuntimeDirs,
    layout: &CgroupLayout,
    cgroup_parent: &Path,
    pod: &PodUid,
) -> Result<(), SandboxError> {
    let dir = dirs.sandbox_dir(pod);
    let io_err = |what: &'static str, path: &Path| {
        let pod = pod.clone();
        let path = path.to_path_buf();
        move |source| SandboxError::Io {
            pod,
            what,
            path,
            source,
        }
    };
    PodCgroup::new(layout.clone(), cgroup_parent, pod)
        .remove(Duration::from_secs(10))
        .map_err(|source| SandboxError::Cgroup {
            pod: pod.clone(),
            source,
        })?;
    let ns = ns_dir(&dir);
    for name in ["net", "uts", "ipc"] {
        let file = ns.join(name);
        nsfs::remove(&file).map_err(io_err("removing a namespace file", &file))?;
    }
    let shm = dir.join("shm");
    while crate::sys::unmount(&shm).map_err(io_err("unmounting /dev/shm", &shm))? {}
    crate::fsutil::remove_dir_all_if_exists(&dir).map_err(io_err("removing the sandbox", &dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_rfc_1123_labels() {
        let pod = PodUid::new("p").unwrap();
        for ok in ["web-0", "a", "db1", &"x".repeat(63)] {
            assert!(check_hostname(&pod, ok).is_ok(), "{ok}");
        }
        let cases = [
            ("", "it is empty"),
            ("Web", "only lowercase letters, digits and '-' are allowed"),
            ("a.b", "only lowercase letters, digits and '-' are allowed"),
            ("-a", "it must start and end with a letter or digit"),
        ];
        for (bad, reason) in cases {
            let err = check_hostname(&pod, bad).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("hostname {bad:?} of pod p is invalid: {reason}")
            );
        }
        assert!(check_hostname(&pod, &"x".repeat(64)).is_err());
    }
}
