//! The cluster end to end: real agents on simulated hosts (a network namespace each, joined
//! by veths to a LAN bridge), started from the built binary, driven through the CLI.

mod common;

use std::time::{Duration, Instant};

use common::IMAGE;
use common::cluster::Cluster;

fn config_map(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

fn nodes(cluster: &Cluster, asking: usize) -> Vec<String> {
    let list = cluster.hosts[asking].json(&["get", "nodes"]);
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn three_voters(cluster: &Cluster) {
    cluster.hosts[0].wait_for("three voters", 60, || {
        let roles = cluster.roles(0);
        let voting = roles
            .iter()
            .filter(|(_, role)| role == "leader" || role == "voter")
            .count();
        (roles.len() == 3 && voting == 3).then_some(())
    });
}

#[test]
fn three_hosts_join_with_a_token_and_a_wrong_token_or_another_clusters_ca_is_refused() {
    let mut cluster = Cluster::start("join", 3);
    three_voters(&cluster);
    for asking in 0..3 {
        let want: Vec<String> = vec!["h1".into(), "h2".into(), "h3".into()];
        cluster.hosts[asking].wait_for("every node on every host", 30, || {
            (nodes(&cluster, asking) == want).then_some(())
        });
    }
    // Every node got its own pod CIDR.
    let list = cluster.hosts[2].json(&["get", "nodes"]);
    let mut cidrs: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["spec"]["podCIDR"].as_str().unwrap_or("").to_string())
        .collect();
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 3, "{cidrs:?}");

    // A right CA with a secret that was never issued.
    let token = cluster.hosts[0].ok(&["token", "create"]).trim().to_string();
    let (fingerprint, _) = token.split_once("::").unwrap();
    let wrong_secret = format!("{fingerprint}::abcdef.0123456789abcdef");
    let index = cluster.add_host();
    let server = format!("{}:7443", cluster.hosts[0].ip);
    cluster.hosts[index].add_args(&["--join", &server, "--token", &wrong_secret]);
    cluster.hosts[index].spawn();
    let log = cluster.hosts[index].wait_exit(60);
    assert!(log.contains("join token abcdef is not known"), "{log}");

    // The issued secret, but another cluster's CA fingerprint.
    let (_, credentials) = token.split_once("::").unwrap();
    let other_ca = format!("K10{}::{credentials}", "0".repeat(64));
    let index = cluster.add_host();
    cluster.hosts[index].add_args(&["--join", &server, "--token", &other_ca]);
    cluster.hosts[index].spawn();
    let log = cluster.hosts[index].wait_exit(60);
    assert!(log.contains("is not the one the join token names"), "{log}");

    // A clashing name: a host calling itself h2.
    let index = cluster.add_host();
    cluster.hosts[index].name = "h2".into();
    cluster.hosts[index].add_args(&["--join", &server, "--token", &token]);
    cluster.hosts[index].spawn();
    let log = cluster.hosts[index].wait_exit(60);
    assert!(log.contains("node name \"h2\" is already used"), "{log}");

    // The cluster is unchanged.
    assert_eq!(cluster.roles(0).len(), 3, "{:?}", cluster.roles(0));
    assert_eq!(nodes(&cluster, 0), vec!["h1", "h2", "h3"]);
}

