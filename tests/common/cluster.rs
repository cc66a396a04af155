//! Simulated hosts for cluster tests: a "LAN" network namespace with a bridge, and one
//! network namespace per host joined to it by a veth (both ends created directly in their
//! namespaces). Each host runs the built `berth agent` with its own data and run dirs,
//! cgroup parent and peer address 10.77.0.(10+i). Everything is named after the test and the
//! process id and removed on drop, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{IMAGE, berth_bin, finish_within, run, shim_bin, stop_agent, tail, test_image};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The LAN: a namespace holding a bridge every host's veth is attached to.
pub struct Lan {
    /// The namespace's name.
    pub netns: String,
    prefix: String,
}

impl Lan {
    fn new(test: &str) -> Lan {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let short: String = test
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let prefix = format!("bc-{short}-{}-{n}", std::process::id());
        let lan = Lan {
            netns: format!("{prefix}-lan"),
            prefix,
        };
        run("ip", &["netns", "add", &lan.netns]);
        run("ip", &["-n", &lan.netns, "link", "set", "lo", "up"]);
        run(
            "ip",
            &["-n", &lan.netns, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &lan.netns, "link", "set", "br0", "up"]);
        lan
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

/// One simulated host and its agent.
pub struct Host {
    /// Its node name (`h1`, `h2`...).
    pub name: String,
    /// Its address on the LAN.
    pub ip: String,
    /// Its network namespace.
    pub netns: String,
    /// Its test directory (data, run, log).
    pub dir: PathBuf,
    cgroup_parent: String,
    args: Vec<String>,
    child: Option<Child>,
    _temp: tempfile::TempDir,
}

/// N hosts on one LAN.
pub struct Cluster {
    /// The hosts, in order (`hosts[0]` founded the cluster).
    pub hosts: Vec<Host>,
    /// The LAN (dropped after the hosts).
    pub lan: Lan,
}

impl Cluster {
    /// Starts `n` hosts: the first founds the cluster, the others join it with a token.
    /// The test image is imported on every host.
    pub fn start(test: &str, n: usize) -> Cluster {
        let mut cluster = Cluster::empty(test);
        cluster.add_host();
        cluster.hosts[0].launch();
        cluster.hosts[0].import_image();
        for _ in 1..n {
            cluster.join_host();
        }
        cluster
    }

    /// A LAN without hosts.
    pub fn empty(test: &str) -> Cluster {
        Cluster {
            lan: Lan::new(test),
            hosts: Vec::new(),
        }
    }

    /// Creates the next host's namespace and link (its agent is not started).
    pub fn add_host(&mut self) -> usize {
        let index = self.hosts.len();
        let name = format!("h{}", index + 1);
        let netns = format!("{}-{name}", self.lan.prefix);
        let ip = format!("10.77.0.{}", 11 + index);
        run("ip", &["netns", "add", &netns]);
        run("ip", &["-n", &netns, "link", "set", "lo", "up"]);
        let port = format!("lan-{name}");
        run(
            "ip",
            &[
                "link",
                "add",
                "name",
                "eth0",
                "netns",
                &netns,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &self.lan.netns,
            ],
        );
        run(
            "ip",
            &["-n", &self.lan.netns, "link", "set", &port, "master", "br0"],
        );
        run("ip", &["-n", &self.lan.netns, "link", "set", &port, "up"]);
        run(
            "ip",
            &[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
        run(
            "ip",
            &[
                "netns",
                "exec",
                &netns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        );
        let temp = tempfile::Builder::new()
            .prefix(&format!("{netns}-"))
            .tempdir()
            .expect("temp dir");
        self.hosts.push(Host {
            name,
            ip: ip.clone(),
            netns,
            dir: temp.path().to_path_buf(),
            cgroup_parent: format!("{}-{}", self.lan.prefix, index + 1),
            args: vec![
                "--advertise-address".into(),
                ip,
                "--listen".into(),
                "0.0.0.0:7443".into(),
            ],
            child: None,
            _temp: temp,
        });
        index
    }

    /// Adds a host that joins with a fresh token from host 1 and waits until it serves.
    pub fn join_host(&mut self) -> usize {
        let token = self.hosts[0]
            .ok(&["token", "create", "--ttl", "1h"])
            .trim()
            .to_string();
        let index = self.add_host();
        let server = format!("{}:7443", self.hosts[0].ip);
        self.hosts[index]
            .args
            .extend(["--join".to_string(), server, "--token".to_string(), token]);
        self.hosts[index].launch();
        self.hosts[index].import_image();
        index
    }

    /// The index of the host that leads now, as host 1's view of the members says.
    pub fn leader(&self, asking: usize) -> Option<usize> {
        let members = self.hosts[asking].berth(&["members"]);
        let text = String::from_utf8_lossy(&members.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some("leader"))?;
        let name = line.split_whitespace().next()?;
        self.hosts.iter().position(|h| h.name == name)
    }

    /// The roles (`leader`, `voter`, `learner`) by host name, as `asking` sees them.
    pub fn roles(&self, asking: usize) -> Vec<(String, String)> {
        let text = self.hosts[asking].ok(&["members"]);
        let mut roles: Vec<(String, String)> = text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut fields = l.split_whitespace();
                let name = fields.next()?.to_string();
                let role = fields.nth(1)?.to_string();
                Some((name, role))
            })
            .collect();
        roles.sort();
        roles
    }

    /// Cuts host `index` off the LAN (link down on its bridge port).
    pub fn cut(&self, index: usize) {
        self.set_lan_port(index, "down");
    }

    /// Reconnects host `index`.
    pub fn reconnect(&self, index: usize) {
        self.set_lan_port(index, "up");
    }

    /// Sets host `index`'s port on the LAN bridge `up` or `down`.
    fn set_lan_port(&self, index: usize, state: &str) {
        let port = format!("lan-{}", self.hosts[index].name);
        run("ip", &["-n", &self.lan.netns, "link", "set", &port, state]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            host.clean_up();
        }
        self.hosts.clear();
    }
}

impl Host {
    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("run").join("berth.sock")
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    /// Extra `berth agent` flags (replacing none of the harness's).
    pub fn add_args(&mut self, args: &[&str]) {
        self.args.extend(args.iter().map(|s| s.to_string()));
    }

    /// Starts the agent in the host's namespace without waiting for it.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .expect("agent log");
        let mut cmd = Command::new(berth_bin());
        cmd.arg("agent")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--run-dir")
            .arg(self.dir.join("run"))
            .arg("--node-name")
            .arg(&self.name)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--shim-path")
            .arg(shim_bin())
            .arg("--dns-listen")
            .arg(format!("{}:53", self.ip))
            .args(&self.args)
            .env(
                "BERTH_LOG",
                std::env::var("BERTH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("NOTIFY_SOCKET")
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let netns = std::fs::File::open(format!("/run/netns/{}", self.netns))
            .expect("the host's network namespace");
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only setns(2), which is async-signal-safe, runs.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
        self.child = Some(cmd.spawn().expect("starting berth agent"));
    }

    /// Waits until the agent serves its socket; panics with its log if it exits first.
    pub fn wait_serving(&mut self, seconds: u64) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if self.socket().exists() && self.berth(&["version"]).status.success() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "berth agent on {} exited with {status} while starting:\n{}",
                    self.name,
                    tail(&self.log(), 60)
                );
            }
            assert!(
                Instant::now() < deadline,
                "berth agent on {} did not serve in {seconds} s:\n{}",
                self.name,
                tail(&self.log(), 60)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the agent and waits until it serves.
    pub fn launch(&mut self) {
        self.spawn();
        self.wait_serving(90);
    }

    /// Waits for the agent to exit on its own (a refused join) and returns its log.
    pub fn wait_exit(&mut self, seconds: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut child = self.child.take().expect("a running agent");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(
                    !status.success(),
                    "the agent on {} exited successfully",
                    self.name
                );
                return self.log();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the agent on {} is still running after {seconds} s:\n{}",
                    self.name,
                    tail(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn import_image(&self) {
        let image = test_image();
        self.ok(&[
            "image",
            "import",
            image.to_str().expect("utf-8 path"),
            "--name",
            IMAGE,
        ]);
    }

    /// SIGKILLs the agent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERMs the agent and waits for it.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_agent(child);
        }
    }

    /// Runs the CLI against this host's socket.
    pub fn berth(&self, args: &[&str]) -> Output {
        let child = Command::new(berth_bin())
            .args(args)
            .env("BERTH_SOCKET", self.socket())
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running berth");
        finish_within(child, &format!("berth {} on {}", args.join(" "), self.name))
    }

    /// Runs the CLI and returns stdout; panics with stderr when it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {} on {} failed: {}\n{}\nagent log:\n{}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Applies a manifest from stdin.
    pub fn apply(&self, manifest: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(berth_bin())
            .args(["apply", "-f", "-"])
            .env("BERTH_SOCKET", self.socket())
            .env_remove("BERTH_SERVER")
            .env_remove("BERTH_KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running berth apply");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(manifest.as_bytes())
            .expect("writing the manifest");
        finish_within(child, &format!("berth apply on {}", self.name))
    }

    /// `berth get ... -o json`.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("JSON output")
    }

    /// Polls `check` every 200 ms until it returns `Some`, for up to `seconds`.
    pub fn wait_for<T>(&self, what: &str, seconds: u64, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{} on {}: timed out after {seconds} s\nagent log:\n{}",
                what,
                self.name,
                tail(&self.log(), 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asks this host's DNS server (on its LAN address) for the A record of `name`.
    pub fn dig(&self, name: &str) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "dig",
                "+short",
                "+time=1",
                "+tries=1",
                &format!("@{}", self.ip),
                name,
                "A",
            ])
            .output()
            .expect("running dig");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a command in the host's network namespace.
    pub fn netns_exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    fn clean_up(&mut self) {
        self.kill();
        let dirs = berth_runtime::RuntimeDirs {
            run_dir: self.dir.join("run"),
            data_dir: self.data_dir(),
        };
        let mut config = berth_runtime::RuntimeConfig::new(dirs, shim_bin());
        config.cgroup_parent = self.cgroup_parent.clone();
        if let Ok(runtime) = berth_runtime::Runtime::new(config) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio");
            rt.block_on(async {
                for c in runtime.recover().unwrap_or_default() {
                    let _ = runtime.remove_container(&c.id, true).await;
                }
                for pod in runtime.sandbox_pods() {
                    let _ = runtime.remove_pod_volumes(&pod).await;
                    let _ = runtime.remove_sandbox(&pod).await;
                }
            });
        }
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            let root = self.dir.to_string_lossy().to_string();
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        if let Ok(layout) = berth_runtime::cgroup::CgroupLayout::detect() {
            let deadline = Instant::now() + Duration::from_secs(5);
            for dir in layout.dirs(Path::new(&self.cgroup_parent)) {
                berth_runtime::cgroup::kill_procs(&dir);
                let _ = berth_runtime::cgroup::remove_tree(&dir, deadline);
            }
        }
        // Hierarchies the runtime's layout does not list (the named systemd one, the unified
        // one beside v1) still got the parent: remove what is left, deepest first.
        if let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") {
            for root in roots.flatten() {
                remove_empty_tree(&root.path().join(&self.cgroup_parent));
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

fn remove_empty_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_tree(&entry.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}
