//! The end-to-end test harness: real `berth agent` processes on temporary directories, the
//! real `berth` CLI against them, real containers from the busybox test image.
//!
//! ```ignore
//! let agent = Agent::start();                 // its own data/run dirs, socket, cgroup parent
//! agent.apply(POD_YAML);                       // berth apply -f - (asserts success)
//! agent.wait_for_pod_ready("web", 30);         // polls `get pod -o json`
//! let out = agent.ok(&["logs", "web"]);        // stdout of a successful command
//! let out = agent.berth(&["get", "pod", "x"]); // full Output, for failures
//! agent.kill(); agent.restart();               // SIGKILL the agent, start it again
//! ```
//!
//! Dropping an [`Agent`] stops it and removes every container, sandbox, cgroup and mount it
//! made (containers outlive the agent by design, so the harness cleans up through the runtime).
//! Needs root, and the binaries built: `cargo build --workspace --bins` (scripts/test.sh does).

#![allow(dead_code)]

pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The test image's name, as every test manifest uses it.
pub const IMAGE: &str = "berth.local/busybox:1";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The `berth` binary under test.
pub fn berth_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_berth"))
}

/// `berth-shim`, next to `berth`.
pub fn shim_bin() -> PathBuf {
    let shim = berth_bin().with_file_name("berth-shim");
    assert!(
        shim.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (scripts/test.sh does)",
        shim.display()
    );
    shim
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("agent/ is in the workspace")
        .to_path_buf()
}

/// The busybox test image as an OCI layout, built once per test run by
/// scripts/build-busybox-image.sh (which caches it).
pub fn test_image() -> PathBuf {
    static IMAGE_DIR: OnceLock<PathBuf> = OnceLock::new();
    IMAGE_DIR
        .get_or_init(|| {
            let dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace().join("target"))
                .join("test-images")
                .join("busybox");
            let status = Command::new(workspace().join("scripts/build-busybox-image.sh"))
                .arg(&dir)
                .arg(IMAGE)
                .status()
                .expect("running scripts/build-busybox-image.sh");
            assert!(status.success(), "building the test image failed");
            dir
        })
        .clone()
}

/// A running agent under test.
pub struct Agent {
    pub name: String,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub cgroup_parent: String,
    /// The network namespace the agent runs in (its "host" network: bridge, nft table, DNS on
    /// the pods' gateway), so parallel test agents never share one.
    pub netns: String,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// Relays from the agent's 127.0.0.1 to the machine's (see [`Agent::reach_host_port`]).
    relays: Vec<Child>,
    _temp: tempfile::TempDir,
}

impl Agent {
    /// Starts an agent with the test image imported.
    pub fn start() -> Agent {
        Agent::start_with(&[])
    }

