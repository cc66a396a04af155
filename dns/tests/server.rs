//! The server over real UDP and TCP sockets on loopback: answers, truncation, live
//! updates, forwarding to a real upstream (a hickory-server authority), access control,
//! limits, and `dig` as an independent client.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_dns::{Authority, Change, DnsServer, ServerConfig, Snapshot};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordSet, RecordType, RrKey};
use hickory_server::Server;
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

/// A berth DNS server on its own runtime, shut down on drop.
struct TestServer {
    runtime: tokio::runtime::Runtime,
    server: Option<DnsServer>,
    authority: Arc<Authority>,
    addr: SocketAddr,
}

impl TestServer {
    fn start(snapshot: Snapshot, configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let authority = Arc::new(Authority::new(zone_config()).unwrap());
        authority.replace(snapshot);
        let mut config = ServerConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            // No host resolv.conf in tests: an explicit upstream nobody listens on.
            upstreams: vec!["127.0.0.1:9".parse().unwrap()],
            forward_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        };
        configure(&mut config);
        let server = runtime
            .block_on(DnsServer::start(config, authority.clone()))
            .unwrap();
        let addr = server.local_addrs()[0];
        Self {
            runtime,
            server: Some(server),
            authority,
            addr,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

fn statefulset(replicas: u32) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.services.push(service("db", "pg", "pg"));
    for i in 0..replicas {
        snapshot.pods.push(pod(
            "db",
            "pg",
            i,
            &format!("10.244.{}.{}", 1 + i / 200, 10 + i % 200),
        ));
    }
    snapshot
}

#[test]
fn every_record_type_is_served_over_udp_and_tcp() {
    let server = TestServer::start(statefulset(3), |_| {});
    use RecordType::*;
    let cases: &[(&str, RecordType, &[&str])] = &[
        (
            "pg.db.svc.cluster.local.",
            A,
            &["10.244.1.10", "10.244.1.11", "10.244.1.12"],
        ),
        ("pg-1.pg.db.svc.cluster.local.", A, &["10.244.1.11"]),
        (
            "_sql._tcp.pg.db.svc.cluster.local.",
            SRV,
            &[
                "0 33 5432 pg-0.pg.db.svc.cluster.local.",
                "0 33 5432 pg-1.pg.db.svc.cluster.local.",
                "0 33 5432 pg-2.pg.db.svc.cluster.local.",
            ],
        ),
        (
            "12.1.244.10.in-addr.arpa.",
            PTR,
            &["pg-2.pg.db.svc.cluster.local."],
        ),
        ("dns-version.cluster.local.", TXT, &["1.1.0"]),
        ("cluster.local.", NS, &["ns.dns.cluster.local."]),
    ];
    for (name, rtype, want) in cases {
        for (transport, answer) in [
            ("udp", udp_query(server.addr, name, *rtype, None)),
            ("udp+edns", udp_query(server.addr, name, *rtype, Some(1232))),
            ("tcp", tcp_query(server.addr, name, *rtype)),
        ] {
            let what = format!("{name} {rtype} over {transport}: {answer:?}");
            assert_eq!(answer.rcode, ResponseCode::NoError, "{what}");
            assert!(answer.authoritative, "{what}");
            assert!(answer.recursion_available, "loopback may recurse: {what}");
            assert_eq!(answer.rdata(), *want, "{what}");
        }
    }
    let soa = udp_query(server.addr, "cluster.local.", SOA, None);
    assert_eq!(soa.answers.len(), 1);
    assert!(
        soa.answers[0].contains("ns.dns.cluster.local. hostmaster.cluster.local."),
        "{soa:?}"
    );
}

#[test]
fn nxdomain_and_nodata_both_carry_the_soa() {
    let server = TestServer::start(statefulset(1), |_| {});
    let cases: &[(&str, RecordType, ResponseCode)] = &[
        (
            "missing.db.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            "pg-0.pg.db.svc.cluster.local.",
            RecordType::AAAA,
            ResponseCode::NoError,
        ),
        (
            "db.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
        ),
        (
            "200.200.244.10.in-addr.arpa.",
            RecordType::PTR,
            ResponseCode::NXDomain,
        ),
    ];
    for (name, rtype, rcode) in cases {
        for answer in [
            udp_query(server.addr, name, *rtype, None),
            tcp_query(server.addr, name, *rtype),
        ] {
            assert_eq!(answer.rcode, *rcode, "{name}: {answer:?}");
            assert!(answer.answers.is_empty(), "{name}: {answer:?}");
            assert_eq!(answer.authority.len(), 1, "{name}: {answer:?}");
            assert!(
                answer.authority[0].contains(" IN SOA ns.dns.cluster.local."),
                "{answer:?}"
            );
        }
    }
}

#[test]
fn names_are_case_insensitive_and_the_answer_keeps_the_question_case() {
    let server = TestServer::start(statefulset(1), |_| {});
    let answer = udp_query(
        server.addr,
        "Pg-0.PG.db.SVC.cluster.Local.",
        RecordType::A,
        None,
    );
    assert_eq!(
        answer.answers,
        vec!["Pg-0.PG.db.SVC.cluster.Local. 5 IN A 10.244.1.10"]
    );
}

#[test]
fn readiness_changes_are_answered_as_soon_as_the_update_returns() {
    let server = TestServer::start(statefulset(2), |_| {});
    let mut p1 = pod("db", "pg", 1, "10.244.1.11");
    p1.ready = false;
    server.authority.apply([Change::UpsertPod(p1)]);
    assert_eq!(
        udp_query(server.addr, "pg.db.svc.cluster.local.", RecordType::A, None).rdata(),
        vec!["10.244.1.10"]
    );
    assert_eq!(
        udp_query(
            server.addr,
            "_sql._tcp.pg.db.svc.cluster.local.",
            RecordType::SRV,
            None
        )
        .rdata(),
        vec!["0 100 5432 pg-0.pg.db.svc.cluster.local."]
    );
    assert_eq!(
        udp_query(
            server.addr,
            "11.1.244.10.in-addr.arpa.",
            RecordType::PTR,
            None
        )
        .rcode,
        ResponseCode::NXDomain
    );
    let mut p0 = pod("db", "pg", 0, "10.244.1.10");
    p0.ready = false;
    server.authority.apply([Change::UpsertPod(p0)]);
    let answer = udp_query(server.addr, "pg.db.svc.cluster.local.", RecordType::A, None);
    assert_eq!(answer.rcode, ResponseCode::NXDomain, "{answer:?}");
    let srv = tcp_query(
        server.addr,
        "_sql._tcp.pg.db.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(srv.rcode, ResponseCode::NXDomain, "{srv:?}");
}

#[test]
fn publish_not_ready_addresses_serves_not_ready_pods() {
    let mut snapshot = statefulset(2);
    for pod in &mut snapshot.pods {
        pod.ready = false;
    }
    let server = TestServer::start(snapshot, |_| {});
    assert_eq!(
        udp_query(server.addr, "pg.db.svc.cluster.local.", RecordType::A, None).rcode,
        ResponseCode::NXDomain
    );
    let mut svc = service("db", "pg", "pg");
    svc.publish_not_ready_addresses = true;
    server.authority.apply([Change::UpsertService(svc)]);
    assert_eq!(
        udp_query(server.addr, "pg.db.svc.cluster.local.", RecordType::A, None).rdata(),
        vec!["10.244.1.10", "10.244.1.11"]
    );
    assert_eq!(
        udp_query(
            server.addr,
            "pg-1.pg.db.svc.cluster.local.",
            RecordType::A,
            None
        )
        .rdata(),
        vec!["10.244.1.11"]
    );
}

#[test]
fn a_sixty_pod_srv_answer_truncates_over_udp_and_arrives_whole_over_tcp() {
    let server = TestServer::start(statefulset(60), |_| {});
    let name = "_sql._tcp.pg.db.svc.cluster.local.";
    for (edns, limit) in [(None, 512), (Some(1232), 1232), (Some(4096), 1232)] {
        let answer = udp_query(server.addr, name, RecordType::SRV, edns);
        assert!(answer.truncated, "edns {edns:?}: {answer:?}");
        assert!(answer.size <= limit, "edns {edns:?}: {} bytes", answer.size);
        assert!(answer.answers.len() < 60, "edns {edns:?}");
        assert!(answer.additional.is_empty() || edns.is_some());
    }
    let whole = tcp_query(server.addr, name, RecordType::SRV);
    assert!(!whole.truncated);
    assert_eq!(whole.answers.len(), 60);
    assert_eq!(whole.additional.len(), 60);
    // The service's A set also exceeds 512 bytes and is truncated without EDNS.
    let a = udp_query(server.addr, "pg.db.svc.cluster.local.", RecordType::A, None);
    assert!(a.truncated && a.size <= 512, "{a:?}");
    assert_eq!(
        tcp_query(server.addr, "pg.db.svc.cluster.local.", RecordType::A)
            .answers
            .len(),
        60
    );
}

#[test]
fn zone_transfers_are_refused_over_both_transports() {
    let server = TestServer::start(statefulset(1), |_| {});
    for rtype in [RecordType::AXFR, RecordType::IXFR] {
        assert_eq!(
            tcp_query(server.addr, "cluster.local.", rtype).rcode,
            ResponseCode::Refused
        );
        assert_eq!(
            udp_query(server.addr, "cluster.local.", rtype, None).rcode,
            ResponseCode::Refused
        );
    }
    let dig = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &server.addr.port().to_string(),
            "cluster.local.",
            "AXFR",
        ])
        .output()
        .expect("dig runs (install Debian package bind9-dnsutils)");
    let text = String::from_utf8_lossy(&dig.stdout);
    assert!(text.contains("Transfer failed"), "{text}");
}

