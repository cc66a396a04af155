//! Containers as the agent sees them: start (rootfs, volumes, spec, shim), stop (preStop hook,
//! then the stop signal, then SIGKILL) and remove.
//!
//! A start that fails leaves nothing behind: no shim directory, libcontainer state, cgroup,
//! overlay mount or upper dir.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cgroup::remove_tree;
use crate::exec::ExecRequest;
use crate::image::ImageConfig;
use crate::layout::{ContainerId, PodUid, RuntimeDirs};
use crate::rootfs::{self, RootfsError};
use crate::runtime::{Runtime, blocking};
use crate::shim::{CgroupFiles, ContainerExit, LogConfig, Shim, ShimConfig, ShimError, files};
use crate::spec::{self, BindMount, ContainerConfig, EtcFiles, SpecError, SpecInput, UserDb};
use crate::volumes::{VolumeError, resolve_sub_path};

pub use crate::rootfs::RootfsSource;

/// kubelet's minimum time a container gets after its preStop hook.
pub const MIN_GRACE_AFTER_HOOK: Duration = Duration::from_secs(2);

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The prepared volume's host path ([`crate::volumes::PreparedVolume::path`]).
    pub volume_path: PathBuf,
    /// Where it appears in the container.
    pub mount_path: String,
    /// A path inside the volume to mount instead of its root (created if missing).
    pub sub_path: Option<String>,
    pub read_only: bool,
}

/// Everything needed to start a container.
#[derive(Debug, Clone)]
pub struct ContainerRequest {
    pub id: ContainerId,
    /// The pod whose sandbox the container joins (it must exist).
    pub pod: PodUid,
    pub rootfs: RootfsSource,
    pub image: ImageConfig,
    pub config: ContainerConfig,
    pub mounts: Vec<VolumeMount>,
    pub etc_files: EtcFiles,
    pub log: LogConfig,
    /// Returned by [`Runtime::recover`] after an agent restart.
    pub labels: BTreeMap<String, String>,
}

/// A container that cannot be started, stopped or removed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {id} already exists")]
    AlreadyExists { id: ContainerId },
    #[error("container {id}: pod {pod} has no sandbox")]
    NoSandbox { id: ContainerId, pod: PodUid },
    #[error("container {id}")]
    Spec {
        id: ContainerId,
        #[source]
        source: SpecError,
    },
    #[error("container {id}")]
    Rootfs {
        id: ContainerId,
        #[source]
        source: RootfsError,
    },
    #[error("container {id}: volume mount at {mount_path:?}")]
    Volume {
        id: ContainerId,
        mount_path: String,
        #[source]
        source: VolumeError,
    },
    #[error("container {id}: volume {path} does not exist")]
    MissingVolume { id: ContainerId, path: PathBuf },
    #[error("container {id}: reading the image's users from {path}")]
    Users {
        id: ContainerId,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: {what} {path}")]
    Io {
        id: ContainerId,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id} is still running (remove it with force to kill it)")]
    StillRunning { id: ContainerId },
    #[error("container {id}: fencing off its shim")]
    StartLock {
        id: ContainerId,
        #[source]
        source: crate::shim::StartLockError,
    },
    #[error(transparent)]
    Shim(#[from] ShimError),
}

/// Removes what a failed start created, unless disarmed.
struct StartGuard {
    dirs: RuntimeDirs,
    id: ContainerId,
    cgroup_dirs: Vec<PathBuf>,
    armed: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if self.armed {
            remove_fenced(&self.dirs, &self.id, &self.cgroup_dirs);
        }
    }
}

/// How long removal waits for a killed shim to end.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Kills the shim of a start that is given up (if it still runs), then removes everything
/// the container has on the host, holding the start lock so that no shim starts it later.
fn remove_fenced(dirs: &RuntimeDirs, id: &ContainerId, cgroup_dirs: &[PathBuf]) -> Vec<String> {
    let fence = crate::shim::fence_start(&dirs.shim_dir(id), true, Instant::now() + KILL_WAIT);
    let mut problems = match &fence {
        Ok(_) => Vec::new(),
        Err(e) => vec![crate::shim::error_chain(e)],
    };
    problems.extend(cleanup(dirs, id, cgroup_dirs));
    drop(fence);
    problems
}

