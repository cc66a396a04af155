//! Benchmark, run by hand (`bench/network/run.sh`): pod network setup and teardown through
//! `HostNetwork::attach` / `detach` on a node inside its own namespace, then the same work one
//! kernel operation at a time to show where the time goes. Prints figures; asserts nothing
//! about time.

mod network_support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use berth_runtime::network::{HostNetwork, HostPort, NodeNetworkConfig, PodAttachment, Protocol};
use network_support::{Ns, Site};

fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

fn summary(name: &str, times: &[Duration]) {
    let mut sorted = times.to_vec();
    sorted.sort();
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
    println!(
        "{name:<48} n={:<3} median {:>10}  p10 {:>10}  p90 {:>10}",
        sorted.len(),
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() / 10]),
        ms(sorted[sorted.len() * 9 / 10])
    );
}

/// Attaches and detaches `runs` pods, each in a namespace of its own, and returns the times.
fn measure(
    network: &HostNetwork,
    pods: &[Ns],
    host_ports: &[HostPort],
) -> (Vec<Duration>, Vec<Duration>) {
    let mut setup = Vec::new();
    let mut teardown = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let uid = format!("bench-{i}");
        let attachment = PodAttachment {
            pod_uid: &uid,
            description: "bench",
            netns: &pod.path(),
            address: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 2)) + i as u32),
            host_ports,
        };
        let start = Instant::now();
        network.attach(&attachment).unwrap();
        setup.push(start.elapsed());
        let start = Instant::now();
        network.detach(&uid).unwrap();
        teardown.push(start.elapsed());
    }
    (setup, teardown)
}

#[test]
#[ignore = "benchmark: run with bench/network/run.sh"]
fn pod_network_setup_and_teardown() {
    let site = Site::new("bench");
    let mut config = NodeNetworkConfig::default();
    config.netns = Some(site.host.path());
    let start = Instant::now();
    let network = HostNetwork::open(config).unwrap();
    let opened = start.elapsed();
    let n = runs();
    let pods: Vec<Ns> = (0..n).map(|_| Ns::new("bench-p")).collect();

    println!("berth network benchmark: {n} pods, each in its own namespace, node in a namespace");
    summary("node network open (bridge, nft table)", &[opened]);
    let (setup, teardown) = measure(&network, &pods, &[]);
    summary("pod setup (veth, address, route, ARP)", &setup);
    summary("pod teardown", &teardown);
    let port = [HostPort {
        protocol: Protocol::Tcp,
        host_ip: None,
        host_port: 8080,
        container_port: 80,
    }];
    let (setup, teardown) = measure(&network, &pods, &port);
    summary("pod setup with one hostPort (+ nft)", &setup);
    summary("pod teardown with one hostPort", &teardown);
}

