//! The OCI runtime spec of a container: a pure function ([`build_spec`]) from a container
//! description to an [`oci_spec::runtime::Spec`], with the defaults runc and containerd give
//! (containerd's default capabilities, the default seccomp profile, no_new_privs, masked and
//! read-only /proc paths, a minimal /dev) and Kubernetes' rules for image config.
//!
//! Reading the image's /etc/passwd is the caller's business ([`UserDb::load`]); everything here
//! is computed from its inputs, so it is tested without root.

pub mod capabilities;
pub mod mounts;
pub mod process;
pub mod seccomp;
pub mod user;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilities, LinuxCpu, LinuxDeviceCgroup, LinuxMemory,
    LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources, Mount, ProcessBuilder, Root,
    Spec, User,
};

use crate::image::ImageConfig;
pub use user::{ResolvedUser, UserDb};

/// A container description that cannot become a spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "no command: neither the container's command/args nor the image's entrypoint/cmd give one"
    )]
    NoCommand,
    #[error("the command's executable (first element) is empty")]
    EmptyExecutable,
    #[error(
        "environment variable name {name:?} is invalid: it must be non-empty and contain no '=' or NUL"
    )]
    BadEnvName { name: String },
    #[error("working directory {path:?} must be absolute")]
    RelativeWorkingDir { path: String },
    #[error("user {user:?} from the image is not in its /etc/passwd")]
    UnknownUser { user: String },
    #[error("group {group:?} from the image is not in its /etc/group")]
    UnknownGroup { group: String },
    #[error("{field}: unknown capability {name:?}")]
    UnknownCapability { field: &'static str, name: String },
    #[error("capability {name} cannot be granted: this host's runtime does not have it")]
    CapabilityUnavailable { name: String },
    #[error("mount path {path:?} must be absolute")]
    RelativeMountPath { path: String },
    #[error("mount path {path:?} resolves outside the container's root")]
    MountPathOutsideRoot { path: String },
    #[error("mount path {path:?} would cover the container's whole root filesystem")]
    MountOverRoot { path: String },
    #[error("mount path {path:?} is used by more than one mount")]
    DuplicateMountPath { path: String },
    #[error("resources: {field} must be greater than zero")]
    ZeroLimit { field: &'static str },
    #[error("building the OCI spec failed: {reason}")]
    Oci { reason: String },
}

/// How a container's seccomp filter is chosen (Kubernetes' `seccompProfile.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeccompProfile {
    /// The default profile (containerd's RuntimeDefault). berth applies it unless told
    /// otherwise, as the issue asks; Kubernetes itself defaults to Unconfined.
    #[default]
    RuntimeDefault,
    /// No filter.
    Unconfined,
}

/// A container's security settings (Kubernetes' pod and container securityContext merged).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecurityContext {
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// The pod's supplementalGroups.
    pub supplemental_groups: Vec<u32>,
    /// The pod's fsGroup: also a supplementary group of every container process.
    pub fs_group: Option<u32>,
    pub privileged: bool,
    pub read_only_root_filesystem: bool,
    /// `Some(true)` turns no_new_privs off; berth sets no_new_privs otherwise.
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub seccomp: SeccompProfile,
}

/// `resources` of a container, in kernel units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// limits.cpu in millicores: a CFS quota per 100 ms period.
    pub cpu_limit_millis: Option<u64>,
    /// requests.cpu in millicores: CPU shares (defaults to the limit, as in Kubernetes).
    pub cpu_request_millis: Option<u64>,
    /// limits.memory in bytes (swap is limited to the same, so no swap is used).
    pub memory_limit_bytes: Option<u64>,
    /// The maximum number of processes (threads) in the container.
    pub pids_limit: Option<i64>,
}

/// CFS period used for CPU limits, as Kubernetes uses.
pub const CPU_PERIOD_US: u64 = 100_000;

impl Resources {
    /// Rejects zero limits, which the kernel would read as "nothing allowed".
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.cpu_limit_millis == Some(0) {
            return Err(SpecError::ZeroLimit {
                field: "limits.cpu",
            });
        }
        if self.memory_limit_bytes == Some(0) {
            return Err(SpecError::ZeroLimit {
                field: "limits.memory",
            });
        }
        if matches!(self.pids_limit, Some(n) if n <= 0) {
            return Err(SpecError::ZeroLimit {
                field: "limits.pids",
            });
        }
        Ok(())
    }

    /// The CFS quota for the CPU limit (at least 1 ms, the kernel's minimum).
    pub fn cpu_quota_us(&self) -> Option<i64> {
        self.cpu_limit_millis
            .map(|m| ((m * CPU_PERIOD_US) / 1000).max(1000) as i64)
    }

    /// CPU shares from the request (or the limit), as kubelet computes them.
    pub fn cpu_shares(&self) -> Option<u64> {
        self.cpu_request_millis
            .or(self.cpu_limit_millis)
            .map(|m| (m * 1024 / 1000).max(2))
    }
}

