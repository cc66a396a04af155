//! Shared fixtures for the runtime's integration tests: a busybox rootfs, a [`Runtime`] on
//! unique temporary directories with a unique cgroup parent, and cleanup guards that remove
//! everything (containers, sandboxes, volumes, cgroups, mounts) also when a test fails.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use berth_runtime::cgroup::PodResources;
use berth_runtime::image::ImageConfig;
use berth_runtime::spec::{ContainerConfig, EtcFiles};
use berth_runtime::{
    ContainerId, ContainerRequest, LogConfig, PodUid, RootfsSource, Runtime, RuntimeConfig,
    RuntimeDirs, SandboxConfig, Shim, VolumeMount,
};

/// Set for child test processes: the rootfs their parent built.
pub const ROOTFS_ENV: &str = "BERTH_TEST_ROOTFS";

/// A busybox root filesystem shared by all tests of this process (read-only use: containers
/// get it as the lower layer of an overlay).
pub fn busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        // A child test process (see tests/recovery.rs) borrows its parent's.
        if let Some(dir) = std::env::var_os(ROOTFS_ENV) {
            return PathBuf::from(dir);
        }
        let dir = std::env::temp_dir().join(format!("berth-test-rootfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for d in [
            "bin", "etc", "tmp", "proc", "sys", "dev", "root", "home/app", "usr/bin", "usr/sbin",
            "sbin",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
            .expect("busybox-static is installed");
        // Inside a chroot, so the applet links point at /bin/busybox of the rootfs.
        let status = std::process::Command::new("chroot")
            .arg(&dir)
            .args(["/bin/busybox", "--install", "-s", "/bin"])
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("etc/group"),
            "root:x:0:\napp:x:1000:\nextra:x:3000:app\n",
        )
        .unwrap();
        let mut perms = std::fs::metadata(dir.join("tmp")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o1777);
        std::fs::set_permissions(dir.join("tmp"), perms).unwrap();
        RemoveAtExit::register(dir.clone());
        dir
    })
}

/// Removes the shared rootfs when the test process exits.
struct RemoveAtExit;

impl RemoveAtExit {
    fn register(dir: PathBuf) {
        static DIRS: OnceLock<std::sync::Mutex<Vec<PathBuf>>> = OnceLock::new();
        DIRS.get_or_init(Default::default).lock().unwrap().push(dir);
        extern "C" fn cleanup() {
            if let Some(dirs) = DIRS.get() {
                for d in dirs.lock().unwrap().iter() {
                    let _ = std::fs::remove_dir_all(d);
                }
            }
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: registering a plain extern "C" function with atexit.
        ONCE.call_once(|| unsafe {
            libc::atexit(cleanup);
        });
    }
}

/// A runtime on its own directories and cgroup parent, torn down on drop.
pub struct TestRuntime {
    pub runtime: Runtime,
    pub tmp: PathBuf,
    pub name: String,
    pods: Vec<PodUid>,
}

/// Unique, short name for a test's resources.
pub fn unique(test: &str) -> String {
    let short: String = test
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(24)
        .collect();
    format!("{short}-{}", std::process::id())
}

impl TestRuntime {
    pub fn new(test: &str) -> Self {
        let name = unique(test);
        let tmp = std::env::temp_dir().join(format!("berth-rt-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let dirs = RuntimeDirs {
            run_dir: tmp.join("run"),
            data_dir: tmp.join("data"),
        };
        let mut config = RuntimeConfig::new(dirs, env!("CARGO_BIN_EXE_berth-shim"));
        config.cgroup_parent = format!("berth-test-{name}");
        let runtime = Runtime::new(config).expect("runtime");
        Self {
            runtime,
            tmp,
            name,
            pods: Vec::new(),
        }
    }

    pub fn dirs(&self) -> &RuntimeDirs {
        self.runtime.dirs()
    }

    pub async fn sandbox(&mut self, pod: &str, hostname: &str) -> PodUid {
        self.sandbox_with(SandboxConfig {
            pod_uid: PodUid::new(pod).unwrap(),
            hostname: hostname.into(),
            host_network: false,
            host_ipc: false,
            resources: PodResources::default(),
            shm_size: None,
        })
        .await
    }

    pub async fn sandbox_with(&mut self, config: SandboxConfig) -> PodUid {
        let pod = config.pod_uid.clone();
        self.pods.push(pod.clone());
        self.runtime.create_sandbox(config).await.expect("sandbox");
        pod
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.tmp.join("logs").join(format!("{id}.log"))
    }

    /// A request for a busybox container running `sh -c script` in `pod`.
    pub fn request(&self, id: &str, pod: &PodUid, script: &str) -> ContainerRequest {
        ContainerRequest {
            id: ContainerId::new(id).unwrap(),
            pod: pod.clone(),
            rootfs: RootfsSource::Overlay {
                lower_dirs: vec![busybox_rootfs().to_path_buf()],
            },
            image: ImageConfig {
                cmd: vec!["sh".into()],
                env: vec!["PATH=/bin:/usr/bin".into()],
                ..ImageConfig::default()
            },
            config: ContainerConfig {
                command: vec!["sh".into(), "-c".into(), script.into()],
                ..ContainerConfig::default()
            },
            mounts: Vec::<VolumeMount>::new(),
            etc_files: EtcFiles::default(),
            log: LogConfig::new(self.log_path(id)),
            labels: BTreeMap::new(),
        }
    }

    pub async fn start(&self, request: ContainerRequest) -> Shim {
        self.runtime
            .start_container(request)
            .await
            .map_err(|e| berth_runtime::shim::error_chain(&e))
            .expect("container starts")
    }

    /// The cgroup parent's directories in every hierarchy.
    pub fn cgroup_parent_dirs(&self) -> Vec<PathBuf> {
        let parent = self.runtime.cgroup_parent().to_path_buf();
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(&parent))
            .collect()
    }
}

/// Every cgroup mount point (v1 and v2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 "))
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

impl Drop for TestRuntime {
    fn drop(&mut self) {
        let rt = self.runtime.clone();
        let pods = self.pods.clone();
        let tmp = self.tmp.clone();
        let parents = self.cgroup_parent_dirs();
        // Drop may run inside a tokio runtime: do the async cleanup on a fresh thread.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                for c in rt.recover().unwrap_or_default() {
                    let _ = rt.remove_container(&c.id, true).await;
                }
                for pod in &pods {
                    let _ = rt.remove_sandbox(pod).await;
                    let _ = rt.remove_pod_volumes(pod).await;
                }
            });
            for p in parents {
                let _ = std::fs::remove_dir(p.join("shims"));
                let _ = std::fs::remove_dir(&p);
            }
            // Unmount anything still below the test dir before deleting it.
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            let prefix = tmp.display().to_string();
            let mut below: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|m| m.starts_with(&prefix))
                .collect();
            below.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in below {
                let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
            }
            let _ = std::fs::remove_dir_all(&tmp);
        })
        .join()
        .unwrap();
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The log's lines as text.
pub fn log_text(path: &Path) -> Vec<String> {
    berth_runtime::logs::read_log(path, None)
        .map(|lines| lines.iter().map(|l| l.text()).collect())
        .unwrap_or_default()
}

