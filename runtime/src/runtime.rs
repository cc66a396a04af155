//! [`Runtime`]: the agent's entry point to everything in this crate, bound to one pair of
//! directories and one cgroup parent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroup::{CgroupError, CgroupLayout};
use crate::layout::{PodUid, RuntimeDirs};
use crate::sandbox::{self, Sandbox, SandboxConfig, SandboxError};
use crate::shim::{RecoveredContainer, SpawnOptions};
use crate::volumes::{self, PreparedVolume, VolumeError, VolumeSource};

/// How a [`Runtime`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    pub dirs: RuntimeDirs,
    /// The `berth-shim` executable ([`default_shim_path`] finds it next to the agent).
    pub shim_path: PathBuf,
    /// Parent of the pod cgroups, relative to each hierarchy's root (default `berth`). Two
    /// agents on one host must use different parents.
    pub cgroup_parent: String,
    /// How long a container may take to start.
    pub start_timeout: Duration,
}

impl RuntimeConfig {
    /// A configuration with the default cgroup parent (`berth`) and a 60 s start timeout.
    pub fn new(dirs: RuntimeDirs, shim_path: impl Into<PathBuf>) -> Self {
        Self {
            dirs,
            shim_path: shim_path.into(),
            cgroup_parent: "berth".to_owned(),
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// `berth-shim` next to the running executable.
pub fn default_shim_path() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name("berth-shim"))
}

/// A runtime that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime cgroups")]
    Cgroup(#[source] CgroupError),
    #[error("shim executable {path} does not exist")]
    NoShim { path: PathBuf },
    #[error("creating runtime directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading this process's capabilities")]
    Capabilities(#[source] std::io::Error),
    #[error("listing shims under {path}")]
    Recover {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The container runtime of one agent.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub(crate) dirs: RuntimeDirs,
    pub(crate) spawn: SpawnOptions,
    pub(crate) cgroup_parent: PathBuf,
    pub(crate) layout: CgroupLayout,
    pub(crate) host_caps: BTreeSet<String>,
    /// `cgroup.procs` files of `<parent>/shims`.
    pub(crate) shim_cgroup: Vec<PathBuf>,
    /// Seccomp filters compiled ahead of time, one per distinct profile.
    pub(crate) seccomp_programs: std::sync::Arc<crate::seccomp_program::Programs>,
}

impl Runtime {
    /// Checks the configuration, detects the host's cgroups and creates the directories and
    /// the shims' cgroup (`<parent>/shims`).
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let cgroup_parent =
            crate::cgroup::validate_parent(&config.cgroup_parent).map_err(RuntimeError::Cgroup)?;
        if !config.shim_path.is_file() {
            return Err(RuntimeError::NoShim {
                path: config.shim_path,
            });
        }
        let layout = CgroupLayout::detect().map_err(RuntimeError::Cgroup)?;
        let shim_cgroup = crate::cgroup::ensure_shim_cgroup(&layout, &cgroup_parent)
            .map_err(RuntimeError::Cgroup)?;
        let host_caps =
            crate::spec::capabilities::host_bounding_set().map_err(RuntimeError::Capabilities)?;
        let dirs = config.dirs;
        for path in [
            dirs.shims_dir(),
            dirs.libcontainer_root(),
            dirs.sandboxes_dir(),
            dirs.claims_dir(),
            dirs.data_dir.join("containers"),
            dirs.data_dir.join("pods"),
        ] {
            std::fs::create_dir_all(&path).map_err(|source| RuntimeError::CreateDir {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Self {
            dirs,
            spawn: SpawnOptions {
                shim_path: config.shim_path,
                start_timeout: config.start_timeout,
            },
            cgroup_parent,
            layout,
            host_caps,
            seccomp_programs: Default::default(),
            shim_cgroup,
        })
    }

    /// The runtime's directories.
    pub fn dirs(&self) -> &RuntimeDirs {
        &self.dirs
    }

    /// The pod cgroups' parent, relative to the hierarchy roots.
    pub fn cgroup_parent(&self) -> &Path {
        &self.cgroup_parent
    }

    /// The host's cgroup hierarchies.
    pub fn cgroup_layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// Creates a pod's sandbox (namespaces, /dev/shm, pod cgroup).
    pub async fn create_sandbox(&self, config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let rt = self.clone();
        let pod = config.pod_uid.clone();
        let result =
            blocking(move || sandbox::create(&rt.dirs, &rt.layout, &rt.cgroup_parent, &config))
                .await;
        match &result {
            Ok(_) => tracing::info!(%pod, "sandbox created"),
            Err(e) => {
                tracing::warn!(%pod, error = %crate::shim::error_chain(e), "sandbox not created")
            }
        }
        result
    }

    /// The sandbox of `pod`, if it exists.
    pub fn sandbox(&self, pod: &PodUid) -> Option<Sandbox> {
        sandbox::load(&self.dirs, &self.layout, &self.cgroup_parent, pod)
    }

    /// The pods that have a sandbox directory (after an agent restart: to re-adopt them or
    /// tear down those no longer wanted), sorted.
    pub fn sandbox_pods(&self) -> Vec<PodUid> {
        let mut pods: Vec<PodUid> = std::fs::read_dir(self.dirs.sandboxes_dir())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| PodUid::new(e.file_name().to_string_lossy()).ok())
                    .collect()
            })
            .unwrap_or_default();
        pods.sort();
        pods
    }

    /// Tears down a pod's sandbox, killing anything still running in the pod. Idempotent.
    pub async fn remove_sandbox(&self, pod: &PodUid) -> Result<(), SandboxError> {
        let rt = self.clone();
        let pod2 = pod.clone();
        let result =
            blocking(move || sandbox::remove(&rt.dirs, &rt.layout, &rt.cgroup_parent, &pod2)).await;
        match &result {
            Ok(()) => tracing::info!(%pod, "sandbox removed"),
            Err(e) => {
                tracing::warn!(%pod, error = %crate::shim::error_chain(e), "sandbox teardown incomplete")
            }
        }
        result
    }

    /// Prepares a pod volume (see [`crate::volumes`]).
    pub async fn prepare_volume(
        &self,
        pod: &PodUid,
        name: &str,
        source: VolumeSource,
        fs_group: Option<u32>,
    ) -> Result<PreparedVolume, VolumeError> {
        let dirs = self.dirs.clone();
        let (pod, name) = (pod.clone(), name.to_owned());
        blocking(move || volumes::prepare(&dirs, &pod, &name, &source, fs_group)).await
    }

    /// Refreshes a ConfigMap or Secret volume atomically.
    pub async fn update_projected_volume(
        &self,
        pod: &PodUid,
        name: &str,
        source: VolumeSource,
        fs_group: Option<u32>,
    ) -> Result<(), VolumeError> {
        let dirs = self.dirs.clone();
        let (pod, name) = (pod.clone(), name.to_owned());
        blocking(move || volumes::update_projected(&dirs, &pod, &name, &source, fs_group)).await
    }

    /// Removes a pod's emptyDir and projected volumes (claims stay). Idempotent.
    pub async fn remove_pod_volumes(&self, pod: &PodUid) -> Result<(), VolumeError> {
        let dirs = self.dirs.clone();
        let pod = pod.clone();
        blocking(move || volumes::remove_pod_volumes(&dirs, &pod)).await
    }

    /// Every container with state under the run dir, after an agent restart.
    pub fn recover(&self) -> Result<Vec<RecoveredContainer>, RuntimeError> {
        crate::shim::recover(&self.dirs).map_err(|source| RuntimeError::Recover {
            path: self.dirs.shims_dir(),
            source,
        })
    }
}

/// Runs blocking filesystem and kernel work off the async threads. A panic in it is re-raised.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