/// What a container runs: Kubernetes' container fields that shape the process.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerConfig {
    /// Replaces the image's Entrypoint (and drops its Cmd) when non-empty.
    pub command: Vec<String>,
    /// Replaces the image's Cmd when non-empty.
    pub args: Vec<String>,
    /// Environment variables in order; later ones override earlier and image ones.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub security: SecurityContext,
    pub resources: Resources,
    /// oom_score_adj for the container's processes (kubelet derives it from the QoS class).
    pub oom_score_adj: Option<i32>,
}

/// A namespace a container either joins by path or shares with the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NamespaceMode {
    /// Share the host's namespace.
    Host,
    /// Join the namespace bind-mounted at this path.
    Join(PathBuf),
}

/// The pod-level namespaces a container joins.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodNamespaces {
    pub network: NamespaceMode,
    pub uts: NamespaceMode,
    pub ipc: NamespaceMode,
}

/// The pod's /etc files, bind-mounted when given.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EtcFiles {
    pub hostname: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

/// A volume mount whose source is already a host path (volume root or subPath inside it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Path inside the container.
    pub destination: String,
    pub read_only: bool,
}

/// Everything [`build_spec`] needs.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub container: &'a ContainerConfig,
    pub image: &'a ImageConfig,
    /// The image's users and groups, to resolve user names.
    pub users: &'a UserDb,
    /// Capabilities the runtime itself holds (its bounding set): the most a container can get.
    pub host_capabilities: &'a BTreeSet<String>,
    pub rootfs: &'a Path,
    /// The pod's hostname, for the HOSTNAME variable (the UTS namespace carries it already).
    pub hostname: Option<&'a str>,
    pub namespaces: &'a PodNamespaces,
    /// The pod's /dev/shm (a tmpfs shared by its containers); `None` for a private one.
    pub pod_shm: Option<&'a Path>,
    pub etc_files: &'a EtcFiles,
    pub mounts: &'a [BindMount],
    /// Absolute cgroup path of the container, e.g. `/berth/pod<uid>/<id>`.
    pub cgroups_path: &'a Path,
    pub annotations: BTreeMap<String, String>,
}

fn oci_err(e: oci_spec::OciSpecError) -> SpecError {
    SpecError::Oci {
        reason: e.to_string(),
    }
}

fn to_oci_caps(names: &BTreeSet<String>) -> HashSet<Capability> {
    names
        .iter()
        .filter_map(|n| serde_json::from_value(serde_json::Value::String(n.clone())).ok())
        .collect()
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path.map(Path::to_path_buf));
    ns
}