/// Removes everything a container has on the host. Best effort, idempotent.
fn cleanup(dirs: &RuntimeDirs, id: &ContainerId, cgroup_dirs: &[PathBuf]) -> Vec<String> {
    let mut problems = Vec::new();
    crate::shim::delete_libcontainer_state(&dirs.libcontainer_root(), id.as_str());
    let deadline = Instant::now() + Duration::from_secs(5);
    for dir in cgroup_dirs {
        if let Err(e) = remove_tree(dir, deadline) {
            problems.push(e.to_string());
        }
    }
    if let Err(e) = rootfs::remove(dirs, id) {
        problems.push(e.to_string());
    }
    if let Err(e) = crate::fsutil::remove_dir_all_if_exists(&dirs.shim_dir(id)) {
        problems.push(format!("removing {}: {e}", dirs.shim_dir(id).display()));
    }
    problems
}

impl Runtime {
    /// Starts a container in its pod's sandbox and returns once it runs. On failure nothing of
    /// it is left on the host.
    pub async fn start_container(&self, request: ContainerRequest) -> Result<Shim, ContainerError> {
        let rt = self.clone();
        let (id, shim_dir, mut guard) = blocking(move || rt.prepare_container(&request)).await?;
        let spawned = Shim::spawn(id, shim_dir, &self.spawn).await;
        // From here the guard only protects against this future being dropped mid-spawn.
        guard.armed = false;
        match spawned {
            Ok(shim) => {
                tracing::info!(
                    container = %shim.id(),
                    shim_pid = shim.pid(),
                    init_pid = shim.init_pid(),
                    "container started"
                );
                Ok(shim)
            }
            Err(e) => {
                tracing::warn!(error = %crate::shim::error_chain(&e), "container failed to start");
                let (dirs, id, cgroup_dirs) = (
                    guard.dirs.clone(),
                    guard.id.clone(),
                    guard.cgroup_dirs.clone(),
                );
                blocking(move || remove_fenced(&dirs, &id, &cgroup_dirs)).await;
                Err(e.into())
            }
        }
    }