#[test]
fn dig_resolves_pods_services_and_reverse_names() {
    let server = TestServer::start(statefulset(2), |_| {});
    let port = server.addr.port().to_string();
    let dig = |args: &[&str]| {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "+short"])
            .args(args)
            .output()
            .expect("dig runs (install Debian package bind9-dnsutils)");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(dig(&["pg-0.pg.db.svc.cluster.local", "A"]), "10.244.1.10");
    assert_eq!(dig(&["-x", "10.244.1.11"]), "pg-1.pg.db.svc.cluster.local.");
    assert_eq!(
        dig(&["+tcp", "_sql._tcp.pg.db.svc.cluster.local", "SRV"]),
        "0 50 5432 pg-0.pg.db.svc.cluster.local.\n0 50 5432 pg-1.pg.db.svc.cluster.local."
    );
    assert_eq!(dig(&["dns-version.cluster.local", "TXT"]), "\"1.1.0\"");
}

/// A hickory-server authority for `.` (so unknown names are NXDOMAIN) holding one name.
struct Upstream {
    runtime: tokio::runtime::Runtime,
    server: Option<Server<Catalog>>,
    addr: SocketAddr,
}

impl Upstream {
    fn start(ip: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let origin = Name::root();
        let mut records = BTreeMap::new();
        let soa = Record::from_rdata(
            origin.clone(),
            60,
            RData::SOA(SOA::new(
                Name::from_str("ns.upstream.test.").unwrap(),
                Name::from_str("hostmaster.upstream.test.").unwrap(),
                1,
                60,
                60,
                60,
                60,
            )),
        );
        let mut soa_set = RecordSet::new(origin.clone(), RecordType::SOA, 1);
        soa_set.insert(soa, 1);
        records.insert(RrKey::new(origin.clone().into(), RecordType::SOA), soa_set);
        // A name with many addresses: its answer exceeds 512 bytes.
        let big = Name::from_str("big.example.test.").unwrap();
        let mut big_set = RecordSet::new(big.clone(), RecordType::A, 1);
        for i in 0..60u8 {
            let address = std::net::Ipv4Addr::new(192, 0, 2, i);
            big_set.insert(Record::from_rdata(big.clone(), 60, RData::A(A(address))), 1);
        }
        records.insert(RrKey::new(big.into(), RecordType::A), big_set);
        for (name, ip) in [
            ("www.example.test.", "192.0.2.80"),
            ("1.2.0.192.in-addr.arpa.", ""),
        ] {
            let name = Name::from_str(name).unwrap();
            let (rtype, data) = if ip.is_empty() {
                (
                    RecordType::PTR,
                    RData::PTR(hickory_proto::rr::rdata::PTR(
                        Name::from_str("host.example.test.").unwrap(),
                    )),
                )
            } else {
                (RecordType::A, RData::A(A(ip.parse().unwrap())))
            };
            let mut set = RecordSet::new(name.clone(), rtype, 1);
            set.insert(Record::from_rdata(name.clone(), 60, data), 1);
            records.insert(RrKey::new(name.into(), rtype), set);
        }
        let zone = InMemoryZoneHandler::<hickory_server::net::runtime::TokioRuntimeProvider>::new(
            origin.clone(),
            records,
            ZoneType::Primary,
            AxfrPolicy::Deny,
        )
        .unwrap();
        let mut catalog = Catalog::new();
        catalog.upsert(origin.into(), vec![Arc::new(zone)]);
        let (server, addr) = runtime.block_on(async {
            let udp = tokio::net::UdpSocket::bind(format!("{ip}:0"))
                .await
                .unwrap();
            let addr = udp.local_addr().unwrap();
            let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
            let mut server = Server::new(catalog);
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5), 65535);
            (server, addr)
        });
        Self {
            runtime,
            server: Some(server),
            addr,
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = self.runtime.block_on(server.shutdown_gracefully());
        }
    }
}

