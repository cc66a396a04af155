use super::*;
use oci_spec::runtime::LinuxSeccompAction;

fn host_caps() -> BTreeSet<String> {
    capabilities::ALL_CAPABILITIES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn pod_namespaces() -> PodNamespaces {
    PodNamespaces {
        network: NamespaceMode::Join("/run/berth/sandboxes/p/ns/net".into()),
        uts: NamespaceMode::Join("/run/berth/sandboxes/p/ns/uts".into()),
        ipc: NamespaceMode::Join("/run/berth/sandboxes/p/ns/ipc".into()),
    }
}

fn image() -> ImageConfig {
    ImageConfig {
        cmd: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        ..ImageConfig::default()
    }
}

struct Fixture {
    container: ContainerConfig,
    image: ImageConfig,
    users: UserDb,
    caps: BTreeSet<String>,
    namespaces: PodNamespaces,
    etc: EtcFiles,
    mounts: Vec<BindMount>,
}

impl Fixture {
    fn new() -> Self {
        Self {
            container: ContainerConfig::default(),
            image: image(),
            users: UserDb::parse(
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
                "root:x:0:\napp:x:1000:\n",
            ),
            caps: host_caps(),
            namespaces: pod_namespaces(),
            etc: EtcFiles::default(),
            mounts: vec![],
        }
    }

    fn build(&self) -> Result<Spec, SpecError> {
        build_spec(&SpecInput {
            container: &self.container,
            image: &self.image,
            users: &self.users,
            host_capabilities: &self.caps,
            rootfs: Path::new("/var/lib/berth/containers/c1/rootfs"),
            hostname: Some("web-0"),
            namespaces: &self.namespaces,
            pod_shm: Some(Path::new("/run/berth/sandboxes/p/shm")),
            etc_files: &self.etc,
            mounts: &self.mounts,
            cgroups_path: Path::new("/berth/podp/c1"),
            annotations: BTreeMap::new(),
        })
    }
}

fn destinations(spec: &Spec) -> Vec<String> {
    spec.mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect()
}

fn ns_types(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

fn effective_caps(spec: &Spec) -> BTreeSet<String> {
    spec.process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .effective()
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_default_container_gets_containerd_defaults() {
    let spec = Fixture::new().build().unwrap();
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_ref().unwrap(), &vec!["sh".to_string()]);
    assert_eq!(process.cwd(), Path::new("/"));
    assert_eq!(process.no_new_privileges(), Some(true));
    assert_eq!(process.user().uid(), 0);
    assert!(
        process
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOSTNAME=web-0".to_string())
    );
    assert!(
        process
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOME=/root".to_string())
    );
    let caps = effective_caps(&spec);
    assert_eq!(caps.len(), 14);
    assert_eq!(
        caps,
        capabilities::DEFAULT_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .collect()
    );

    let linux = spec.linux().as_ref().unwrap();
    let seccomp = linux
        .seccomp()
        .as_ref()
        .expect("seccomp in force by default");
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert!(
        linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string())
    );
    assert!(
        linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string())
    );
    let devices = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap();
    assert_eq!(devices.len(), 1);
    assert!(
        !devices[0].allow(),
        "all devices denied except the defaults"
    );
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/berth/podp/c1"))
    );

    assert_eq!(
        ns_types(&spec),
        vec![
            (LinuxNamespaceType::Pid, None),
            (LinuxNamespaceType::Mount, None),
            (
                LinuxNamespaceType::Network,
                Some("/run/berth/sandboxes/p/ns/net".into())
            ),
            (
                LinuxNamespaceType::Uts,
                Some("/run/berth/sandboxes/p/ns/uts".into())
            ),
            (
                LinuxNamespaceType::Ipc,
                Some("/run/berth/sandboxes/p/ns/ipc".into())
            ),
        ]
    );
    assert_eq!(
        destinations(&spec),
        vec![
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/dev/shm",
            "/sys",
            "/sys/fs/cgroup"
        ]
    );
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
    assert_eq!(
        spec.hostname(),
        &None,
        "the pod's UTS namespace carries the hostname"
    );
}

#[test]
fn a_privileged_container_is_unconfined() {
    let mut f = Fixture::new();
    f.container.security.privileged = true;
    f.caps.remove("CAP_SYS_RESOURCE");
    let spec = f.build().unwrap();
    let linux = spec.linux().as_ref().unwrap();
    assert!(linux.seccomp().is_none());
    assert!(linux.masked_paths().is_none());
    assert!(linux.readonly_paths().is_none());
    assert!(
        linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .as_ref()
            .unwrap()[0]
            .allow()
    );
    assert_eq!(effective_caps(&spec), f.caps);
    assert_eq!(
        spec.process().as_ref().unwrap().no_new_privileges(),
        Some(false)
    );
}

