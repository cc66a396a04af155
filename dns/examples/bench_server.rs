//! Serves a generated cluster for load tests (bench/dns/run.sh).
//!
//! `bench_server --listen 127.0.0.11:5300 --pods 10000 --zones DIR`
//! writes the zones as master files into DIR (for the comparison server) and the query
//! lists `a.txt`, `srv.txt`, `nx.txt` (dnsperf format), then serves on one thread until
//! killed.

#[path = "shared/cluster.rs"]
mod cluster;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use berth_dns::{Authority, DnsServer, ServerConfig};

fn main() {
    let mut listen: SocketAddr = "127.0.0.11:5300".parse().unwrap();
    let mut pods = 3usize;
    let mut zones: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--listen" => listen = value.parse().expect("--listen ADDR:PORT"),
            "--pods" => pods = value.parse().expect("--pods N"),
            "--zones" => zones = Some(value.into()),
            other => panic!("unknown argument {other}"),
        }
    }
    let authority = Arc::new(Authority::new(cluster::zone_config()).unwrap());
    let snapshot = cluster::snapshot(pods);
    let report = authority.replace(snapshot.clone());
    eprintln!(
        "built {} names for {pods} pods in {:?}",
        authority.index().name_count(),
        report.elapsed
    );
    if let Some(dir) = zones {
        std::fs::create_dir_all(&dir).unwrap();
        for (apex, text) in authority.master_files() {
            std::fs::write(dir.join(format!("{}zone", apex)), text).unwrap();
        }
        let (mut a, mut srv, mut nx) = (String::new(), String::new(), String::new());
        for pod in &snapshot.pods {
            let set = pod.subdomain.as_deref().unwrap();
            let ns = &pod.key.namespace;
            writeln!(a, "{}.{set}.{ns}.svc.cluster.local A", pod.key.name).unwrap();
            writeln!(nx, "{}x.{set}.{ns}.svc.cluster.local A", pod.key.name).unwrap();
        }
        for service in &snapshot.services {
            let key = &service.key;
            writeln!(
                srv,
                "_peer._tcp.{}.{}.svc.cluster.local SRV",
                key.name, key.namespace
            )
            .unwrap();
        }
        std::fs::write(dir.join("a.txt"), a).unwrap();
        std::fs::write(dir.join("srv.txt"), srv).unwrap();
        std::fs::write(dir.join("nx.txt"), nx).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = DnsServer::start(
            ServerConfig {
                listen: vec![listen],
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                ..ServerConfig::default()
            },
            authority,
        )
        .await
        .unwrap();
        eprintln!(
            "serving on {:?}, pid {}",
            server.local_addrs(),
            std::process::id()
        );
        std::future::pending::<()>().await;
    });
}
