//! NodeNetwork with a real state database and real namespaces: each test runs a whole node
//! inside a network namespace of its own (`NetworkConfig::netns`), so nothing outside it is
//! touched. The crash tests run the agent's side in a child process that aborts at a chosen
//! point, then start again on what it left.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command as Process;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_runtime::network::netns::Netns;
use serde_json::{Value, json};

use super::ipam::{self, Reservation};
use super::{NetworkConfig, NetworkError, NodeNetwork};
use crate::state::{Command, ObjectKey, Propagation, State, StateConfig, Timestamp};

const NODE: &str = "node-a";
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace from `ip netns add`, deleted on drop.
struct Ns {
    name: String,
}

impl Ns {
    fn new(tag: &str) -> Ns {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("bn-{tag}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name]);
        Ns { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> T {
        Netns::open(&self.path()).unwrap().run(work).unwrap()
    }

    /// Answers one connection on `port` with `name` (on a thread, inside the namespace).
    fn answer_once(&self, port: u16, name: &'static str) -> std::thread::JoinHandle<()> {
        let listener = self.run(|| TcpListener::bind(("0.0.0.0", port))).unwrap();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let _ = stream.write_all(name.as_bytes());
            }
        })
    }

    fn fetch(&self, address: SocketAddr) -> std::io::Result<String> {
        self.run(|| {
            let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        })
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Process::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) -> String {
    let out = Process::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A node: a host namespace with an uplink to an "internet" namespace, and a state database.
struct Node {
    host: Ns,
    _internet: Ns,
    dir: tempfile::TempDir,
}

impl Node {
    fn new(tag: &str) -> Node {
        let host = Ns::new(&format!("{tag}-h"));
        let internet = Ns::new(&format!("{tag}-i"));
        ip(&[
            "link",
            "add",
            "name",
            "eth0",
            "netns",
            &host.name,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &internet.name,
        ]);
        host.ip(&["addr", "add", "198.51.100.1/24", "dev", "eth0"]);
        host.ip(&["link", "set", "eth0", "up"]);
        internet.ip(&["link", "set", "eth0", "up"]);
        Node {
            host,
            _internet: internet,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self, cidr: &str) -> NetworkConfig {
        let mut config = NetworkConfig::new(cidr.parse().unwrap());
        config.netns = Some(self.host.path());
        config
    }

    async fn state(&self) -> State {
        State::open(StateConfig::new(self.dir.path(), NODE))
            .await
            .unwrap()
    }
}

async fn create(state: &State, object: Value, uid: &str) -> Value {
    let applied = state
        .propose(Command::create(object, uid, Timestamp::now()))
        .await
        .unwrap();
    applied.outcome.object().unwrap().as_ref().clone()
}

async fn stateful_set(state: &State, uid: &str) {
    create(
        state,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                         "metadata": {"namespace": "db", "name": "pg"}, "spec": {}}),
        uid,
    )
    .await;
}

/// A pod bound to this node; `set` makes it a pod of StatefulSet `pg` with that uid.
async fn pod(state: &State, name: &str, uid: &str, set: Option<&str>, ports: Value) -> Value {
    let mut object = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"namespace": "db", "name": name},
        "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "busybox", "ports": ports}]}});
    if let Some(set) = set {
        object["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet",
            "name": "pg", "uid": set, "controller": true}]);
    }
    create(state, object, uid).await
}

async fn delete_pod(state: &State, name: &str) {
    state
        .propose(Command::Delete {
            key: ObjectKey::new("Pod", "db", name),
            precondition_uid: None,
            precondition_resource_version: None,
            grace_period_seconds: Some(0),
            propagation: Propagation::Background,
            now: Timestamp::now(),
        })
        .await
        .unwrap();
}

fn records(state: &State) -> Vec<Reservation> {
    state
        .list(ipam::KIND, None)
        .0
        .iter()
        .filter_map(|o| Reservation::from_object(o))
        .collect()
}

fn v4(address: IpAddr) -> Ipv4Addr {
    match address {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => panic!("IPv6"),
    }
}