#[test]
fn names_outside_the_zones_are_forwarded_to_the_upstream() {
    let upstream = Upstream::start("127.0.0.2");
    let server = TestServer::start(statefulset(1), |config| {
        config.upstreams = vec![upstream.addr];
    });
    assert_eq!(
        server.server.as_ref().unwrap().upstreams(),
        &[upstream.addr]
    );
    for answer in [
        udp_query(server.addr, "www.example.test.", RecordType::A, None),
        udp_query(server.addr, "WWW.example.test.", RecordType::A, Some(1232)),
        tcp_query(server.addr, "www.example.test.", RecordType::A),
    ] {
        assert_eq!(answer.rcode, ResponseCode::NoError, "{answer:?}");
        assert_eq!(answer.rdata(), vec!["192.0.2.80"], "{answer:?}");
    }
    let missing = udp_query(server.addr, "missing.example.test.", RecordType::A, None);
    assert_eq!(missing.rcode, ResponseCode::NXDomain, "{missing:?}");
    // Reverse names outside the pod network are not ours: forwarded too.
    let ptr = udp_query(
        server.addr,
        "1.2.0.192.in-addr.arpa.",
        RecordType::PTR,
        None,
    );
    assert_eq!(ptr.rdata(), vec!["host.example.test."], "{ptr:?}");
    // The cluster zone is still answered locally.
    assert!(
        udp_query(
            server.addr,
            "pg-0.pg.db.svc.cluster.local.",
            RecordType::A,
            None
        )
        .authoritative
    );
}