/// Applies `commands` by running the `nft` binary from a thread inside `ns` (as berth did
/// before it used libnftables), for comparison; returns the echo, if asked for.
fn nft_binary(ns: &Ns, commands: &[serde_json::Value], echo: bool) -> serde_json::Value {
    use std::io::Write;
    let document = serde_json::json!({ "nftables": commands }).to_string();
    let output = ns.run(|| {
        let mut command = std::process::Command::new("nft");
        command.arg("-j");
        if echo {
            command.args(["--echo", "--handle"]);
        }
        let mut child = command
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(document.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    });
    assert!(output.status.success());
    if echo {
        serde_json::from_slice(&output.stdout).unwrap()
    } else {
        serde_json::Value::Null
    }
}

/// Times of each step, in the order the steps first ran.
type Steps = Vec<(&'static str, Vec<Duration>)>;

/// Adds `elapsed` to `step` of `steps`.
fn record(steps: &mut Steps, step: &'static str, elapsed: Duration) {
    match steps.iter_mut().find(|(name, _)| *name == step) {
        Some((_, times)) => times.push(elapsed),
        None => steps.push((step, vec![elapsed])),
    }
}

/// Times `work`, adding the time to `step` of `steps`.
fn timed<T>(steps: &mut Steps, step: &'static str, work: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let value = work();
    record(steps, step, start.elapsed());
    value
}

/// Where a pod's setup and teardown spend their time: each kernel operation of an attach and
/// a detach, made one at a time through the network module's primitives on a node opened as
/// in the benchmark above, with the cost of the machinery around them (a thread joining the
/// pod's namespace, a netlink socket, an `nft` run).
#[test]
#[ignore = "benchmark: run with bench/network/run.sh"]
fn pod_network_setup_steps() {
    use berth_runtime::network::netlink::Rtnl;
    use berth_runtime::network::netns::Netns;
    use berth_runtime::network::{addresses, arp, host::mac_for, links, nft};

    let site = Site::new("steps");
    let mut config = NodeNetworkConfig::default();
    config.netns = Some(site.host.path());
    let network = HostNetwork::open(config.clone()).unwrap();
    let host = Netns::open(&site.host.path()).unwrap();
    let mut rtnl = host.run(Rtnl::open).unwrap().unwrap();
    let bridge = links::get(&mut rtnl, &config.bridge)
        .unwrap()
        .unwrap()
        .index;
    let table = nft::Table {
        name: config.nft_table.clone(),
        pod_cidr: config.pod_cidr,
        bridge: config.bridge.clone(),
    };
    let gateway = network.gateway();
    let mut nft = nft::Nft::open(Some(&host)).unwrap();
    let n = runs();
    let pods: Vec<Ns> = (0..n).map(|_| Ns::new("steps-p")).collect();
    let mut steps = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 2)) + i as u32);
        let address = berth_runtime::network::ipnet::Ipv4Net::new(ip, 24).unwrap();
        let mac = mac_for(ip);
        let name = format!("bvsteps{i}");
        let s = &mut steps;
        let netns = timed(s, "open the pod namespace file", || {
            Netns::open(&pod.path()).unwrap()
        });
        let peer = links::VethPeer {
            name: "eth0",
            netns: &netns,
            mac,
        };
        timed(s, "netlink: create veth, peer in pod netns", || {
            links::create_veth(&mut rtnl, &name, bridge, 1400, &peer).unwrap()
        });
        timed(s, "netlink: host end up + alias, by name", || {
            links::set_up_by_name(&mut rtnl, &name, "berth pod steps bench").unwrap()
        });
        timed(s, "thread + setns into pod netns (empty)", || {
            netns.run(|| ()).unwrap()
        });
        let (inner, pod_index) = timed(s, "pod side total (thread + below)", || {
            netns
                .run(|| {
                    let mut times = Vec::new();
                    let lap = |step, times: &mut Vec<(&'static str, Duration)>, start: Instant| {
                        times.push((step, start.elapsed()));
                        Instant::now()
                    };
                    let start = Instant::now();
                    let mut pod_rtnl = Rtnl::open().unwrap();
                    let start = lap("  pod: open netlink socket", &mut times, start);
                    let link = links::get(&mut pod_rtnl, "eth0").unwrap().unwrap();
                    let start = lap("  pod: get eth0", &mut times, start);
                    links::set_up(&mut pod_rtnl, link.index, None).unwrap();
                    let start = lap("  pod: eth0 up", &mut times, start);
                    addresses::add(&mut pod_rtnl, link.index, address).unwrap();
                    let start = lap("  pod: add address", &mut times, start);
                    let default = addresses::Route {
                        destination: berth_runtime::network::ipnet::Ipv4Net::default(),
                        gateway: Some(gateway),
                        interface: Some(link.index),
                        protocol: 3,
                    };
                    addresses::replace_route(&mut pod_rtnl, &default).unwrap();
                    lap("  pod: default route", &mut times, start);
                    (times, link.index)
                })
                .unwrap()
        });
        for (step, time) in inner {
            record(s, step, time);
        }
        timed(s, "wait until the bridge port forwards", || {
            let deadline = Instant::now() + Duration::from_millis(100);
            while links::get(&mut rtnl, &name).unwrap().unwrap().forwarding == Some(false)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        timed(s, "gratuitous ARP (thread + setns + send)", || {
            netns
                .run(|| arp::announce(pod_index, mac, ip))
                .unwrap()
                .unwrap()
        });
        let rule = berth_runtime::network::HostPortRule {
            pod_uid: format!("steps-{i}"),
            pod_ip: ip,
            port: HostPort {
                protocol: Protocol::Tcp,
                host_ip: None,
                host_port: 8080,
                container_port: 80,
            },
        };
        let spawned = timed(s, "nft binary: spawn, add one rule (--echo)", || {
            nft_binary(&site.host, &table.add_host_ports(&[rule.clone()]), true)
        });
        let spawned: Vec<u64> = nft::host_port_rules(&spawned, &table.name)
            .into_keys()
            .collect();
        let listed = timed(
            s,
            "libnftables: add one hostPort rule, list the chain",
            || {
                nft.apply(table.add_host_ports(&[rule])).unwrap();
                nft.host_ports(&table).unwrap()
            },
        );
        let handles: Vec<u64> = listed
            .into_keys()
            .filter(|handle| !spawned.contains(handle))
            .collect();
        timed(s, "teardown: netlink delete host end", || {
            links::delete(&mut rtnl, &name).unwrap()
        });
        timed(s, "teardown: nft binary, delete a rule", || {
            nft_binary(&site.host, &table.delete_rules(spawned), false)
        });
        timed(s, "teardown: libnftables, delete a rule", || {
            nft.apply(table.delete_rules(handles)).unwrap()
        });
    }
    println!("berth network setup steps: {n} pods, one operation at a time");
    for (step, times) in &steps {
        summary(&format!("  {step}"), times);
    }
}