#[test]
fn killing_the_leader_elects_a_new_leader_that_takes_writes() {
    let mut cluster = Cluster::start("leaderkill", 3);
    three_voters(&cluster);
    let leader = cluster.hosts[0].wait_for("a leader", 30, || cluster.leader(0));
    cluster.hosts[leader].kill();
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    let other = (0..3).find(|&i| i != leader && i != survivor).unwrap();
    cluster.hosts[survivor].wait_for("a write after the leader died", 60, || {
        cluster.hosts[survivor]
            .apply(&config_map("after", "new-leader"))
            .status
            .success()
            .then_some(())
    });
    let new_leader = cluster.hosts[survivor].wait_for("a new leader", 30, || {
        cluster.leader(survivor).filter(|&l| l != leader)
    });
    assert_ne!(new_leader, leader);
    cluster.hosts[other].wait_for("the write replicated", 30, || {
        let out = cluster.hosts[other].berth(&["get", "configmap", "after", "-o", "json"]);
        out.status.success().then_some(())
    });

    // The dead host is forgotten: it leaves the raft group, so it no longer counts toward
    // quorum (two hosts keep one voter), and the two that remain take writes.
    let dead = cluster.hosts[leader].name.clone();
    let forgot = cluster.hosts[survivor].ok(&["node", "forget", &dead, "--force"]);
    assert!(
        forgot.contains(&format!("member/{dead} removed from the raft group")),
        "{forgot}"
    );
    for asking in [survivor, other] {
        cluster.hosts[asking].wait_for("the forgotten host gone from the members", 30, || {
            let roles = cluster.roles(asking);
            let voting = roles
                .iter()
                .filter(|(_, role)| role == "leader" || role == "voter")
                .count();
            (roles.len() == 2 && !roles.iter().any(|(name, _)| *name == dead) && voting == 1)
                .then_some(())
        });
    }
    let out = cluster.hosts[other].apply(&config_map("forgotten", "two-left"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The forgotten host comes back with its old identity: it is not let in, and its log says
    // how to join again.
    cluster.hosts[leader].spawn();
    told_it_was_removed(
        &cluster,
        leader,
        "the returning host told it was removed",
        90,
    );
    let roles = cluster.roles(survivor);
    assert!(!roles.iter().any(|(name, _)| *name == dead), "{roles:?}");
    assert!(
        !nodes(&cluster, survivor).contains(&dead),
        "the returning host registered its Node again"
    );
    let out = cluster.hosts[survivor].apply(&config_map("after-return", "still-two"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn restarting_all_agents_at_once_keeps_the_whole_state() {
    let mut cluster = Cluster::start("restartall", 3);
    three_voters(&cluster);
    for i in 0..5 {
        let out = cluster.hosts[i % 3].apply(&config_map(&format!("kept-{i}"), &format!("v{i}")));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for host in &mut cluster.hosts {
        host.stop();
    }
    for host in &mut cluster.hosts {
        host.spawn();
    }
    for host in &mut cluster.hosts {
        host.wait_serving(90);
    }
    for (index, host) in cluster.hosts.iter().enumerate() {
        for i in 0..5 {
            let object = host.json(&["get", "configmap", &format!("kept-{i}")]);
            assert_eq!(object["data"]["value"], format!("v{i}"), "host {index}");
        }
    }
    // And the cluster takes writes again.
    cluster.hosts[2].wait_for("a write after the restart", 60, || {
        cluster.hosts[2]
            .apply(&config_map("after-restart", "ok"))
            .status
            .success()
            .then_some(())
    });
}

fn pod(name: &str, node: &str, command: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: net\nspec:\n  nodeName: {node}\n  hostname: {name}\n  subdomain: net\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [\"sh\", \"-c\", {command:?}]\n"
    )
}

const HEADLESS: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: net\nspec:\n  clusterIP: None\n  selector:\n    app: net\n  ports:\n  - name: http\n    port: 8080\n";

fn wait_ready(cluster: &Cluster, asking: usize, name: &str) -> String {
    cluster.hosts[asking].wait_for(&format!("pod {name} ready"), 120, || {
        let out = cluster.hosts[asking].berth(&["get", "pod", name, "-o", "json"]);
        let pod: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let ready = pod["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready
            .then(|| pod["status"]["podIP"].as_str().map(str::to_string))
            .flatten()
    })
}

#[test]
fn a_pod_on_host_one_resolves_and_reaches_a_pod_on_host_three_by_dns_name_and_every_host_answers() {
    let cluster = Cluster::start("podnet", 3);
    three_voters(&cluster);
    let out = cluster.hosts[0].apply(HEADLESS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cluster.hosts[0].apply(&pod(
        "server",
        "h3",
        "echo serving-on-h3 && mkdir -p /www && echo hello-from-h3 > /www/index.html && exec httpd -f -p 8080 -h /www",
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cluster.hosts[0].apply(&pod("client", "h1", "exec sleep 3600"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server_ip = wait_ready(&cluster, 0, "server");
    wait_ready(&cluster, 0, "client");
    // Every host's DNS answers for the pod on h3.
    for host in &cluster.hosts {
        host.wait_for("the pod's record on this host", 30, || {
            (host.dig("server.net.default.svc.cluster.local") == server_ip).then_some(())
        });
    }
    // The client on h1 reaches it by name, across hosts (host-gw routes).
    let answer = cluster.hosts[0].wait_for("an HTTP answer across hosts", 60, || {
        let out = cluster.hosts[0].berth(&[
            "exec",
            "client",
            "--",
            "wget",
            "-q",
            "-O",
            "-",
            "http://server.net:8080/",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("hello-from-h3").then_some(text)
    });
    assert!(answer.contains("hello-from-h3"));

    // Logs and exec of the pod on h3, asked on h1 (its socket): h1 forwards them to h3.
    let exec = cluster.hosts[0].ok(&["exec", "server", "--", "cat", "/www/index.html"]);
    assert_eq!(exec.trim(), "hello-from-h3");
    let logs = cluster.hosts[0].ok(&["logs", "server"]);
    assert!(logs.contains("serving-on-h3"), "{logs}");
    // A failing command's exit code comes back through the forward too.
    let out = cluster.hosts[0].berth(&["exec", "server", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // The same over HTTPS with the kubeconfig's client certificate (`--server`), from h2.
    let kubeconfig = cluster.hosts[1].dir.join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.hosts[1].ok(&["kubeconfig"])).unwrap();
    let remote = |args: &[&str]| {
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", &cluster.hosts[1].netns])
            .arg(common::berth_bin())
            .args([
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--server",
                &format!("https://{}:7443", cluster.hosts[0].ip),
            ])
            .args(args)
            .env_remove("BERTH_SOCKET")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    let out = remote(&["exec", "server", "--", "cat", "/www/index.html"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello-from-h3");
    // Stdin goes the whole way too (CLI -> h1 over TLS -> h3), and its end reaches the command.
    let mut cat = remote(&["exec", "-i", "server", "--", "cat"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut cat.stdin.take().unwrap(), b"ping-through-h1\n").unwrap();
    let out = cat.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ping-through-h1\n");
    let out = remote(&["logs", "server"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("serving-on-h3"),
        "{out:?}"
    );
    // `logs -f` streams: the first line arrives while the container runs on.
    let mut follow = remote(&["logs", "-f", "server"]).spawn().unwrap();
    let mut stdout = std::io::BufReader::new(follow.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first.trim(), "serving-on-h3");
    assert!(
        follow.try_wait().unwrap().is_none(),
        "logs -f ended while the container runs"
    );
    let _ = follow.kill();
    let _ = follow.wait();

    // Without a client certificate the peer port refuses an exec before any upgrade.
    let exec_url = format!(
        "https://{}:7443/api/v1/namespaces/default/pods/server/exec?command=id&stdout=true",
        cluster.hosts[0].ip
    );
    let out = curl(
        &cluster,
        1,
        &[
            "-k",
            "-w",
            "\n%{http_code}",
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "-H",
            "Sec-WebSocket-Protocol: v5.channel.k8s.io",
            &exec_url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.trim_end().ends_with("401"), "{text}");
    assert!(text.contains("needs a client certificate"), "{text}");

    // The host that leads cannot be forgotten; a host whose agent still runs can be, with
    // --force: it leaves the raft group, its Node does not come back, and its log says why.
    let leader = cluster.leader(0).expect("a leader");
    let out = cluster.hosts[0].berth(&["node", "forget", &cluster.hosts[leader].name, "--force"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("leads the cluster"),
        "{out:?}"
    );
    let victim = (0..3).rev().find(|&i| i != leader).unwrap();
    let asking = (0..3).find(|&i| i != victim).unwrap();
    let name = cluster.hosts[victim].name.clone();
    let forgot = cluster.hosts[asking].ok(&["node", "forget", &name, "--force"]);
    assert!(
        forgot.contains(&format!("member/{name} removed from the raft group")),
        "{forgot}"
    );
    told_it_was_removed(
        &cluster,
        victim,
        "the forgotten host told it was removed",
        60,
    );
    // Its heartbeat runs on (several beats have passed): the Node stays gone.
    let roles = cluster.roles(asking);
    assert_eq!(roles.len(), 2, "{roles:?}");
    assert!(!nodes(&cluster, asking).contains(&name));
    let out = cluster.hosts[asking].apply(&config_map("after-forget", "ok"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_partitioned_minority_refuses_writes_with_no_quorum_and_its_dns_still_answers() {
    let cluster = Cluster::start("partition", 3);
    three_voters(&cluster);
    let out = cluster.hosts[0].apply(HEADLESS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cluster.hosts[0].apply(&pod("web", "h1", "exec sleep 3600"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ip = wait_ready(&cluster, 0, "web");
    let minority = 2;
    cluster.hosts[minority].wait_for("the record on the future minority", 30, || {
        (cluster.hosts[minority].dig("web.net.default.svc.cluster.local") == ip).then_some(())
    });
    cluster.cut(minority);
    let started = Instant::now();
    let refusal = cluster.hosts[minority].wait_for("a no-quorum refusal", 60, || {
        let out = cluster.hosts[minority].apply(&config_map("minority", "x"));
        let text = String::from_utf8_lossy(&out.stderr).to_string();
        (!out.status.success() && text.contains("no quorum")).then_some(text)
    });
    assert!(refusal.contains("no quorum"), "{refusal}");
    assert!(started.elapsed() < Duration::from_secs(60));
    // Reads and DNS keep working from the local replica.
    cluster.hosts[minority].ok(&["get", "pod", "web"]);
    assert_eq!(
        cluster.hosts[minority].dig("web.net.default.svc.cluster.local"),
        ip
    );
    // The majority still takes writes.
    cluster.hosts[0].wait_for("a majority write", 60, || {
        cluster.hosts[0]
            .apply(&config_map("majority", "y"))
            .status
            .success()
            .then_some(())
    });
    // Healed, the minority catches up.
    cluster.reconnect(minority);
    cluster.hosts[minority].wait_for("the majority's write replicated", 60, || {
        cluster.hosts[minority]
            .berth(&["get", "configmap", "majority"])
            .status
            .success()
            .then_some(())
    });
}

/// Waits until host `index` logs the removal watch's own error (not only a refused
/// heartbeat's warning): it is not a member any more and must join again with a new token.
fn told_it_was_removed(cluster: &Cluster, index: usize, what: &str, seconds: u64) {
    let host = &cluster.hosts[index];
    let needle = format!("host \"{}\" is not a member of the cluster", host.name);
    host.wait_for(what, seconds, || {
        host.log()
            .lines()
            .any(|l| {
                l.contains(&needle)
                    && l.contains("join with a new token")
                    && l.contains("this agent takes no part in the cluster")
            })
            .then_some(())
    });
}

/// Debian's kubectl (package kubernetes-client, 1.20), unpacked by scripts/deps.sh.
const DEBIAN_KUBECTL: &str = "/opt/berth-test/kubernetes-client/usr/bin/kubectl";

/// The kubectl binaries to drive: Debian's always (the one the issue names), and the one on
/// PATH too when the machine has another.
fn kubectls() -> Vec<String> {
    assert!(
        std::path::Path::new(DEBIAN_KUBECTL).exists(),
        "{DEBIAN_KUBECTL} is missing: run scripts/deps.sh"
    );
    let mut found = vec![DEBIAN_KUBECTL.to_string()];
    let on_path = std::process::Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(path) = on_path {
        let same = std::fs::canonicalize(&path).ok() == std::fs::canonicalize(DEBIAN_KUBECTL).ok();
        if !same && !path.is_empty() {
            found.push(path);
        }
    }
    found
}

fn kubectl(
    cluster: &Cluster,
    host: usize,
    binary: &str,
    kubeconfig: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &cluster.hosts[host].netns,
            binary,
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running kubectl");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn kubectl_with_the_kubeconfig_lists_nodes_and_pods_and_applies_and_deletes_a_statefulset() {
    let cluster = Cluster::start("kubectl", 2);
    let kubeconfig = cluster.hosts[1].dir.join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.hosts[1].ok(&["kubeconfig"])).unwrap();
    let text = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(
        text.contains(&format!("server: https://{}:7443", cluster.hosts[1].ip)),
        "{text}"
    );
    // kubectl on h1 talks to h2, a learner: reads are local, writes are forwarded to the leader.
    for (n, binary) in kubectls().iter().enumerate() {
        let run = |args: &[&str], stdin: Option<&str>| {
            let out = kubectl(&cluster, 0, binary, &kubeconfig, args, stdin);
            assert!(
                out.status.success(),
                "{binary} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let listing = run(&["get", "nodes"], None);
        assert!(
            listing.contains("h1") && listing.contains("h2"),
            "{binary}: {listing}"
        );
        let name = format!("kweb{n}");
        let set = format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {name}\nspec:\n  serviceName: {name}\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"sh\", \"-c\", \"echo hello from $HOSTNAME; exec sleep 3600\"]\n"
        );
        run(&["apply", "-f", "-"], Some(&set));
        let pod = format!("{name}-0");
        cluster.hosts[0].wait_for(&format!("{pod} Running via {binary}"), 120, || {
            let out = kubectl(&cluster, 0, binary, &kubeconfig, &["get", "pods"], None);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.starts_with(&pod) && l.contains("Running"))
                .then_some(())
        });
        // Its log, served by whichever host runs it.
        cluster.hosts[0].wait_for(&format!("{pod}'s log via {binary}"), 30, || {
            let out = kubectl(&cluster, 0, binary, &kubeconfig, &["logs", &pod], None);
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("hello from {pod}"))
                .then_some(())
        });
        let described = run(&["describe", "statefulset", &name], None);
        assert!(described.contains(&name), "{binary}: {described}");
        // Applying again with a change patches the set (client-side apply's strategic merge
        // patch); an unknown field is refused by the server, naming the field.
        run(
            &["apply", "-f", "-"],
            Some(&set.replace("replicas: 1", "replicas: 0")),
        );
        assert_eq!(
            run(
                &[
                    "get",
                    "statefulset",
                    &name,
                    "-o",
                    "jsonpath={.spec.replicas}"
                ],
                None
            ),
            "0"
        );
        let bad = kubectl(
            &cluster,
            0,
            binary,
            &kubeconfig,
            &["apply", "-f", "-"],
            Some(&set.replace("  replicas: 1\n", "  replicas: 1\n  replicaz: 2\n")),
        );
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(
            !bad.status.success() && err.contains("spec.replicaz"),
            "{binary}: {err}"
        );
        run(&["delete", "statefulset", &name], None);
        cluster.hosts[0].wait_for(&format!("{name} gone"), 60, || {
            (!cluster.hosts[0]
                .berth(&["get", "statefulset", &name])
                .status
                .success())
            .then_some(())
        });
    }
    // The berth CLI itself, remote over HTTPS with the same kubeconfig.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &cluster.hosts[0].netns])
        .arg(common::berth_bin())
        .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "get", "nodes"])
        .env_remove("BERTH_SOCKET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("h2"));
}

fn curl(cluster: &Cluster, host: usize, args: &[&str]) -> std::process::Output {
    std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &cluster.hosts[host].netns,
            "curl",
            "-sS",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("running curl")
}

#[test]
fn a_forged_certificate_an_expired_token_and_a_huge_body_are_refused_and_change_nothing() {
    let mut cluster = Cluster::start("badinput", 1);
    let host = &cluster.hosts[0];
    let dir = host.dir.clone();
    let ca_pem = std::fs::read_to_string(host.data_dir().join("pki/ca.crt")).unwrap();
    std::fs::write(dir.join("ca.crt"), &ca_pem).unwrap();
    let url = |path: &str| format!("https://{}:7443{path}", cluster.hosts[0].ip);
    let before = cluster.hosts[0].json(&["get", "configmaps"])["items"]
        .as_array()
        .unwrap()
        .len();

    // A node certificate from another CA with the same name: the TLS handshake fails.
    let forger = berth_agent::cluster::pki::Ca::generate("evil").unwrap();
    let forged = forger
        .sign_node("h1", &[cluster.hosts[0].ip.parse().unwrap()])
        .unwrap();
    std::fs::write(dir.join("forged.crt"), &forged.cert_pem).unwrap();
    std::fs::write(dir.join("forged.key"), &forged.key_pem).unwrap();
    let command = r#"{"Create":{"object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"forged","namespace":"default"}},"uid":"x","now":0}}"#;
    let out = curl(
        &cluster,
        0,
        &[
            "--cacert",
            dir.join("ca.crt").to_str().unwrap(),
            "--cert",
            dir.join("forged.crt").to_str().unwrap(),
            "--key",
            dir.join("forged.key").to_str().unwrap(),
            "-H",
            "content-type: application/json",
            "-d",
            command,
            &url("/peer/v1/propose"),
        ],
    );
    assert!(
        !out.status.success(),
        "a forged certificate was accepted: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Without any certificate: peer endpoints and the API say so.
    let out = curl(
        &cluster,
        0,
        &[
            "--cacert",
            dir.join("ca.crt").to_str().unwrap(),
            "-d",
            command,
            &url("/peer/v1/propose"),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("need a node certificate"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = curl(
        &cluster,
        0,
        &[
            "--cacert",
            dir.join("ca.crt").to_str().unwrap(),
            &url("/api/v1/namespaces/default/configmaps"),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("needs a client certificate"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A huge body on the join endpoint (no certificate needed there) is refused.
    let huge = dir.join("huge.json");
    std::fs::write(&huge, vec![b' '; 8 << 20]).unwrap();
    let out = curl(
        &cluster,
        0,
        &[
            "--cacert",
            dir.join("ca.crt").to_str().unwrap(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "content-type: application/json",
            // The server answers before the body is sent (it is declared too large).
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            &format!("@{}", huge.display()),
            &url("/cluster/v1/join"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "413",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And on the Kubernetes API (here its unix socket), with the API server's Status.
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--unix-socket"])
        .arg(cluster.hosts[0].socket())
        .args([
            "-H",
            "content-type: application/json",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            &format!("@{}", huge.display()),
            "http://berth/api/v1/namespaces/default/configmaps",
        ])
        .output()
        .unwrap();
    let refusal: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(refusal["code"], 413, "{refusal}");
    assert_eq!(refusal["reason"], "RequestEntityTooLarge", "{refusal}");

    // An expired token.
    let token = cluster.hosts[0]
        .ok(&["token", "create", "--ttl", "1s"])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(2100));
    let index = cluster.add_host();
    let server = format!("{}:7443", cluster.hosts[0].ip);
    cluster.hosts[index].add_args(&["--join", &server, "--token", &token]);
    cluster.hosts[index].spawn();
    let log = cluster.hosts[index].wait_exit(60);
    assert!(log.contains("expired at"), "{log}");

    let after = cluster.hosts[0].json(&["get", "configmaps"])["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
    assert_eq!(cluster.roles(0).len(), 1);
    let nodes = cluster.hosts[0].json(&["get", "nodes"]);
    assert_eq!(nodes["items"].as_array().unwrap().len(), 1);
}

#[test]
fn a_join_to_a_cluster_that_lost_quorum_is_refused_and_adds_no_member() {
    let mut cluster = Cluster::start("noquorum", 3);
    three_voters(&cluster);
    let token = cluster.hosts[0].ok(&["token", "create"]).trim().to_string();
    cluster.hosts[1].kill();
    cluster.hosts[2].kill();
    std::thread::sleep(Duration::from_secs(4));
    let index = cluster.add_host();
    let server = format!("{}:7443", cluster.hosts[0].ip);
    cluster.hosts[index].add_args(&["--join", &server, "--token", &token]);
    cluster.hosts[index].spawn();
    let log = cluster.hosts[index].wait_exit(60);
    assert!(
        log.contains("no quorum") || log.contains("no leader"),
        "{log}"
    );
    // When the majority returns, the refused host is not a member.
    cluster.hosts[1].spawn();
    cluster.hosts[2].spawn();
    cluster.hosts[1].wait_serving(90);
    cluster.hosts[2].wait_serving(90);
    cluster.hosts[0].wait_for("a write with the majority back", 60, || {
        cluster.hosts[0]
            .apply(&config_map("back", "ok"))
            .status
            .success()
            .then_some(())
    });
    assert_eq!(cluster.roles(0).len(), 3, "{:?}", cluster.roles(0));
}

#[test]
fn a_host_joining_after_the_log_was_compacted_receives_the_state_as_a_snapshot() {
    let mut cluster = Cluster::start("snapshot", 1);
    // More entries than the state keeps before it snapshots and purges its log (1000).
    let manifests: Vec<String> = (0..1100)
        .map(|i| config_map(&format!("bulk-{i}"), &i.to_string()))
        .collect();
    let out = cluster.hosts[0].apply(&manifests.join("---\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.join_host();
    let count = |host: usize| {
        cluster.hosts[host].json(&["get", "configmaps"])["items"]
            .as_array()
            .unwrap()
            .len()
    };
    let want = count(0);
    assert!(want >= 1100, "{want}");
    cluster.hosts[1].wait_for("every object on the new host", 60, || {
        (count(1) == want).then_some(())
    });
    let object = cluster.hosts[1].json(&["get", "configmap", "bulk-1099"]);
    assert_eq!(object["data"]["value"], "1099");
}

/// Pods of `app` as (name, node, ready), by name.
fn set_pods(cluster: &Cluster, asking: usize, app: &str) -> Vec<(String, String, bool)> {
    let out =
        cluster.hosts[asking].berth(&["get", "pods", "-l", &format!("app={app}"), "-o", "json"]);
    let Ok(list) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
        return Vec::new();
    };
    let mut pods: Vec<(String, String, bool)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                ready,
            )
        })
        .collect();
    pods.sort();
    pods
}

/// Waits until `asking` sees `n` Ready nodes (a joined host registers and posts its first
/// heartbeat a moment after it joins; placement only considers Ready nodes).
fn ready_nodes(cluster: &Cluster, asking: usize, n: usize) {
    cluster.hosts[asking].wait_for(&format!("{n} Ready nodes"), 60, || {
        let list = cluster.hosts[asking].json(&["get", "nodes"]);
        let ready = list["items"]
            .as_array()?
            .iter()
            .filter(|n| {
                n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count();
        (ready == n).then_some(())
    });
}

#[test]
fn a_statefulset_of_three_spreads_one_pod_per_host_in_order() {
    let cluster = Cluster::start("spread", 3);
    three_voters(&cluster);
    ready_nodes(&cluster, 0, 3);
    let set = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: 3\n  serviceName: db\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        app: db\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"sh\", \"-c\", \"exec sleep 3600\"]\n        readinessProbe:\n          exec:\n            command: [\"true\"]\n          periodSeconds: 1\n"
    );
    // Applied on a host that does not lead; the set's pods are created in order across hosts.
    let asking = (0..3).find(|&i| cluster.leader(0) != Some(i)).unwrap_or(1);
    let out = cluster.hosts[asking].apply(&set);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let pods = loop {
        let pods = set_pods(&cluster, 0, "db");
        // OrderedReady on every observation: db-i exists only once db-(i-1) is Ready.
        for (i, (name, _, _)) in pods.iter().enumerate() {
            assert_eq!(
                name,
                &format!("db-{i}"),
                "pods in ordinal order, none skipped: {pods:?}"
            );
            if i > 0 {
                assert!(
                    pods[i - 1].2,
                    "{name} exists while db-{} is not Ready: {pods:?}",
                    i - 1
                );
            }
        }
        if pods.len() == 3 && pods.iter().all(|p| p.2) {
            break pods;
        }
        assert!(
            Instant::now() < deadline,
            "the set did not become ready: {pods:?}\n{}",
            cluster.hosts[0].log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut nodes: Vec<&str> = pods.iter().map(|p| p.1.as_str()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one pod per host: {pods:?}");
    // Each pod runs on the host it was placed on (its own kubelet answers for it).
    for (name, node, _) in &pods {
        let host = cluster
            .hosts
            .iter()
            .position(|h| &h.name == node)
            .expect("a known host");
        let out = cluster.hosts[host].berth(&["exec", name, "--", "hostname"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            name.as_str(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_daemonset_follows_hosts_joining_relabelled_and_leaving() {
    let mut cluster = Cluster::start("dsfollow", 2);
    let set = format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels:\n      app: agent\n  template:\n    metadata:\n      labels:\n        app: agent\n    spec:\n      terminationGracePeriodSeconds: 1\n      nodeSelector:\n        role: worker\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"sh\", \"-c\", \"exec sleep 3600\"]\n"
    );
    for host in ["h1", "h2"] {
        cluster.hosts[0].ok(&["label", "node", host, "role=worker"]);
    }
    let out = cluster.hosts[0].apply(&set);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let on = |cluster: &Cluster, want: &[&str]| {
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        cluster.hosts[0].wait_for(&format!("daemon pods on exactly {want:?}"), 90, || {
            let pods = set_pods(cluster, 0, "agent");
            let mut nodes: Vec<String> = pods.iter().filter(|p| p.2).map(|p| p.1.clone()).collect();
            nodes.sort();
            (nodes == want && pods.len() == want.len()).then_some(())
        });
    };
    on(&cluster, &["h1", "h2"]);
    // A host joins and is labelled: it gets a pod.
    let third = cluster.join_host();
    let name = cluster.hosts[third].name.clone();
    cluster.hosts[0].wait_for("the new host's Node", 60, || {
        cluster.hosts[0]
            .berth(&["get", "node", &name])
            .status
            .success()
            .then_some(())
    });
    cluster.hosts[0].ok(&["label", "node", &name, "role=worker"]);
    on(&cluster, &["h1", "h2", "h3"]);
    // Relabelled away: its pod goes, the others stay.
    cluster.hosts[0].ok(&["label", "node", "h2", "role=storage", "--overwrite"]);
    on(&cluster, &["h1", "h3"]);
    // The third host leaves (its agent stopped, the host forgotten): its pod goes with it.
    cluster.hosts[third].stop();
    cluster.hosts[0].wait_for("the stopped host forgotten", 60, || {
        cluster.hosts[0]
            .berth(&["node", "forget", &name, "--force"])
            .status
            .success()
            .then_some(())
    });
    on(&cluster, &["h1"]);
}

/// Whether any process on the machine runs in the cgroup of the pod with `uid`.
fn pod_processes_exist(uid: &str) -> bool {
    let needle = format!("pod{uid}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            std::fs::read_to_string(entry.path().join("cgroup")).is_ok_and(|c| c.contains(&needle))
        })
}

#[test]
fn a_cut_off_host_is_not_ready_its_local_claim_pod_stays_its_job_pod_moves_and_nothing_runs_twice()
{
    let mut cluster = Cluster::empty("cutoff");
    let grace = ["--node-monitor-grace-period", "3s"];
    cluster.add_host();
    cluster.hosts[0].add_args(&grace);
    cluster.hosts[0].launch();
    cluster.hosts[0].import_image();
    for _ in 1..3 {
        let token = cluster.hosts[0]
            .ok(&["token", "create", "--ttl", "1h"])
            .trim()
            .to_string();
        let i = cluster.add_host();
        let server = format!("{}:7443", cluster.hosts[0].ip);
        cluster.hosts[i].add_args(&grace);
        cluster.hosts[i].add_args(&["--join", &server, "--token", &token]);
        cluster.hosts[i].launch();
        cluster.hosts[i].import_image();
    }
    three_voters(&cluster);
    let leader = cluster.leader(0).expect("a leader");
    ready_nodes(&cluster, leader, 3);
    let victim = (0..3).rev().find(|&i| i != leader).unwrap();
    let victim_name = cluster.hosts[victim].name.clone();

    // A StatefulSet with a claim on every host, and a long Job pod on the victim.
    let set = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: 3\n  podManagementPolicy: Parallel\n  serviceName: db\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        app: db\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"sh\", \"-c\", \"exec sleep 3600\"]\n        volumeMounts:\n        - name: data\n          mountPath: /data\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests:\n          storage: 16Mi\n"
    );
    let job = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: work\nspec:\n  backoffLimit: 3\n  template:\n    metadata:\n      labels:\n        app: work\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"sh\", \"-c\", \"exec sleep 3600\"]\n"
    );
    for manifest in [&set, &job] {
        let out = cluster.hosts[leader].apply(manifest);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let ask = &cluster.hosts[leader];
    ask.wait_for("three db pods ready, one per host", 120, || {
        let pods = set_pods(&cluster, leader, "db");
        (pods.len() == 3 && pods.iter().all(|p| p.2)).then_some(())
    });
    let stateful_on_victim = set_pods(&cluster, leader, "db")
        .into_iter()
        .find(|p| p.1 == victim_name)
        .expect("a db pod on the victim")
        .0;
    // The Job's pod: moved onto the victim if the scheduler put it elsewhere (delete until it lands there).
    let job_pod = ask.wait_for("the job pod running on the victim", 120, || {
        let pods = set_pods(&cluster, leader, "work");
        let running: Vec<_> = pods.iter().filter(|p| p.2 || !p.1.is_empty()).collect();
        match running.as_slice() {
            [(name, node, true)] if node == &victim_name => Some(name.clone()),
            [(name, node, _)] if !node.is_empty() && node != &victim_name => {
                // Keep the other hosts off limits for the job's next pod.
                for other in cluster.hosts.iter().filter(|h| h.name != victim_name) {
                    let _ = ask.berth(&["cordon", &other.name]);
                }
                let _ = ask.berth(&["delete", "pod", name, "--grace-period", "0", "--force"]);
                None
            }
            _ => None,
        }
    });
    for other in cluster.hosts.iter().filter(|h| h.name != victim_name) {
        let _ = ask.berth(&["uncordon", &other.name]);
    }
    let job_uid = ask.json(&["get", "pod", &job_pod])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();

    cluster.cut(victim);
    let cut_at = Instant::now();
    ask.wait_for("the cut host NotReady", 30, || {
        let node = ask.json(&["get", "node", &victim_name]);
        let ready = node["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?["status"]
            .clone();
        (ready != "True").then_some(())
    });
    assert!(
        cut_at.elapsed() < Duration::from_secs(20),
        "NotReady took {:?} with a 3 s grace period",
        cut_at.elapsed()
    );
    // The Job's pod is re-created on another host; the stateful pod stays pinned to the victim.
    ask.wait_for("the job pod replaced on a reachable host", 90, || {
        let pods = set_pods(&cluster, leader, "work");
        pods.iter()
            .any(|p| p.0 != job_pod && p.1 != victim_name && p.2)
            .then_some(())
    });
    // The cut host fenced itself: its stateful pod's containers stopped (it cannot know
    // whether the cluster still counts on it).
    let db_uid =
        cluster.hosts[victim].json(&["get", "pod", &stateful_on_victim])["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
    ask.wait_for("the fenced host's stateful pod stopped", 30, || {
        (!pod_processes_exist(&db_uid)).then_some(())
    });
    let db = set_pods(&cluster, leader, "db");
    let copies: Vec<_> = db.iter().filter(|p| p.0 == stateful_on_victim).collect();
    assert_eq!(copies.len(), 1, "one copy of {stateful_on_victim}: {db:?}");
    assert_eq!(
        copies[0].1, victim_name,
        "{stateful_on_victim} stays on the host holding its claim: {db:?}"
    );

    // The host returns: the evicted Job pod stops there; nothing runs twice.
    cluster.reconnect(victim);
    ask.wait_for(
        "the evicted job pod stopped on the returned host",
        90,
        || (!pod_processes_exist(&job_uid)).then_some(()),
    );
    ask.wait_for("the returned host Ready", 60, || {
        let node = ask.json(&["get", "node", &victim_name]);
        let ready = node["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?["status"]
            .clone();
        (ready == "True").then_some(())
    });
    // The fence is lifted: the stateful pod runs again, on its host, with its claim.
    ask.wait_for("the stateful pod running again on its host", 60, || {
        pod_processes_exist(&db_uid).then_some(())
    });
    let work = set_pods(&cluster, leader, "work");
    assert_eq!(work.len(), 1, "one job pod: {work:?}");
    let db = set_pods(&cluster, leader, "db");
    assert_eq!(db.len(), 3, "{db:?}");
}
