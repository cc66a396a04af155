//! Benchmark, run by hand (`bench/network/run.sh`): pod network setup and teardown through
//! `HostNetwork::attach` / `detach` on a node inside its own namespace. Prints figures; asserts
//! nothing about time.

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
        "{name:<44} n={:<3} median {:>10}  p10 {:>10}  p90 {:>10}",
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
