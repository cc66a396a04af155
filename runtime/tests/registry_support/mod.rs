//! A real registry for tests: Debian's `docker-registry` on 127.0.0.1 with a config this
//! module writes (filesystem storage in a temporary directory, optional htpasswd auth, access
//! log captured), images pushed with skopeo, and a throttling TCP proxy for tests that need a
//! pull to be slow (interrupted downloads, overlapping pulls). Everything is stopped and
//! removed on drop.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether `tool` is on PATH; prints why the calling test is skipped if not.
pub fn have_tools(tools: &[&str]) -> bool {
    for tool in tools {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            eprintln!("SKIPPED: `{tool}` is not installed; CI installs it");
            return false;
        }
    }
    true
}

/// Runs a command, panicking with its output if it fails.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The tools these tests need; a test returns early (SKIPPED) without them.
pub fn have_registry_tools() -> bool {
    have_tools(&["docker-registry", "skopeo", "umoci", "htpasswd"])
}

/// A free TCP port on 127.0.0.1 (bound and released; the registry binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `docker-registry`, stopped and removed on drop.
pub struct Registry {
    pub dir: PathBuf,
    pub port: u16,
    child: Child,
    log: PathBuf,
    /// `user:password` when started with auth.
    pub creds: Option<(String, String)>,
}

impl Registry {
    /// Starts an anonymous registry.
    pub fn start(test: &str) -> Registry {
        Registry::start_with(test, None)
    }

    /// Starts a registry requiring basic auth for `user` / `password`.
    pub fn start_with_auth(test: &str, user: &str, password: &str) -> Registry {
        Registry::start_with(test, Some((user.to_owned(), password.to_owned())))
    }

    fn start_with(test: &str, creds: Option<(String, String)>) -> Registry {
        let dir = std::env::temp_dir().join(format!(
            "berth-registry-{}-{}",
            test.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(30)
                .collect::<String>(),
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("data")).unwrap();
        let auth = match &creds {
            Some((user, password)) => {
                let out = run(Command::new("htpasswd").args(["-Bbn", user, password]));
                fs::write(dir.join("htpasswd"), out).unwrap();
                format!(
                    "auth: {{htpasswd: {{realm: berth-test, path: {}}}}}\n",
                    dir.join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port();
            let config = format!(
                "version: 0.1\n\
                 log: {{level: info, accesslog: {{disabled: false}}}}\n\
                 storage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\n\
                 http: {{addr: 127.0.0.1:{port}}}\n{auth}",
                dir.join("data").display()
            );
            fs::write(dir.join("config.yml"), config).unwrap();
            let log = dir.join("registry.log");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log).unwrap())
                .stderr(fs::File::create(dir.join("registry.err")).unwrap())
                .spawn()
                .expect("docker-registry starts");
            let mut registry = Registry {
                dir: dir.clone(),
                port,
                child,
                log,
                creds: creds.clone(),
            };
            if registry.wait_ready() {
                return registry;
            }
            assert!(
                attempts < 3,
                "docker-registry did not start: {}",
                fs::read_to_string(dir.join("registry.err")).unwrap_or_default()
            );
            let _ = registry.child.kill();
            let _ = registry.child.wait();
            std::mem::forget(registry);
        }
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `oci:<layout>:<tag>` as `<host>/<repo>` with skopeo. `format` is `oci` or
    /// `v2s2`; `extra` adds skopeo options (`--all`, `--dest-compress-format zstd`).
    pub fn push(&self, layout: &Path, tag: &str, repo: &str, format: &str, extra: &[&str]) {
        let mut command = Command::new("skopeo");
        command
            .args([
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--format",
                format,
            ])
            .args(extra);
        if let Some((user, password)) = &self.creds {
            command
                .arg("--dest-creds")
                .arg(format!("{user}:{password}"));
        }
        command
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo}", self.host()));
        run(&mut command);
    }

    /// The access log so far.
    pub fn access_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
            + &fs::read_to_string(self.dir.join("registry.err")).unwrap_or_default()
    }

    /// How many successful GETs of blob `digest` the registry served.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.access_log()
            .lines()
            .filter(|l| {
                l.contains(&format!("/blobs/{digest}"))
                    && l.contains("\"GET ")
                    && (l.contains("HTTP/1.1\" 200") || l.contains("HTTP/1.1\" 206"))
            })
            .count()
    }

    /// How many requests of any kind reached the registry.
    pub fn requests(&self) -> usize {
        self.access_log()
            .lines()
            .filter(|l| l.contains("\"GET /v2/") || l.contains("\"HEAD /v2/"))
            .count()
    }

    /// The stored data of blob `digest` in the registry's filesystem storage.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy on 127.0.0.1 in front of a registry. It forwards everything, records request
/// heads, and can slow responses down or stall them, so a test can catch a pull halfway.
pub struct Proxy {
    pub port: u16,
    state: Arc<ProxyState>,
}

struct ProxyState {
    /// Response bytes per second per connection; 0 is unlimited.
    rate: AtomicU64,
    /// Stop forwarding responses once this many response bytes went through (all
    /// connections together); 0 is no limit.
    stall_after: AtomicU64,
    forwarded: AtomicU64,
    stopped: AtomicBool,
    requests: Mutex<Vec<String>>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(ProxyState {
            rate: AtomicU64::new(0),
            stall_after: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        std::thread::spawn(move || {
            while !accept_state.stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let state = accept_state.clone();
                        std::thread::spawn(move || serve(client, upstream, state));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy { port, state }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Limits each response to `bytes_per_second`.
    pub fn throttle(&self, bytes_per_second: u64) {
        self.state.rate.store(bytes_per_second, Ordering::Relaxed);
    }

    /// Stops forwarding response bytes after `bytes` in total (connections stay open).
    pub fn stall_after(&self, bytes: u64) {
        self.state.stall_after.store(bytes, Ordering::Relaxed);
    }

    /// Request heads seen so far (request line and headers).
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Relaxed);
    }
}

fn serve(client: TcpStream, upstream: u16, state: Arc<ProxyState>) {
    let Ok(server) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], upstream))) else {
        return;
    };
    let (mut client_read, mut server_write) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let request_state = state.clone();
    // Requests: forwarded as they come, heads recorded.
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match client_read.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                    break;
                }
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    if let Some(head) = text.split("\r\n\r\n").next()
                        && (head.starts_with("GET ") || head.starts_with("HEAD "))
                    {
                        request_state.requests.lock().unwrap().push(head.to_owned());
                    }
                    if server_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let (mut server_read, mut client_write) = (server, client);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if state.stopped.load(Ordering::Relaxed) {
            break;
        }
        let stall = state.stall_after.load(Ordering::Relaxed);
        if stall > 0 && state.forwarded.load(Ordering::Relaxed) >= stall {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let rate = state.rate.load(Ordering::Relaxed);
        let chunk = if rate > 0 {
            (rate / 20).clamp(512, buf.len() as u64) as usize
        } else {
            buf.len()
        };
        let chunk = if stall > 0 {
            chunk.min((stall - state.forwarded.load(Ordering::Relaxed).min(stall)).max(1) as usize)
        } else {
            chunk
        };
        match server_read.read(&mut buf[..chunk]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                state.forwarded.fetch_add(n as u64, Ordering::Relaxed);
                if client_write.write_all(&buf[..n]).is_err() {
                    break;
                }
                if rate > 0 {
                    std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
                }
            }
        }
    }
    let _ = client_write.shutdown(std::net::Shutdown::Both);
}