#[test]
fn large_forwarded_answers_truncate_over_udp_and_arrive_whole_over_tcp() {
    let upstream = Upstream::start("127.0.0.8");
    let server = TestServer::start(statefulset(1), |config| {
        config.upstreams = vec![upstream.addr];
    });
    let udp = udp_query(server.addr, "big.example.test.", RecordType::A, None);
    assert!(udp.truncated && udp.size <= 512, "{udp:?}");
    let tcp = tcp_query(server.addr, "big.example.test.", RecordType::A);
    assert!(!tcp.truncated, "{tcp:?}");
    assert_eq!(tcp.answers.len(), 60);
}

#[test]
fn an_unreachable_upstream_gives_servfail_and_the_next_one_is_tried() {
    let upstream = Upstream::start("127.0.0.3");
    let dead: SocketAddr = "127.0.0.3:9".parse().unwrap();
    let server = TestServer::start(statefulset(1), |config| {
        config.upstreams = vec![dead, upstream.addr];
    });
    let answer = udp_query(server.addr, "www.example.test.", RecordType::A, None);
    assert_eq!(answer.rdata(), vec!["192.0.2.80"], "{answer:?}");
    let only_dead = TestServer::start(statefulset(1), |config| config.upstreams = vec![dead]);
    let failed = udp_query(only_dead.addr, "www.example.test.", RecordType::A, None);
    assert_eq!(failed.rcode, ResponseCode::ServFail, "{failed:?}");
}