/// Everything of a pod network that can leak, on the host side.
fn leftovers(network: &NodeNetwork, host: &Ns) -> (usize, usize, bool) {
    let links = network.host().pods().unwrap().len();
    let ports = network.host().host_ports().len();
    let nft = Process::new("ip")
        .args([
            "netns",
            "exec",
            &host.name,
            "nft",
            "list",
            "chain",
            "ip",
            "berth",
            "hostports",
        ])
        .output()
        .unwrap();
    let has_rules = String::from_utf8_lossy(&nft.stdout).contains("dnat");
    (links, ports, has_rules)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_pod_recreated_on_this_node_gets_its_address_back_and_is_reachable_at_once() {
    let node = Node::new("sts");
    let state = node.state().await;
    let network = NodeNetwork::start(state.clone(), node.config("10.244.0.0/24"))
        .await
        .unwrap();
    assert_eq!(network.gateway(), IpAddr::V4(Ipv4Addr::new(10, 244, 0, 1)));
    stateful_set(&state, "set-1").await;
    let (first, client, other, second) = (
        Ns::new("sts-0a"),
        Ns::new("sts-c"),
        Ns::new("sts-o"),
        Ns::new("sts-0b"),
    );

    let pg0 = pod(&state, "pg-0", "uid-pg0-a", Some("set-1"), json!([])).await;
    let web = pod(&state, "web", "uid-web", None, json!([])).await;
    let address = v4(network.attach(&pg0, &first.path()).await.unwrap().ip);
    network.attach(&web, &client.path()).await.unwrap();
    let server = first.answer_once(5432, "first");
    assert_eq!(
        client.fetch(SocketAddr::from((address, 5432))).unwrap(),
        "first"
    );
    server.join().unwrap();

    // The StatefulSet controller deletes pg-0 and creates it again; meanwhile another pod
    // comes and must not get pg-0's address.
    network.detach("uid-pg0-a").await.unwrap();
    delete_pod(&state, "pg-0").await;
    let kept: Vec<_> = records(&state)
        .into_iter()
        .filter(|r| r.ip == address)
        .collect();
    assert_eq!(kept.len(), 1, "the address stays reserved for pg-0");
    assert_eq!(kept[0].holder, None);
    let newcomer = pod(&state, "other", "uid-other", None, json!([])).await;
    let other_address = v4(network.attach(&newcomer, &other.path()).await.unwrap().ip);
    assert_ne!(other_address, address);

    let pg0 = pod(&state, "pg-0", "uid-pg0-b", Some("set-1"), json!([])).await;
    let again = network.attach(&pg0, &second.path()).await.unwrap();
    assert_eq!(
        v4(again.ip),
        address,
        "same name, same StatefulSet, same address"
    );
    let server = second.answer_once(5432, "second");
    assert_eq!(
        client.fetch(SocketAddr::from((address, 5432))).unwrap(),
        "second",
        "the client that talked to the old pod reaches the new one at once"
    );
    server.join().unwrap();
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_pod_releases_its_address_and_leaves_no_interface_or_rule() {
    let node = Node::new("del");
    let state = node.state().await;
    let network = NodeNetwork::start(state.clone(), node.config("10.244.0.0/24"))
        .await
        .unwrap();
    let sandbox = Ns::new("del-p");
    let web = pod(
        &state,
        "web",
        "uid-web",
        None,
        json!([{"containerPort": 80, "hostPort": 8080}]),
    )
    .await;
    let address = network.attach(&web, &sandbox.path()).await.unwrap();
    assert_eq!(address.prefix_len, 24);
    assert_eq!(records(&state).len(), 1);
    assert_eq!(leftovers(&network, &node.host), (1, 1, true));

    network.detach("uid-web").await.unwrap();
    network.detach("uid-web").await.unwrap();
    delete_pod(&state, "web").await;
    assert!(records(&state).is_empty(), "the address record is gone");
    assert_eq!(leftovers(&network, &node.host), (0, 0, false));
    assert!(!sandbox.ip(&["-o", "link"]).contains("eth0"));
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_pod_cidr_is_refused_naming_it_and_changes_nothing() {
    let node = Node::new("full");
    let state = node.state().await;
    let network = NodeNetwork::start(state.clone(), node.config("10.244.0.0/30"))
        .await
        .unwrap();
    let (a, b) = (Ns::new("full-a"), Ns::new("full-b"));
    let first = pod(&state, "a", "uid-a", None, json!([])).await;
    let second = pod(&state, "b", "uid-b", None, json!([])).await;
    network.attach(&first, &a.path()).await.unwrap();

    let error = network.attach(&second, &b.path()).await.unwrap_err();
    assert!(matches!(error, NetworkError::Exhausted { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "pod db/b: no free address in pod CIDR 10.244.0.0/30: all 1 addresses are held by pods on this node"
    );
    assert_eq!(records(&state).len(), 1);
    assert_eq!(network.host().pods().unwrap().len(), 1);
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_port_conflict_names_the_pod_holding_it_and_takes_no_address() {
    let node = Node::new("port");
    let state = node.state().await;
    let network = NodeNetwork::start(state.clone(), node.config("10.244.0.0/24"))
        .await
        .unwrap();
    let (a, b) = (Ns::new("port-a"), Ns::new("port-b"));
    let ports = json!([{"containerPort": 5432, "hostPort": 5432}]);
    let first = pod(&state, "pg-a", "uid-a", None, ports.clone()).await;
    let second = pod(&state, "pg-b", "uid-b", None, ports).await;
    network.attach(&first, &a.path()).await.unwrap();

    let error = network.attach(&second, &b.path()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "pod db/pg-b: host port 5432/TCP is already taken by pod db/pg-a"
    );
    assert_eq!(
        records(&state).len(),
        1,
        "no address was taken for the refused pod"
    );
    assert_eq!(network.host().pods().unwrap().len(), 1);
    let host_network = json!({"metadata": {"namespace": "db", "name": "h", "uid": "u"}, "spec": {"hostNetwork": true}});
    assert!(matches!(
        network.attach(&host_network, &b.path()).await,
        Err(NetworkError::InvalidPod { .. })
    ));
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_cidr_overlapping_the_hosts_networks_is_refused_at_start() {
    let node = Node::new("ovl");
    let state = node.state().await;
    let error = NodeNetwork::start(state.clone(), node.config("198.51.100.0/24"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "pod CIDR 198.51.100.0/24 overlaps the host network 198.51.100.0/24 (eth0); choose a pod CIDR that is not in use on this host"
    );
    assert!(!node.host.ip(&["-o", "link"]).contains("berth0"));
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn peers_must_be_ipv4() {
    let node = Node::new("peer6");
    let state = node.state().await;
    let network = NodeNetwork::start(state.clone(), node.config("10.244.0.0/24"))
        .await
        .unwrap();
    let error = network
        .set_peers(vec![(
            "fd00::2".parse().unwrap(),
            "fd01::/64".parse().unwrap(),
        )])
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "peer fd00::2 with pod CIDR fd01::/64: only IPv4 peers are supported"
    );
    state.shutdown().await;
}

/// Where the child aborts, and what the pod is.
const CRASH_ENV: &str = "BERTH_NETWORK_CRASH_AT";

/// Runs the child: the agent's side of attaching (and, for `after-unlink`, detaching) one pod,
/// aborting at `point`.
fn crash_child_at(point: &str, node: &Node, sandbox: &Ns) {
    let output = Process::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "network::tests::crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, point)
        .env("BERTH_TEST_STATE_DIR", node.dir.path())
        .env("BERTH_TEST_HOST_NETNS", node.host.path())
        .env("BERTH_TEST_POD_NETNS", sandbox.path())
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGABRT),
        "the child should abort at {point}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Not a test: the child process of the crash tests (it does nothing without their settings).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by the crash tests in a child process"]
async fn crash_child() {
    let Ok(point) = std::env::var(CRASH_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var("BERTH_TEST_STATE_DIR").unwrap());
    let mut config = NetworkConfig::new("10.244.0.0/24".parse().unwrap());
    config.netns = Some(std::env::var("BERTH_TEST_HOST_NETNS").unwrap().into());
    let sandbox = PathBuf::from(std::env::var("BERTH_TEST_POD_NETNS").unwrap());
    let state = State::open(StateConfig::new(&dir, NODE)).await.unwrap();
    let network = NodeNetwork::start(state.clone(), config).await.unwrap();
    let pod = state.get("Pod", "db", "pg-0").unwrap();
    // Attach passes only the "after-reserve" and "after-link" points; detach "after-unlink".
    network.attach(&pod, &sandbox).await.unwrap();
    network
        .detach(pod["metadata"]["uid"].as_str().unwrap())
        .await
        .unwrap();
    panic!("the crash point {point} was not reached");
}

async fn crash_and_restart(point: &str, pod_survives: bool, sticky: bool) {
    let tag = format!(
        "cr{}{}{}",
        &point[6..8],
        u8::from(pod_survives),
        u8::from(sticky)
    );
    let node = Node::new(&tag);
    let sandbox = Ns::new(&format!("{tag}-p"));
    {
        let state = node.state().await;
        if sticky {
            stateful_set(&state, "set-1").await;
        }
        pod(
            &state,
            "pg-0",
            "uid-pg0",
            sticky.then_some("set-1"),
            json!([{"containerPort": 5432, "hostPort": 15432}]),
        )
        .await;
        state.shutdown().await;
    }
    let node_ref = &node;
    let sandbox_ref = &sandbox;
    tokio::task::block_in_place(|| crash_child_at(point, node_ref, sandbox_ref));

    let state = node.state().await;
    let held: Vec<Reservation> = records(&state);
    if !pod_survives {
        delete_pod(&state, "pg-0").await;
    }
    let network = NodeNetwork::start(state.clone(), node.config("10.244.0.0/24"))
        .await
        .unwrap();
    let context =
        format!("crash at {point}, pod survives: {pod_survives}, StatefulSet pod: {sticky}");
    if pod_survives {
        // The kubelet attaches the pod again: same address (if one was reserved), one link.
        let object = state.get("Pod", "db", "pg-0").unwrap();
        let address = network.attach(&object, &sandbox.path()).await.unwrap();
        if let Some(before) = held.first() {
            assert_eq!(v4(address.ip), before.ip, "{context}");
        }
        assert_eq!(leftovers(&network, &node.host), (1, 1, true), "{context}");
        assert_eq!(records(&state).len(), 1, "{context}");
        network.detach("uid-pg0").await.unwrap();
        delete_pod(&state, "pg-0").await;
    }
    assert_eq!(
        leftovers(&network, &node.host),
        (0, 0, false),
        "no interface or rule: {context}"
    );
    let remaining = records(&state);
    if sticky {
        assert!(
            remaining.iter().all(|r| r.holder.is_none()),
            "only a released reservation: {context}: {remaining:?}"
        );
    } else {
        assert!(
            remaining.is_empty(),
            "no address held: {context}: {remaining:?}"
        );
    }
    let addresses = sandbox.ip(&["-4", "-o", "addr"]);
    assert!(!addresses.contains("10.244.0."), "{context}: {addresses}");
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_agent_during_network_setup_or_teardown_and_restarting_it_leaks_nothing() {
    for point in ["after-reserve", "after-link", "after-unlink"] {
        for pod_survives in [true, false] {
            crash_and_restart(point, pod_survives, false).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_pods_reservation_survives_a_crash_without_leaking() {
    for point in ["after-reserve", "after-link"] {
        for pod_survives in [true, false] {
            crash_and_restart(point, pod_survives, true).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interface_left_half_made_is_collected_at_start() {
    let node = Node::new("half");
    let sandbox = Ns::new("half-p");
    let state = node.state().await;
    {
        let network = NodeNetwork::start(state.clone(), node.config("10.244.0.0/24"))
            .await
            .unwrap();
        // A crash inside the kernel setup: the pair exists, unnamed and without an address.
        let host = node.host.path();
        let pod_ns = sandbox.path();
        Netns::open(&host)
            .unwrap()
            .run(|| {
                use berth_runtime::network::{links, netlink::Rtnl};
                let mut rtnl = Rtnl::open().unwrap();
                let bridge = links::get(&mut rtnl, "berth0").unwrap().unwrap();
                let netns = Netns::open(&pod_ns).unwrap();
                let peer = links::VethPeer {
                    name: "eth0",
                    netns: &netns,
                    mac: [0x0a, 0x58, 10, 244, 0, 9],
                };
                links::create_veth(
                    &mut rtnl,
                    &berth_runtime::network::host_interface_name("uid-x"),
                    bridge.index,
                    1500,
                    &peer,
                )
                .unwrap();
            })
            .unwrap();
        assert_eq!(network.host().pods().unwrap().len(), 1);
    }
    let network = NodeNetwork::start(state.clone(), node.config("10.244.0.0/24"))
        .await
        .unwrap();
    assert_eq!(leftovers(&network, &node.host), (0, 0, false));
    assert!(!sandbox.ip(&["-o", "link"]).contains("eth0"));
    state.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run with bench/network/run.sh"]
async fn bench_attach_and_detach_through_the_state() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let node = Node::new("bench");
    let state = node.state().await;
    let network = NodeNetwork::start(state.clone(), node.config("10.244.0.0/24"))
        .await
        .unwrap();
    let mut pods = Vec::new();
    for i in 0..runs {
        let name = format!("web-{i}");
        let object = pod(&state, &name, &format!("uid-bench-{i}"), None, json!([])).await;
        pods.push((object, Ns::new("bench-p"), name));
    }
    let (mut setup, mut teardown) = (Vec::new(), Vec::new());
    for (object, sandbox, name) in &pods {
        let start = std::time::Instant::now();
        network.attach(object, &sandbox.path()).await.unwrap();
        setup.push(start.elapsed());
        let start = std::time::Instant::now();
        network
            .detach(object["metadata"]["uid"].as_str().unwrap())
            .await
            .unwrap();
        teardown.push(start.elapsed());
        delete_pod(&state, name).await;
    }
    println!(
        "berth agent network benchmark: {runs} pods, address records in the state (raft, fsync)"
    );
    for (label, times) in [
        ("agent attach (record + kernel)", &mut setup),
        ("agent detach (kernel + release)", &mut teardown),
    ] {
        times.sort();
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
        println!(
            "{label:<44} n={:<3} median {:>10}  p10 {:>10}  p90 {:>10}",
            times.len(),
            ms(times[times.len() / 2]),
            ms(times[times.len() / 10]),
            ms(times[times.len() * 9 / 10])
        );
    }
    state.shutdown().await;
}
