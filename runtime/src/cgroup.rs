//! Pod cgroups: one per pod under a configurable parent (default `berth`), with the containers'
//! cgroups (made by libcontainer) below it.
//!
//! ```text
//! v1 (each controller hierarchy):  /sys/fs/cgroup/<ctl>/<parent>/pod<uid>/<container-id>
//! v2 (pure unified hosts):          /sys/fs/cgroup/<parent>/pod<uid>/<container-id>
//! ```
//!
//! On a hybrid host (cgroup v1 controllers plus a cgroup2 mount) the v1 hierarchies are used,
//! as libcontainer does. The pod cgroup carries the sum of its containers' limits when every
//! container has one (as kubelet does), so a pod as a whole cannot exceed them.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::layout::{ContainerId, PodUid};

/// v1 controllers libcontainer manages (each may have its own hierarchy).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
];

/// A cgroup operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading the cgroup mounts from /proc/self/mountinfo")]
    Mountinfo(#[source] io::Error),
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error(
        "cgroup parent {parent:?} is invalid: use path components of letters, digits, '.', '_' and '-'"
    )]
    BadParent { parent: String },
    #[error("creating cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("removing cgroup {path}: processes are still in it")]
    Busy { path: PathBuf },
    #[error("removing cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The cgroup hierarchies of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup v1: one mount per controller group (`cpu,cpuacct` may share one), plus named
    /// hierarchies (only cleaned up, never configured).
    V1 {
        /// (controllers, mount point) of every v1 hierarchy with known controllers.
        controllers: Vec<(BTreeSet<String>, PathBuf)>,
        /// Every cgroup mount point: named v1 hierarchies and a hybrid host's unified one
        /// included.
        all: Vec<PathBuf>,
    },
    /// cgroup v2 only.
    V2 { root: PathBuf },
}

/// Limits for the pod cgroup (sums over the pod's containers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodResources {
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub pids_limit: Option<i64>,
}

impl PodResources {
    /// The pod-level limits for containers with these resources: a limit is set only when
    /// every container has one (one unlimited container makes the pod unlimited).
    pub fn sum<'a>(containers: impl IntoIterator<Item = &'a crate::spec::Resources>) -> Self {
        fn add<T: std::ops::Add<Output = T>>(
            acc: Option<Option<T>>,
            v: Option<T>,
        ) -> Option<Option<T>> {
            match (acc, v) {
                (None, v) => Some(v),
                (Some(Some(a)), Some(b)) => Some(Some(a + b)),
                _ => Some(None),
            }
        }
        let (mut cpu, mut mem, mut pids) = (None, None, None);
        for r in containers {
            cpu = add(cpu, r.cpu_limit_millis);
            mem = add(mem, r.memory_limit_bytes);
            pids = add(pids, r.pids_limit);
        }
        Self {
            cpu_limit_millis: cpu.flatten(),
            memory_limit_bytes: mem.flatten(),
            pids_limit: pids.flatten(),
        }
    }
}

/// Checks a cgroup parent: relative path components of safe characters.
pub fn validate_parent(parent: &str) -> Result<PathBuf, CgroupError> {
    let bad = || CgroupError::BadParent {
        parent: parent.to_owned(),
    };
    let trimmed = parent.trim_matches('/');
    if trimmed.is_empty() {
        return Err(bad());
    }
    for part in trimmed.split('/') {
        crate::layout::validate_name("cgroup parent", part).map_err(|_| bad())?;
    }
    Ok(PathBuf::from(trimmed))
}

impl CgroupLayout {
    /// Reads the host's cgroup mounts.
    pub fn detect() -> Result<Self, CgroupError> {
        let text =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(CgroupError::Mountinfo)?;
        Self::from_mountinfo(&text)
    }