#[test]
fn clients_outside_the_allowed_networks_cannot_recurse() {
    let upstream = Upstream::start("127.0.0.4");
    let server = TestServer::start(statefulset(1), |config| {
        config.upstreams = vec![upstream.addr];
        config.allowed_networks = vec!["127.0.0.1/32".parse().unwrap()];
    });
    let outsider = |name: &str, rtype| {
        decode(&udp_exchange(
            server.addr,
            "127.0.0.9:0",
            &query_message(name, rtype, None),
        ))
    };
    let refused = outsider("www.example.test.", RecordType::A);
    assert_eq!(refused.rcode, ResponseCode::Refused, "{refused:?}");
    assert!(!refused.recursion_available);
    // Authoritative data is answered to anyone (without offering recursion).
    let local = outsider("pg-0.pg.db.svc.cluster.local.", RecordType::A);
    assert_eq!(local.rdata(), vec!["10.244.1.10"]);
    assert!(local.authoritative && !local.recursion_available);
    // An allowed client recurses.
    let inside = udp_query(server.addr, "www.example.test.", RecordType::A, None);
    assert_eq!(inside.rdata(), vec!["192.0.2.80"]);
    assert!(inside.recursion_available);
}

#[test]
fn the_server_never_forwards_to_itself() {
    let server = TestServer::start(statefulset(1), |config| {
        config.listen = vec!["127.0.0.5:0".parse().unwrap()];
        config.upstreams = vec!["127.0.0.1:9".parse().unwrap()];
    });
    let own = server.addr;
    let looping = TestServer::start(statefulset(1), |config| {
        config.listen = vec![
            own.to_string()
                .replace("127.0.0.5", "127.0.0.6")
                .parse()
                .unwrap(),
        ];
        config.upstreams = vec![
            own.to_string()
                .replace("127.0.0.5", "127.0.0.6")
                .parse()
                .unwrap(),
            own,
        ];
    });
    assert_eq!(looping.server.as_ref().unwrap().upstreams(), &[own]);
}

#[test]
fn garbage_datagrams_never_stop_the_server() {
    let server = TestServer::start(statefulset(1), |_| {});
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut state = 99u64;
    for i in 0..2000 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (state >> 40) as usize % 600;
        let mut packet: Vec<u8> = (0..len)
            .map(|j| (state >> (j % 56)) as u8 ^ j as u8)
            .collect();
        if i % 2 == 0 && packet.len() > 12 {
            // Look like a query with one question, so the parser goes deeper.
            packet[2] = 0x01;
            packet[4] = 0;
            packet[5] = 1;
        }
        socket.send_to(&packet, server.addr).unwrap();
    }
    // The flood may have filled the socket buffer, so retry as a resolver would.
    let request = query_message("pg-0.pg.db.svc.cluster.local.", RecordType::A, None);
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let answer = (0..10)
        .find_map(|_| {
            client.send_to(&request, server.addr).unwrap();
            client.recv(&mut buf).ok().map(|len| decode(&buf[..len]))
        })
        .expect("the server answers after the flood");
    assert_eq!(answer.rdata(), vec!["10.244.1.10"]);
}

