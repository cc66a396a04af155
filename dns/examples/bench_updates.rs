//! Update costs: full build at 3, 1,000 and 10,000 Pods, one readiness flip in each, and
//! the time from an update call to the first UDP answer reflecting it.
//!
//! `cargo run --release -p berth-dns --example bench_updates`

#[path = "shared/cluster.rs"]
mod cluster;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_dns::{Authority, Change, DnsServer, ServerConfig};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

/// A query for `name` A, id 7, no EDNS.
fn query(name: &str) -> Vec<u8> {
    let mut q = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| pods | names | full build | flip via apply (median) | flip via apply (p99) | flip via replace (median) | update->answer (median) | update->answer (p99) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for pods in [3usize, 1_000, 10_000] {
        let snapshot = cluster::snapshot(pods);
        let mut builds = Vec::new();
        for _ in 0..5 {
            let authority = Authority::new(cluster::zone_config()).unwrap();
            builds.push(authority.replace(snapshot.clone()).elapsed);
        }
        let build = percentile(&mut builds, 0.5);

        // The same flip sent as a whole snapshot (the agent's simplest way to call).
        let mut replaces = Vec::new();
        {
            let authority = Authority::new(cluster::zone_config()).unwrap();
            authority.replace(snapshot.clone());
            let last = snapshot.pods.len() - 1;
            for round in 0..20 {
                let mut changed = snapshot.clone();
                changed.pods[last].ready = round % 2 == 1;
                replaces.push(authority.replace(changed).elapsed);
            }
        }
        let replace = percentile(&mut replaces, 0.5);

        let authority = Arc::new(Authority::new(cluster::zone_config()).unwrap());
        authority.replace(snapshot.clone());
        let server = runtime
            .block_on(DnsServer::start(
                ServerConfig {
                    listen: vec!["127.0.0.1:0".parse().unwrap()],
                    upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                    ..ServerConfig::default()
                },
                authority.clone(),
            ))
            .unwrap();
        let addr = server.local_addrs()[0];
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        // The last pod of the last set flips; its service A set shrinks and grows.
        let set = (pods - 1) / cluster::SET_SIZE;
        let ordinal = (pods - 1) % cluster::SET_SIZE;
        let (ns, name) = cluster::set_name(set);
        let request = query(&format!("{name}.{ns}.svc.cluster.local"));
        let ready_answers = (pods - set * cluster::SET_SIZE).min(cluster::SET_SIZE);
        let mut flips = Vec::new();
        let mut visible = Vec::new();
        let mut buf = [0u8; 2048];
        for round in 0..200 {
            let ready = round % 2 == 1;
            let started = Instant::now();
            let report = authority.apply([Change::UpsertPod(cluster::pod(set, ordinal, ready))]);
            flips.push(report.elapsed);
            // Ask until the answer reflects the change (the first answer already should).
            let want = if ready {
                ready_answers
            } else {
                ready_answers - 1
            };
            loop {
                client.send(&request).unwrap();
                let len = client.recv(&mut buf).unwrap();
                let ancount = u16::from_be_bytes([buf[6], buf[7]]) as usize;
                let _ = len;
                if ancount == want {
                    break;
                }
            }
            visible.push(started.elapsed());
        }
        println!(
            "| {pods} | {} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {:.2?} |",
            authority.index().name_count(),
            build,
            percentile(&mut flips, 0.5),
            percentile(&mut flips, 0.99),
            replace,
            percentile(&mut visible, 0.5),
            percentile(&mut visible, 0.99),
        );
        runtime.block_on(server.shutdown());
    }
}