    /// Parses a mountinfo text. A cgroup2 mount is used only when no v1 controller is mounted.
    pub fn from_mountinfo(text: &str) -> Result<Self, CgroupError> {
        let mut controllers: Vec<(BTreeSet<String>, PathBuf)> = Vec::new();
        let mut all = Vec::new();
        let mut v2 = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            if left.len() < 5 || right.len() < 3 || left[3] != "/" {
                continue;
            }
            let mount = PathBuf::from(crate::sys::unescape_mount_path(left[4]));
            match right[0] {
                "cgroup2" => {
                    // On a hybrid host the unified hierarchy has no controllers we use, but a
                    // service manager tracks processes there.
                    if !all.contains(&mount) {
                        all.push(mount.clone());
                    }
                    v2.get_or_insert(mount);
                }
                "cgroup" => {
                    let ctls: BTreeSet<String> = right[2]
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_owned)
                        .collect();
                    if !all.contains(&mount) {
                        all.push(mount.clone());
                    }
                    if !ctls.is_empty() && !controllers.iter().any(|(c, _)| *c == ctls) {
                        controllers.push((ctls, mount));
                    }
                }
                _ => {}
            }
        }
        if !controllers.is_empty() {
            return Ok(Self::V1 { controllers, all });
        }
        v2.map(|root| Self::V2 { root })
            .ok_or(CgroupError::NoHierarchy)
    }

    /// The directories of cgroup `rel` that carry controllers.
    pub fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        match self {
            Self::V1 { controllers, .. } => controllers.iter().map(|(_, m)| m.join(rel)).collect(),
            Self::V2 { root } => vec![root.join(rel)],
        }
    }

    /// The directories of cgroup `rel` in every hierarchy (for removal).
    fn all_dirs(&self, rel: &Path) -> Vec<PathBuf> {
        match self {
            Self::V1 { all, .. } => all.iter().map(|m| m.join(rel)).collect(),
            Self::V2 { root } => vec![root.join(rel)],
        }
    }

    fn controller_dir(&self, controller: &str, rel: &Path) -> Option<PathBuf> {
        match self {
            Self::V1 { controllers, .. } => controllers
                .iter()
                .find(|(c, _)| c.contains(controller))
                .map(|(_, m)| m.join(rel)),
            Self::V2 { root } => Some(root.join(rel)),
        }
    }

    /// `cgroup.procs` of cgroup `rel`, once per hierarchy with controllers.
    pub fn procs_files(&self, rel: &Path) -> Vec<PathBuf> {
        self.dirs(rel)
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// The file whose `oom_kill` count tells whether the OOM killer struck in cgroup `rel`.
    pub fn oom_events_file(&self, rel: &Path) -> Option<PathBuf> {
        match self {
            Self::V1 { .. } => self
                .controller_dir("memory", rel)
                .map(|d| d.join("memory.oom_control")),
            Self::V2 { root } => Some(root.join(rel).join("memory.events")),
        }
    }
}

fn write(path: PathBuf, value: String) -> Result<(), CgroupError> {
    std::fs::write(&path, &value).map_err(|source| CgroupError::Write {
        path,
        value,
        source,
    })
}

/// A pod's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    layout: CgroupLayout,
    /// Relative to each hierarchy's root: `<parent>/pod<uid>`.
    rel: PathBuf,
}

impl PodCgroup {
    /// The pod cgroup of `pod` under `parent` (not created yet).
    pub fn new(layout: CgroupLayout, parent: &Path, pod: &PodUid) -> Self {
        Self {
            layout,
            rel: parent.join(format!("pod{pod}")),
        }
    }

    /// The cgroup path relative to the hierarchy roots.
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    /// The absolute cgroupsPath for a container of this pod.
    pub fn container_path(&self, id: &ContainerId) -> PathBuf {
        Path::new("/").join(&self.rel).join(id.as_str())
    }

    /// The host's cgroup layout.
    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// Creates the pod cgroup in every hierarchy and sets the pod-level limits. Idempotent.
    pub fn create(&self, limits: &PodResources) -> Result<(), CgroupError> {
        ensure(&self.layout, &self.rel, false)?;
        self.apply_limits(limits)
    }