    /// Starts an agent with extra `berth agent` flags.
    pub fn start_with(extra: &[&str]) -> Agent {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("t{}-{n}", std::process::id());
        let temp = tempfile::Builder::new()
            .prefix(&format!("berth-e2e-{id}-"))
            .tempdir()
            .expect("temp dir");
        let dir = temp.path().to_path_buf();
        let mut agent = Agent {
            name: format!("node-{id}"),
            socket: dir.join("run").join("berth.sock"),
            cgroup_parent: format!("berth-{id}"),
            netns: format!("berth-e2e-{id}"),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            dir,
            child: None,
            relays: Vec::new(),
            _temp: temp,
        };
        run("ip", &["netns", "add", &agent.netns]);
        run("ip", &["-n", &agent.netns, "link", "set", "lo", "up"]);
        agent.launch();
        let image = test_image();
        agent.ok(&[
            "image",
            "import",
            image.to_str().expect("utf-8 path"),
            "--name",
            IMAGE,
        ]);
        agent
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The agent's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    fn launch(&mut self) {
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
            .arg(self.run_dir())
            .arg("--node-name")
            .arg(&self.name)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .arg("--shim-path")
            .arg(shim_bin())
            .args(&self.extra_args)
            .env(
                "BERTH_LOG",
                std::env::var("BERTH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let netns = std::fs::File::open(format!("/run/netns/{}", self.netns))
            .expect("the agent's network namespace");
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only setns(2), which is async-signal-safe, runs; it
        // moves the child into the agent's network namespace and nothing else.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
        self.child = Some(cmd.spawn().expect("starting berth agent"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.socket.exists() && self.berth(&["version"]).status.success() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "berth agent exited with {status} while starting:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "berth agent did not start serving in 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the agent (containers keep running).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the agent with SIGTERM and waits for it (containers keep running).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_agent(child);
        }
    }

    /// Starts the agent again on the same directories.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs the CLI against this agent. A command still running after [`CLI_TIME_LIMIT`] is
    /// killed and fails the test: a hung CLI must not hang the whole test run.
    pub fn berth(&self, args: &[&str]) -> Output {
        let child = Command::new(berth_bin())
            .args(args)
            .env("BERTH_SOCKET", &self.socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running berth");
        finish_within(child, &format!("berth {}", args.join(" ")))
    }

    /// Runs the CLI with stdin.
    pub fn berth_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(berth_bin())
            .args(args)
            .env("BERTH_SOCKET", &self.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running berth");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("writing stdin");
        finish_within(child, &format!("berth {}", args.join(" ")))
    }

    /// Runs the CLI and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {} failed ({}):\nstdout: {}\nstderr: {}\nagent log tail:\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            !out.status.success(),
            "berth {} unexpectedly succeeded:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `berth apply -f -` with the manifest; asserts success; returns stdout.
    pub fn apply(&self, manifest: &str) -> String {
        let out = self.berth_stdin(&["apply", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "apply failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `berth get ... -o json`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&full)).expect("JSON output")
    }

    /// The pod, or None when it does not exist.
    pub fn pod(&self, name: &str) -> Option<Value> {
        let out = self.berth(&["get", "pod", name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("JSON"))
    }

    /// Polls until `check` returns Some, or panics after `seconds` with `what` and the log.
    pub fn wait_for<T>(&self, what: &str, seconds: u64, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(v) = check() {
                return v;
            }
            if Instant::now() > deadline {
                if let Some(copy) = std::env::var_os("BERTH_E2E_LOG_COPY") {
                    // Debugging aid: the whole agent log, not only its tail.
                    let _ = std::fs::write(copy, self.log());
                }
                panic!(
                    "timed out after {seconds} s waiting for {what}\nagent log tail:\n{}",
                    tail(&self.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the pod's Ready condition is True; returns the pod.
    pub fn wait_for_pod_ready(&self, name: &str, seconds: u64) -> Value {
        self.wait_for(&format!("pod {name} to be Ready"), seconds, || {
            self.pod(name).filter(|p| condition(p, "Ready"))
        })
    }

    /// Waits until the pod is gone.
    pub fn wait_for_pod_gone(&self, name: &str, seconds: u64) {
        self.wait_for(&format!("pod {name} to be gone"), seconds, || {
            self.pod(name).is_none().then_some(())
        })
    }

    /// Removes what the agent made: containers, sandboxes (namespaces, cgroups), mounts.
    fn clean_up(&mut self) {
        self.kill();
        let dirs = berth_runtime::RuntimeDirs {
            run_dir: self.run_dir(),
            data_dir: self.data_dir(),
        };
        let mut config = berth_runtime::RuntimeConfig::new(dirs, shim_bin());
        config.cgroup_parent = self.cgroup_parent.clone();
        let Ok(runtime) = berth_runtime::Runtime::new(config) else {
            return;
        };
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
        // Anything still mounted under the test's directories (claims, emptyDirs) goes too.
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
        // The cgroup parent (shims' cgroup included) in every hierarchy.
        if let Ok(layout) = berth_runtime::cgroup::CgroupLayout::detect() {
            let deadline = Instant::now() + Duration::from_secs(5);
            for dir in layout.dirs(Path::new(&self.cgroup_parent)) {
                berth_runtime::cgroup::kill_procs(&dir);
                let _ = berth_runtime::cgroup::remove_tree(&dir, deadline);
            }
        }
    }
}

impl Agent {
    /// Makes `127.0.0.1:port` inside the agent's network namespace reach `127.0.0.1:port` of
    /// the machine (a registry a test started there): a socat relay in the namespace that
    /// connects from the machine's namespace for each connection. Removed with the agent.
    pub fn reach_host_port(&mut self, port: u16) {
        let relay = Command::new("ip")
            .args(["netns", "exec", &self.netns, "socat"])
            .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"))
            .arg(format!(
                "EXEC:nsenter --net=/proc/{}/ns/net socat STDIO TCP\\:127.0.0.1\\:{port}",
                std::process::id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting socat (Debian package socat)");
        self.relays.push(relay);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listening = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.netns,
                    "ss",
                    "-Hltn",
                    &format!("sport = :{port}"),
                ])
                .output()
                .map(|o| !String::from_utf8_lossy(&o.stdout).trim().is_empty())
                .unwrap_or(false);
            if listening {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the relay to port {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        for relay in &mut self.relays {
            let _ = relay.kill();
            let _ = relay.wait();
        }
        self.clean_up();
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

/// SIGTERMs an agent process and waits up to 15 s for it to exit, then SIGKILLs it.
fn stop_agent(mut child: Child) {
    // SAFETY: kill(2) on our own child's pid, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// How long one CLI command may take in a test (a `wait` or `rollout status` included).
pub const CLI_TIME_LIMIT: Duration = Duration::from_secs(300);

/// Waits for `child` to exit and collects its output; kills it and panics, naming `what`,
/// after [`CLI_TIME_LIMIT`].
fn finish_within(child: Child, what: &str) -> Output {
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(CLI_TIME_LIMIT).is_err() {
            // SAFETY: kill(2) on a child we spawned and have not reaped yet (the waiting
            // thread reaps it only after it exits).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return true;
        }
        false
    });
    let output = child.wait_with_output().expect("berth output");
    let _ = done.send(());
    if watchdog.join().unwrap_or(false) {
        panic!("{what} did not finish within {CLI_TIME_LIMIT:?} and was killed");
    }
    output
}

/// Runs a setup command; panics with its output when it fails.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Is the object's condition `type_` True?
pub fn condition(object: &Value, type_: &str) -> bool {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == type_ && c["status"] == "True")
        })
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