/// Builds the OCI runtime spec of a container.
pub fn build_spec(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let c = input.container;
    let sec = &c.security;
    c.resources.validate()?;

    let args = process::resolve_args(input.image, &c.command, &c.args)?;
    let env = process::resolve_env(input.image, &c.env, input.hostname)?;
    let cwd = process::resolve_cwd(input.image, c.working_dir.as_deref())?;
    let extra_gids: Vec<u32> = sec
        .supplemental_groups
        .iter()
        .copied()
        .chain(sec.fs_group)
        .collect();
    let ident = input.users.resolve(
        input.image.user.as_deref(),
        sec.run_as_user,
        sec.run_as_group,
        &extra_gids,
    )?;
    let caps = capabilities::resolve(
        &sec.capabilities_add,
        &sec.capabilities_drop,
        sec.privileged,
        input.host_capabilities,
    )?;

    let mut user = User::default();
    user.set_uid(ident.uid);
    user.set_gid(ident.gid);
    user.set_additional_gids(
        (!ident.additional_gids.is_empty()).then(|| ident.additional_gids.clone()),
    );

    let mut env = env;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ident.home.as_deref().unwrap_or("/")));
    }

    let oci_caps = to_oci_caps(&caps);
    let mut linux_caps = LinuxCapabilities::default();
    linux_caps.set_bounding(Some(oci_caps.clone()));
    linux_caps.set_effective(Some(oci_caps.clone()));
    linux_caps.set_permitted(Some(oci_caps));
    linux_caps.set_inheritable(None);
    linux_caps.set_ambient(None);

    let no_new_privs = !(sec.privileged || sec.allow_privilege_escalation == Some(true));
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(user)
        .capabilities(linux_caps)
        .no_new_privileges(no_new_privs)
        .build()
        .map_err(oci_err)?;
    process.set_rlimits(None);
    process.set_oom_score_adj(c.oom_score_adj);

    // Mounts: defaults, the pod's /etc files, then volumes parents first.
    let ns = input.namespaces;
    let own_netns = matches!(ns.network, NamespaceMode::Join(_));
    let shm = match (&ns.ipc, input.pod_shm) {
        (NamespaceMode::Host, _) => mounts::Shm::Host,
        (_, Some(p)) => mounts::Shm::Pod(p),
        (_, None) => mounts::Shm::Private,
    };
    let mut all_mounts: Vec<Mount> = mounts::defaults(sec.privileged, own_netns, shm);
    let etc_ro = sec.read_only_root_filesystem;
    let etc = input.etc_files;
    for (file, dest) in [
        (&etc.hostname, "/etc/hostname"),
        (&etc.hosts, "/etc/hosts"),
        (&etc.resolv_conf, "/etc/resolv.conf"),
    ] {
        if let Some(src) = file {
            all_mounts.push(mounts::bind(src, dest, etc_ro));
        }
    }
    let mut seen = BTreeSet::new();
    let mut volume_mounts = Vec::new();
    for m in input.mounts {
        let dest = mounts::normalise_mount_path(&m.destination)?;
        if !seen.insert(dest.clone()) {
            return Err(SpecError::DuplicateMountPath { path: dest });
        }
        volume_mounts.push((
            mounts::depth(&dest),
            mounts::bind(&m.source, &dest, m.read_only),
        ));
    }
    volume_mounts.sort_by_key(|(depth, _)| *depth);
    all_mounts.extend(volume_mounts.into_iter().map(|(_, m)| m));

    // Namespaces: a new pid and mount namespace; net, uts, ipc joined or the host's.
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None),
        namespace(LinuxNamespaceType::Mount, None),
    ];
    for (mode, typ) in [
        (&ns.network, LinuxNamespaceType::Network),
        (&ns.uts, LinuxNamespaceType::Uts),
        (&ns.ipc, LinuxNamespaceType::Ipc),
    ] {
        if let NamespaceMode::Join(path) = mode {
            namespaces.push(namespace(typ, Some(path)));
        }
    }

    let mut resources = LinuxResources::default();
    let mut device_rule = LinuxDeviceCgroup::default();
    device_rule.set_allow(sec.privileged);
    device_rule.set_access(Some("rwm".to_owned()));
    resources.set_devices(Some(vec![device_rule]));
    let r = &c.resources;
    if let Some(bytes) = r.memory_limit_bytes {
        let mut memory = LinuxMemory::default();
        memory.set_limit(Some(bytes as i64));
        resources.set_memory(Some(memory));
    }
    if r.cpu_limit_millis.is_some() || r.cpu_request_millis.is_some() {
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(r.cpu_shares());
        if let Some(q) = r.cpu_quota_us() {
            cpu.set_quota(Some(q));
            cpu.set_period(Some(CPU_PERIOD_US));
        }
        resources.set_cpu(Some(cpu));
    }
    if let Some(limit) = r.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(limit);
        resources.set_pids(Some(pids));
    }

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(input.cgroups_path.to_path_buf())
        .resources(resources)
        .build()
        .map_err(oci_err)?;
    if sec.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        linux.set_masked_paths(Some(
            mounts::MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
        ));
        linux.set_readonly_paths(Some(
            mounts::READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ));
    }
    if !sec.privileged && sec.seccomp == SeccompProfile::RuntimeDefault {
        let (arch, arches) = seccomp::host_arch();
        linux.set_seccomp(Some(seccomp::default_profile(&caps, arch, arches)));
    }
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_sysctl(None);

    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(Some(sec.read_only_root_filesystem));

    let mut spec = Spec::default();
    spec.set_version("1.0.2".to_owned());
    spec.set_root(Some(root));
    spec.set_hostname(None);
    spec.set_process(Some(process));
    spec.set_mounts(Some(all_mounts));
    spec.set_linux(Some(linux));
    spec.set_annotations((!input.annotations.is_empty()).then(|| {
        input
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }));
    Ok(spec)
}

#[cfg(test)]
mod tests;