    /// Everything up to spawning the shim, synchronously.
    fn prepare_container(
        &self,
        req: &ContainerRequest,
    ) -> Result<(ContainerId, PathBuf, StartGuard), ContainerError> {
        let id = &req.id;
        let spec_err = |source| ContainerError::Spec {
            id: id.clone(),
            source,
        };
        // Checks that create nothing come first.
        req.config.resources.validate().map_err(spec_err)?;
        for m in &req.mounts {
            spec::mounts::normalise_mount_path(&m.mount_path).map_err(spec_err)?;
            if !m.volume_path.exists() {
                return Err(ContainerError::MissingVolume {
                    id: id.clone(),
                    path: m.volume_path.clone(),
                });
            }
        }
        rootfs::check(&req.rootfs).map_err(|source| ContainerError::Rootfs {
            id: id.clone(),
            source,
        })?;
        let sandbox = self
            .sandbox(&req.pod)
            .ok_or_else(|| ContainerError::NoSandbox {
                id: id.clone(),
                pod: req.pod.clone(),
            })?;

        let shim_dir = self.dirs.shim_dir(id);
        let io_err = |what: &'static str, path: &Path| {
            let (id, path) = (id.clone(), path.to_path_buf());
            move |source| ContainerError::Io {
                id,
                what,
                path,
                source,
            }
        };
        match std::fs::create_dir(&shim_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(ContainerError::AlreadyExists { id: id.clone() });
            }
            Err(e) => return Err(io_err("creating", &shim_dir)(e)),
        }
        let lock_path = shim_dir.join(files::START_LOCK);
        if let Err(e) = crate::shim::create_start_lock(&shim_dir) {
            let _ = crate::fsutil::remove_dir_all_if_exists(&shim_dir);
            return Err(io_err("creating", &lock_path)(e));
        }
        let cgroup_rel = sandbox.cgroup().container_path(id);
        let cgroup_rel = cgroup_rel
            .strip_prefix("/")
            .unwrap_or(&cgroup_rel)
            .to_path_buf();
        let layout = sandbox.cgroup().layout();
        let guard = StartGuard {
            dirs: self.dirs.clone(),
            id: id.clone(),
            cgroup_dirs: crate::cgroup::CgroupLayout::dirs(layout, &cgroup_rel),
            armed: true,
        };
        // A crashed earlier attempt with the same id may have left libcontainer state.
        crate::shim::delete_libcontainer_state(&self.dirs.libcontainer_root(), id.as_str());

        let rootfs = rootfs::prepare(&self.dirs, id, &req.rootfs).map_err(|source| {
            ContainerError::Rootfs {
                id: id.clone(),
                source,
            }
        })?;
        let mut mounts = Vec::new();
        for m in &req.mounts {
            let source = match &m.sub_path {
                Some(sub) if !sub.is_empty() => {
                    resolve_sub_path(&m.volume_path, sub).map_err(|source| {
                        ContainerError::Volume {
                            id: id.clone(),
                            mount_path: m.mount_path.clone(),
                            source,
                        }
                    })?
                }
                _ => m.volume_path.clone(),
            };
            mounts.push(BindMount {
                source,
                destination: m.mount_path.clone(),
                read_only: m.read_only,
            });
        }
        let users = UserDb::load(&rootfs).map_err(|source| ContainerError::Users {
            id: id.clone(),
            path: rootfs.join("etc/passwd"),
            source,
        })?;
        let namespaces = sandbox.namespaces();
        let shm = sandbox.shm_path();
        let cgroups_path = sandbox.cgroup().container_path(id);
        let mut annotations = BTreeMap::new();
        annotations.insert("io.berth.pod-uid".to_owned(), req.pod.to_string());
        let input = SpecInput {
            container: &req.config,
            image: &req.image,
            users: &users,
            host_capabilities: &self.host_caps,
            rootfs: &rootfs,
            hostname: (!sandbox.config().host_network)
                .then_some(sandbox.config().hostname.as_str()),
            namespaces: &namespaces,
            pod_shm: shm.as_deref(),
            etc_files: &req.etc_files,
            mounts: &mounts,
            cgroups_path: &cgroups_path,
            annotations,
        };
        let mut oci = spec::build_spec(&input).map_err(spec_err)?;

        let bundle = shim_dir.join(files::BUNDLE);
        std::fs::create_dir_all(&bundle).map_err(io_err("creating", &bundle))?;
        let seccomp_program = self.precompile_seccomp(id, &mut oci, &bundle)?;
        let config_json = bundle.join("config.json");
        let bytes = serde_json::to_vec_pretty(&oci)
            .map_err(|e| io_err("writing", &config_json)(e.into()))?;
        crate::fsutil::replace_file(&config_json, &bytes, 0o600)
            .map_err(io_err("writing", &config_json))?;

        let shim_config = ShimConfig {
            id: id.clone(),
            pod: Some(req.pod.clone()),
            bundle,
            libcontainer_root: self.dirs.libcontainer_root(),
            log: req.log.clone(),
            cgroup: CgroupFiles {
                procs: layout.procs_files(&cgroup_rel),
                oom_events: layout.oom_events_file(&cgroup_rel),
            },
            labels: req.labels.clone(),
            shim_cgroup_procs: self.shim_cgroup.clone(),
            seccomp_program,
        };
        let path = shim_dir.join(files::CONFIG);
        let bytes = serde_json::to_vec_pretty(&shim_config)
            .map_err(|e| io_err("writing", &path)(e.into()))?;
        crate::fsutil::replace_file(&path, &bytes, 0o600).map_err(io_err("writing", &path))?;
        Ok((id.clone(), shim_dir, guard))
    }

    /// Compiles the spec's seccomp profile ahead of time (see [`crate::seccomp_program`]) and
    /// writes it to `<bundle>/seccomp.bpf`, taking it out of the spec libcontainer reads: the
    /// shim installs the program right before `execve`. Returns the program's path, or `None`
    /// when libcontainer keeps the profile (no profile, no no_new_privs, or a profile it
    /// cannot precompile).
    fn precompile_seccomp(
        &self,
        id: &ContainerId,
        oci: &mut oci_spec::runtime::Spec,
        bundle: &Path,
    ) -> Result<Option<PathBuf>, ContainerError> {
        let no_new_privs = oci.process().as_ref().and_then(|p| p.no_new_privileges()) == Some(true);
        let Some(linux) = oci.linux_mut() else {
            return Ok(None);
        };
        let Some(profile) = linux.seccomp().as_ref().filter(|_| no_new_privs) else {
            return Ok(None);
        };
        let program = match self.seccomp_programs.compile(profile) {
            Ok(program) => program,
            Err(e) => {
                tracing::debug!(container = %id, error = %e, "seccomp profile left to libcontainer");
                return Ok(None);
            }
        };
        let path = bundle.join(crate::shim::SECCOMP_PROGRAM);
        crate::fsutil::replace_file(&path, &program, 0o600).map_err(|source| {
            ContainerError::Io {
                id: id.clone(),
                what: "writing",
                path: path.clone(),
                source,
            }
        })?;
        linux.set_seccomp(None);
        Ok(Some(path))
    }

    /// Stops a running container the way kubelet does: the preStop hook (if any) runs first
    /// inside the grace period, then `signal`, then SIGKILL when the rest of the grace period
    /// (at least [`MIN_GRACE_AFTER_HOOK`] after a hook) has passed. Returns how it ended.
    pub async fn stop_container(
        &self,
        shim: &Shim,
        signal: i32,
        grace: Duration,
        pre_stop: Option<&ExecRequest>,
    ) -> Result<ContainerExit, ContainerError> {
        tracing::info!(container = %shim.id(), signal, ?grace, pre_stop = pre_stop.is_some(), "stopping container");
        let deadline = Instant::now() + grace;
        let mut remaining = grace;
        if let Some(hook) = pre_stop {
            if let Err(e) = self.exec_output(shim.id(), hook, grace).await {
                tracing::warn!(container = %shim.id(), error = %crate::shim::error_chain(&e), "preStop hook failed");
            }
            remaining = deadline
                .saturating_duration_since(Instant::now())
                .max(MIN_GRACE_AFTER_HOOK);
        }
        Ok(shim.stop(signal, remaining).await?)
    }

    /// Removes a container's state, rootfs, cgroup and shim directory. A running container is
    /// an error unless `force`, which kills it first. Idempotent.
    ///
    /// A container whose start was never confirmed (see [`crate::shim::RecoveredState`]) may
    /// still have a shim starting it: with `force` that shim is killed, and the start lock is
    /// held while the directory goes, so no shim can start the container afterwards.
    pub async fn remove_container(
        &self,
        id: &ContainerId,
        force: bool,
    ) -> Result<(), ContainerError> {
        let dir = self.dirs.shim_dir(id);
        let config: Option<ShimConfig> = std::fs::read(dir.join(files::CONFIG))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        // A started container is stopped through its shim (which then records its exit).
        if dir.join(files::STARTED).exists()
            && let Some(shim) = Shim::from_pid_file(id.clone(), dir.clone())
        {
            if !force {
                return Err(ContainerError::StillRunning { id: id.clone() });
            }
            match shim.stop(libc::SIGKILL, Duration::ZERO).await {
                Ok(_) | Err(ShimError::NotRunning { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Whatever shim is left holds the start lock: one still starting the container.
        let fence_dir = dir.clone();
        let fence = blocking(move || {
            crate::shim::fence_start(&fence_dir, force, Instant::now() + KILL_WAIT)
        })
        .await
        .map_err(|source| match source {
            crate::shim::StartLockError::Taken { .. } if !force => {
                ContainerError::StillRunning { id: id.clone() }
            }
            source => ContainerError::StartLock {
                id: id.clone(),
                source,
            },
        })?;
        let cgroup_dirs: Vec<PathBuf> = match &config {
            Some(c) => c
                .cgroup
                .procs
                .iter()
                .filter_map(|p| p.parent().map(Path::to_path_buf))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            None => Vec::new(),
        };
        let dirs = self.dirs.clone();
        let id2 = id.clone();
        let problems = blocking(move || {
            let problems = cleanup(&dirs, &id2, &cgroup_dirs);
            drop(fence);
            problems
        })
        .await;
        tracing::info!(container = %id, force, "container removed");
        if let Some(first) = problems.into_iter().next() {
            return Err(ContainerError::Io {
                id: id.clone(),
                what: "removing",
                path: dir,
                source: std::io::Error::other(first),
            });
        }
        Ok(())
    }
}