#[test]
fn seccomp_unconfined_and_privilege_escalation_are_honoured() {
    let mut f = Fixture::new();
    f.container.security.seccomp = SeccompProfile::Unconfined;
    f.container.security.allow_privilege_escalation = Some(true);
    let spec = f.build().unwrap();
    assert!(spec.linux().as_ref().unwrap().seccomp().is_none());
    assert_eq!(
        spec.process().as_ref().unwrap().no_new_privileges(),
        Some(false)
    );
}

#[test]
fn added_capabilities_widen_the_seccomp_profile() {
    let mut f = Fixture::new();
    f.container.security.capabilities_add = vec!["SYS_ADMIN".into()];
    let spec = f.build().unwrap();
    let names: Vec<String> = spec
        .linux()
        .as_ref()
        .unwrap()
        .seccomp()
        .as_ref()
        .unwrap()
        .syscalls()
        .as_ref()
        .unwrap()
        .iter()
        .flat_map(|s| s.names().clone())
        .collect();
    assert!(names.contains(&"mount".to_string()));
}

#[test]
fn host_network_shares_the_hosts_namespace_and_binds_sys() {
    let mut f = Fixture::new();
    f.namespaces.network = NamespaceMode::Host;
    f.namespaces.uts = NamespaceMode::Host;
    let spec = f.build().unwrap();
    let types: Vec<_> = ns_types(&spec).into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        types,
        vec![
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Ipc
        ]
    );
    let sys = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/sys"))
        .unwrap();
    assert_eq!(sys.typ().as_deref(), Some("bind"));
}

#[test]
fn limits_become_cgroup_resources() {
    let mut f = Fixture::new();
    f.container.resources = Resources {
        cpu_limit_millis: Some(250),
        cpu_request_millis: None,
        memory_limit_bytes: Some(64 << 20),
        pids_limit: Some(20),
    };
    let spec = f.build().unwrap();
    let res = spec.linux().as_ref().unwrap().resources().clone().unwrap();
    let cpu = res.cpu().as_ref().unwrap();
    assert_eq!(cpu.quota(), Some(25_000));
    assert_eq!(cpu.period(), Some(100_000));
    assert_eq!(cpu.shares(), Some(256));
    assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
    assert_eq!(res.pids().as_ref().unwrap().limit(), 20);
}

#[test]
fn zero_limits_are_rejected_naming_the_field() {
    let mut f = Fixture::new();
    f.container.resources.memory_limit_bytes = Some(0);
    assert_eq!(
        f.build().unwrap_err().to_string(),
        "resources: limits.memory must be greater than zero"
    );
}

#[test]
fn read_only_root_filesystem_makes_root_and_etc_files_read_only() {
    let mut f = Fixture::new();
    f.container.security.read_only_root_filesystem = true;
    f.etc.hosts = Some("/run/berth/sandboxes/p/hosts".into());
    let spec = f.build().unwrap();
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    let hosts = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/etc/hosts"))
        .unwrap();
    assert!(
        hosts
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string())
    );
}

#[test]
fn volume_mounts_are_ordered_parents_first_and_checked() {
    let mut f = Fixture::new();
    f.mounts = vec![
        BindMount {
            source: "/v/b".into(),
            destination: "/data/sub".into(),
            read_only: true,
        },
        BindMount {
            source: "/v/a".into(),
            destination: "/data/".into(),
            read_only: false,
        },
    ];
    let spec = f.build().unwrap();
    let dests = destinations(&spec);
    assert_eq!(&dests[dests.len() - 2..], &["/data", "/data/sub"]);

    f.mounts.push(BindMount {
        source: "/v/c".into(),
        destination: "/data".into(),
        read_only: false,
    });
    assert_eq!(
        f.build().unwrap_err(),
        SpecError::DuplicateMountPath {
            path: "/data".into()
        }
    );

    f.mounts = vec![BindMount {
        source: "/v/c".into(),
        destination: "/x/../../etc".into(),
        read_only: false,
    }];
    assert_eq!(
        f.build().unwrap_err().to_string(),
        "mount path \"/x/../../etc\" resolves outside the container's root"
    );
}

#[test]
fn image_user_and_pod_groups_set_the_identity() {
    let mut f = Fixture::new();
    f.image.user = Some("app".into());
    f.container.security.fs_group = Some(2000);
    f.container.security.supplemental_groups = vec![3000];
    let spec = f.build().unwrap();
    let user = spec.process().as_ref().unwrap().user().clone();
    assert_eq!((user.uid(), user.gid()), (1000, 1000));
    assert_eq!(user.additional_gids().clone().unwrap(), vec![3000, 2000]);
    assert!(
        spec.process()
            .as_ref()
            .unwrap()
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOME=/home/app".to_string())
    );

    f.image.user = Some("ghost".into());
    assert_eq!(
        f.build().unwrap_err(),
        SpecError::UnknownUser {
            user: "ghost".into()
        }
    );
}

#[test]
fn the_spec_round_trips_through_json() {
    let spec = Fixture::new().build().unwrap();
    let text = serde_json::to_string(&spec).unwrap();
    let back: Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(back, spec);
}