/// Asserts that container `id` left nothing on the host: no shim dir, no libcontainer state,
/// no overlay dirs or mounts, no cgroup in any hierarchy.
pub fn assert_nothing_left(t: &TestRuntime, id: &str) {
    let dirs = t.dirs();
    let shim_dir = dirs.shims_dir().join(id);
    assert!(
        !shim_dir.exists(),
        "shim dir {} left behind",
        shim_dir.display()
    );
    let state = dirs.libcontainer_root().join(id);
    assert!(
        !state.exists(),
        "libcontainer state {} left behind",
        state.display()
    );
    let data = dirs.data_dir.join("containers").join(id);
    assert!(
        !data.exists(),
        "container data {} left behind",
        data.display()
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&data.display().to_string()),
        "a mount of {} is left",
        data.display()
    );
    for parent in t.cgroup_parent_dirs() {
        if let Ok(pods) = std::fs::read_dir(&parent) {
            for pod in pods.flatten() {
                let c = pod.path().join(id);
                assert!(!c.exists(), "cgroup {} left behind", c.display());
            }
        }
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next();
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// Runs `cmd` in container `id` and returns (exit code, stdout, stderr).
pub async fn exec(t: &TestRuntime, id: &str, cmd: &[&str]) -> (i32, String, String) {
    let out = t
        .runtime
        .exec_output(
            &berth_runtime::ContainerId::new(id).unwrap(),
            &berth_runtime::ExecRequest::new(cmd.iter().copied()),
            Duration::from_secs(20),
        )
        .await
        .map_err(|e| berth_runtime::shim::error_chain(&e))
        .expect("exec runs");
    (
        out.exit.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until the container's log has a line equal to `line`.
pub async fn wait_for_log_line(t: &TestRuntime, id: &str, line: &str) {
    let path = t.log_path(id);
    eventually(
        &format!("log line {line:?} of {id}"),
        Duration::from_secs(20),
        || log_text(&path).iter().any(|l| l == line).then_some(()),
    )
    .await
}

/// The container's cgroup directory in the hierarchy mounted at `mount`.
pub fn container_cgroup(t: &TestRuntime, mount: &str, pod: &PodUid, id: &str) -> PathBuf {
    Path::new(mount)
        .join(t.runtime.cgroup_parent())
        .join(format!("pod{pod}"))
        .join(id)
}
