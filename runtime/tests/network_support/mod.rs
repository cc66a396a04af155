//! Shared pieces of the network tests: named network namespaces that are deleted when the
//! test ends (also on failure), simulated hosts, and TCP servers and clients running inside
//! namespaces. Tests set up their simulated hosts with iproute2; the code under test uses
//! netlink.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use berth_runtime::network::netns::Netns;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Ns {
    pub name: String,
}

impl Ns {
    /// A new namespace named `bt-<tag>-<pid>-<n>` with its loopback up.
    pub fn new(tag: &str) -> Ns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("bt-{tag}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace file.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// Runs `ip -n <ns> args`, panicking on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all);
    }

    /// Runs `ip -n <ns> args` and returns its output.
    pub fn ip_output(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        output("ip", &all)
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn exec_output(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        output("ip", &all)
    }

    /// Runs `work` on a thread inside the namespace.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        Netns::open(&self.path()).unwrap().run(work).unwrap()
    }

    /// Connects to `address` from inside the namespace and returns what the server sent.
    pub fn fetch(&self, address: SocketAddr) -> std::io::Result<String> {
        self.run(|| {
            let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        })
    }

    /// Starts a server listening on `address` inside the namespace that answers every
    /// connection with `<name> <peer address>`.
    pub fn serve(&self, address: SocketAddr, name: &str) -> Server {
        let listener = self.run(|| TcpListener::bind(address)).unwrap();
        Server::start(listener, name.to_string())
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A TCP server on a thread; stops when dropped.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(listener: TcpListener, name: String) -> Server {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, peer)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.write_all(format!("{name} {}", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Joins two namespaces with a veth pair created directly in them (nothing in the test
/// process's own namespace): `a_if` in `a`, `b_if` in `b`.
pub fn link(a: &Ns, a_if: &str, b: &Ns, b_if: &str) {
    run(
        "ip",
        &[
            "link", "add", "name", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if,
            "netns", &b.name,
        ],
    );
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// A simulated node and an "internet" namespace beyond its uplink:
/// host `eth0` 198.51.100.1/24 (MTU 1400, default route via .2) <-> internet `eth0`
/// 198.51.100.2/24, which has no route to any pod CIDR.
pub struct Site {
    pub host: Ns,
    pub internet: Ns,
}

pub const HOST_ADDRESS: &str = "198.51.100.1";
pub const INTERNET_ADDRESS: &str = "198.51.100.2";

impl Site {
    pub fn new(tag: &str) -> Site {
        let host = Ns::new(&format!("{tag}-h"));
        let internet = Ns::new(&format!("{tag}-i"));
        link(&host, "eth0", &internet, "eth0");
        host.ip(&["link", "set", "eth0", "mtu", "1400"]);
        internet.ip(&["link", "set", "eth0", "mtu", "1400"]);
        host.ip(&["addr", "add", "198.51.100.1/24", "dev", "eth0"]);
        internet.ip(&["addr", "add", "198.51.100.2/24", "dev", "eth0"]);
        host.ip(&["route", "add", "default", "via", INTERNET_ADDRESS]);
        Site { host, internet }
    }
}

/// A socket address from text.
pub fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}