    fn apply_limits(&self, limits: &PodResources) -> Result<(), CgroupError> {
        let rel = &self.rel;
        match &self.layout {
            CgroupLayout::V1 { .. } => {
                if let (Some(m), Some(dir)) = (
                    limits.memory_limit_bytes,
                    self.layout.controller_dir("memory", rel),
                ) {
                    write(dir.join("memory.limit_in_bytes"), m.to_string())?;
                }
                if let (Some(c), Some(dir)) = (
                    limits.cpu_limit_millis,
                    self.layout.controller_dir("cpu", rel),
                ) {
                    let period = crate::spec::CPU_PERIOD_US;
                    write(dir.join("cpu.cfs_period_us"), period.to_string())?;
                    let quota = (c * period / 1000).max(1000);
                    write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
                }
                if let (Some(p), Some(dir)) =
                    (limits.pids_limit, self.layout.controller_dir("pids", rel))
                {
                    write(dir.join("pids.max"), p.to_string())?;
                }
            }
            CgroupLayout::V2 { root } => {
                let dir = root.join(rel);
                if let Some(m) = limits.memory_limit_bytes {
                    write(dir.join("memory.max"), m.to_string())?;
                }
                if let Some(c) = limits.cpu_limit_millis {
                    let period = crate::spec::CPU_PERIOD_US;
                    let quota = (c * period / 1000).max(1000);
                    write(dir.join("cpu.max"), format!("{quota} {period}"))?;
                }
                if let Some(p) = limits.pids_limit {
                    write(dir.join("pids.max"), p.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Kills every process in the pod cgroup and its children, then removes them all, in every
    /// hierarchy. Idempotent; safe after a crash midway.
    pub fn remove(&self, timeout: Duration) -> Result<(), CgroupError> {
        let deadline = Instant::now() + timeout;
        for dir in self.layout.all_dirs(&self.rel) {
            remove_tree(&dir, deadline)?;
        }
        Ok(())
    }
}

/// Creates cgroup `rel` (and its ancestors) in every hierarchy with controllers, and with
/// `named` also in named v1 hierarchies such as `name=systemd`. v1 cpuset levels inherit their
/// parent's cpus and mems (they start empty, and no task can join an empty cpuset). Returns
/// the directories. Idempotent.
pub fn ensure(layout: &CgroupLayout, rel: &Path, named: bool) -> Result<Vec<PathBuf>, CgroupError> {
    let mut made = Vec::new();
    match layout {
        CgroupLayout::V1 { controllers, all } => {
            let mut mounts: Vec<(&Path, bool)> = controllers
                .iter()
                .map(|(c, m)| (m.as_path(), c.contains("cpuset")))
                .collect();
            if named {
                for m in all {
                    if !mounts.iter().any(|(x, _)| *x == m.as_path()) {
                        mounts.push((m.as_path(), false));
                    }
                }
            }
            for (mount, cpuset) in mounts {
                let mut dir = mount.to_path_buf();
                for part in rel.components() {
                    let parent = dir.clone();
                    dir.push(part);
                    create_dir(&dir)?;
                    if cpuset {
                        for file in ["cpuset.cpus", "cpuset.mems"] {
                            let current =
                                std::fs::read_to_string(dir.join(file)).unwrap_or_default();
                            if current.trim().is_empty() {
                                let value =
                                    std::fs::read_to_string(parent.join(file)).unwrap_or_default();
                                write(dir.join(file), value.trim().to_owned())?;
                            }
                        }
                    }
                }
                made.push(dir);
            }
        }
        CgroupLayout::V2 { root } => {
            let mut dir = root.clone();
            for part in rel.components() {
                enable_v2_controllers(&dir);
                dir.push(part);
                create_dir(&dir)?;
            }
            made.push(dir);
        }
    }
    Ok(made)
}

/// The cgroup that holds the shims of one runtime (`<parent>/shims`), in every hierarchy,
/// named ones included: a shim moves itself there, out of the agent's cgroup, so that a
/// service manager stopping the agent's cgroup does not take shims and containers with it.
/// Returns the `cgroup.procs` files.
pub fn ensure_shim_cgroup(
    layout: &CgroupLayout,
    parent: &Path,
) -> Result<Vec<PathBuf>, CgroupError> {
    Ok(ensure(layout, &parent.join("shims"), true)?
        .into_iter()
        .map(|d| d.join("cgroup.procs"))
        .collect())
}

fn create_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(CgroupError::Create {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn enable_v2_controllers(dir: &Path) {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    for ctl in ["cpu", "cpuset", "memory", "pids", "io"] {
        if available.split_whitespace().any(|c| c == ctl) {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{ctl}"));
        }
    }
}

/// SIGKILLs the processes of a cgroup directory (not its children).
pub fn kill_procs(dir: &Path) -> usize {
    let pids = crate::sys::read_pids(&dir.join("cgroup.procs")).unwrap_or_default();
    for pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    pids.len()
}

/// Removes a cgroup tree bottom-up, killing what runs in it, retrying until `deadline` while
/// killed processes exit.
pub fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    let children = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Remove {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for child in children {
        remove_tree(&child, deadline)?;
    }
    loop {
        kill_procs(dir);
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if Instant::now() >= deadline {
                    return Err(CgroupError::Busy {
                        path: dir.to_path_buf(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
31 25 0:26 /sub /mnt/memsub rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_hosts_use_the_v1_hierarchies() {
        let layout = CgroupLayout::from_mountinfo(HYBRID).unwrap();
        let CgroupLayout::V1 { controllers, all } = &layout else {
            panic!("expected v1: {layout:?}");
        };
        let mounts: Vec<&Path> = controllers.iter().map(|(_, m)| m.as_path()).collect();
        assert_eq!(
            mounts,
            vec![
                Path::new("/sys/fs/cgroup/cpu"),
                Path::new("/sys/fs/cgroup/cpuacct"),
                Path::new("/sys/fs/cgroup/memory")
            ]
        );
        assert!(all.contains(&PathBuf::from("/sys/fs/cgroup/systemd")));
        assert!(all.contains(&PathBuf::from("/sys/fs/cgroup/unified")));
        let rel = Path::new("berth/podx/c1");
        assert_eq!(
            layout.oom_events_file(rel),
            Some(PathBuf::from(
                "/sys/fs/cgroup/memory/berth/podx/c1/memory.oom_control"
            ))
        );
        assert_eq!(layout.procs_files(rel).len(), 3);
    }

    #[test]
    fn pure_v2_hosts_use_the_unified_hierarchy() {
        let text = "25 1 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let layout = CgroupLayout::from_mountinfo(text).unwrap();
        assert_eq!(
            layout,
            CgroupLayout::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        assert_eq!(
            layout.oom_events_file(Path::new("b/p/c")),
            Some(PathBuf::from("/sys/fs/cgroup/b/p/c/memory.events"))
        );
        assert!(matches!(
            CgroupLayout::from_mountinfo("1 1 0:1 / / rw - ext4 /dev/vda rw\n"),
            Err(CgroupError::NoHierarchy)
        ));
    }

    #[test]
    fn pod_limits_are_summed_only_when_every_container_has_one() {
        use crate::spec::Resources;
        let a = Resources {
            cpu_limit_millis: Some(100),
            memory_limit_bytes: Some(10),
            pids_limit: Some(5),
            cpu_request_millis: None,
        };
        let b = Resources {
            cpu_limit_millis: Some(200),
            memory_limit_bytes: None,
            pids_limit: Some(7),
            cpu_request_millis: None,
        };
        assert_eq!(
            PodResources::sum([&a, &b]),
            PodResources {
                cpu_limit_millis: Some(300),
                memory_limit_bytes: None,
                pids_limit: Some(12)
            }
        );
        assert_eq!(PodResources::sum([]), PodResources::default());
    }

    #[test]
    fn cgroup_parents_are_validated() {
        assert_eq!(validate_parent("berth").unwrap(), PathBuf::from("berth"));
        assert_eq!(validate_parent("/a/b/").unwrap(), PathBuf::from("a/b"));
        for bad in ["", "/", "a/../b", "a b", "a//b"] {
            assert!(validate_parent(bad).is_err(), "{bad:?}");
        }
    }
}