fn wait_for_eof(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(0))
        || matches!(stream.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

#[test]
fn tcp_connections_are_bounded_and_idle_ones_are_closed() {
    let server = TestServer::start(statefulset(1), |config| {
        config.max_tcp_connections = 2;
        config.tcp_idle_timeout = Duration::from_millis(300);
    });
    let first = TcpStream::connect(server.addr).unwrap();
    let second = TcpStream::connect(server.addr).unwrap();
    // Give the accept loop time to take both before the third arrives.
    std::thread::sleep(Duration::from_millis(100));
    let mut third = TcpStream::connect(server.addr).unwrap();
    assert!(
        wait_for_eof(&mut third, Duration::from_secs(2)),
        "the connection over the limit is closed"
    );
    // Idle connections are closed after the timeout, which frees their slots.
    let (mut first, mut second) = (first, second);
    assert!(wait_for_eof(&mut first, Duration::from_secs(3)));
    assert!(wait_for_eof(&mut second, Duration::from_secs(3)));
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let served = std::panic::catch_unwind(|| {
            tcp_query(server.addr, "pg-0.pg.db.svc.cluster.local.", RecordType::A)
        });
        match served {
            Ok(answer) => {
                assert_eq!(answer.rdata(), vec!["10.244.1.10"]);
                break;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => panic!("no tcp service after idle connections were closed"),
        }
    }
}

#[test]
fn shutdown_releases_the_listening_ports() {
    let server = TestServer::start(statefulset(1), |_| {});
    let addr = server.addr;
    drop(server);
    std::net::UdpSocket::bind(addr).expect("udp port released");
    std::net::TcpListener::bind(addr).expect("tcp port released");
}

#[test]
fn starting_on_a_taken_port_fails_naming_the_address_and_binds_nothing() {
    let server = TestServer::start(statefulset(1), |_| {});
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let authority = Arc::new(Authority::new(zone_config()).unwrap());
    let free: SocketAddr = "127.0.0.7:0".parse().unwrap();
    let error = runtime
        .block_on(DnsServer::start(
            ServerConfig {
                listen: vec![free, server.addr],
                upstreams: vec!["127.0.0.1:9".parse().unwrap()],
                ..ServerConfig::default()
            },
            authority,
        ))
        .err()
        .expect("the second address is taken");
    assert!(
        error.to_string().contains(&server.addr.to_string()),
        "{error}"
    );
}

#[test]
fn ipv4_and_ipv6_listeners_answer_side_by_side() {
    let server = TestServer::start(statefulset(1), |config| {
        config.listen = vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
    });
    let addrs = server.server.as_ref().unwrap().local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert!(addrs[1].is_ipv6() && addrs[1].port() != 0);
    let request = query_message("pg-0.pg.db.svc.cluster.local.", RecordType::A, None);
    let v6 = decode(&udp_exchange(addrs[1], "[::1]:0", &request));
    assert_eq!(v6.rdata(), vec!["10.244.1.10"]);
    assert!(
        v6.recursion_available,
        "::1 is allowed to recurse by default"
    );
    assert_eq!(
        decode(&tcp_exchange(addrs[1], &request)).rdata(),
        vec!["10.244.1.10"]
    );
}

#[test]
fn a_burst_of_queries_is_answered_one_for_one() {
    let server = TestServer::start(statefulset(3), |_| {});
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let names = [
        "pg-0.pg.db.svc.cluster.local.",
        "pg-1.pg.db.svc.cluster.local.",
        "nope.db.svc.cluster.local.",
    ];
    let mut buf = [0u8; 2048];
    // Bursts small enough for the default socket buffers, large enough to batch.
    for burst in 0..6u16 {
        for k in 0..50u16 {
            let id = burst * 50 + k;
            if k == 25 {
                // An oversized datagram in the middle of a burst is dropped on its own.
                socket.send_to(&[0u8; 5000], server.addr).unwrap();
            }
            let mut request = query_message(names[usize::from(id) % 3], RecordType::A, None);
            request[0..2].copy_from_slice(&id.to_be_bytes());
            socket.send_to(&request, server.addr).unwrap();
        }
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 50 {
            let len = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("burst {burst}: {} of 50 answered: {e}", seen.len()));
            let message = hickory_proto::op::Message::from_vec(&buf[..len]).unwrap();
            let id = message.metadata.id;
            assert_eq!(id / 50, burst);
            let want = if id % 3 == 2 {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            };
            assert_eq!(message.metadata.response_code, want, "id {id}");
            assert!(seen.insert(id), "one answer per query");
        }
    }
}
