//! Record building through the request path, without sockets: what each name answers
//! for a given snapshot, and how updates change it. Responses are decoded by hickory-proto.

mod common;

use berth_dns::{Authority, Change, ObjectKey, PodPhase, Snapshot, ZoneConfig};
use common::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

fn snapshot() -> Snapshot {
    let mut lone = pod("db", "lone", 0, "10.244.2.7");
    lone.labels.insert("app".into(), "pg".into());
    lone.hostname = None;
    lone.subdomain = None;
    let mut pg2 = pod("db", "pg", 2, "10.244.1.12");
    pg2.ready = false;
    let mut www = service("web", "www", "www");
    www.publish_not_ready_addresses = true;
    www.headless = false;
    let mut www0 = pod("web", "www", 0, "10.244.3.5");
    www0.ready = false;
    Snapshot {
        services: vec![
            service("db", "pg", "pg"),
            service("db", "empty", "nothing"),
            www,
        ],
        pods: vec![
            pod("db", "pg", 0, "10.244.1.10"),
            pod("db", "pg", 1, "10.244.1.11"),
            pg2,
            lone,
            www0,
        ],
    }
}

fn authority(snapshot: Snapshot) -> Authority {
    let authority = Authority::new(zone_config()).unwrap();
    authority.replace(snapshot);
    authority
}

/// `None` rdata means NODATA/NXDOMAIN: the answer is empty and the SOA is in authority.
#[test]
fn every_name_answers_as_kubernetes_dns_does() {
    let authority = authority(snapshot());
    use RecordType::*;
    let nx = ResponseCode::NXDomain;
    let ok = ResponseCode::NoError;
    let cases: &[(&str, RecordType, ResponseCode, &[&str])] = &[
        (
            "pg.db.svc.cluster.local.",
            A,
            ok,
            &["10.244.1.10", "10.244.1.11", "10.244.2.7"],
        ),
        ("pg-0.pg.db.svc.cluster.local.", A, ok, &["10.244.1.10"]),
        ("pg-2.pg.db.svc.cluster.local.", A, nx, &[]),
        (
            "10-244-2-7.pg.db.svc.cluster.local.",
            A,
            ok,
            &["10.244.2.7"],
        ),
        (
            "_sql._tcp.pg.db.svc.cluster.local.",
            SRV,
            ok,
            &[
                "0 33 5432 10-244-2-7.pg.db.svc.cluster.local.",
                "0 33 5432 pg-0.pg.db.svc.cluster.local.",
                "0 33 5432 pg-1.pg.db.svc.cluster.local.",
            ],
        ),
        ("_tcp.pg.db.svc.cluster.local.", A, ok, &[]),
        ("_udp.pg.db.svc.cluster.local.", A, nx, &[]),
        ("pg.db.svc.cluster.local.", AAAA, ok, &[]),
        ("db.svc.cluster.local.", A, ok, &[]),
        ("svc.cluster.local.", A, ok, &[]),
        ("nope.db.svc.cluster.local.", A, nx, &[]),
        ("below.pg-0.pg.db.svc.cluster.local.", A, nx, &[]),
        ("empty.db.svc.cluster.local.", A, nx, &[]),
        ("nons.svc.cluster.local.", A, nx, &[]),
        (
            "10.1.244.10.in-addr.arpa.",
            PTR,
            ok,
            &["pg-0.pg.db.svc.cluster.local."],
        ),
        (
            "7.2.244.10.in-addr.arpa.",
            PTR,
            ok,
            &["10-244-2-7.pg.db.svc.cluster.local."],
        ),
        ("12.1.244.10.in-addr.arpa.", PTR, nx, &[]),
        ("1.244.10.in-addr.arpa.", PTR, ok, &[]),
        ("99.244.10.in-addr.arpa.", PTR, nx, &[]),
        ("dns-version.cluster.local.", TXT, ok, &["1.1.0"]),
        ("dns-version.cluster.local.", A, ok, &[]),
        ("cluster.local.", NS, ok, &["ns.dns.cluster.local."]),
        ("ns.dns.cluster.local.", A, ok, &["10.244.0.1"]),
        ("10-244-1-10.db.pod.cluster.local.", A, ok, &["10.244.1.10"]),
        ("10-244-1-99.db.pod.cluster.local.", A, nx, &[]),
        ("www.web.svc.cluster.local.", A, ok, &["10.244.3.5"]),
        ("www-0.www.web.svc.cluster.local.", A, ok, &["10.244.3.5"]),
    ];
    for (name, rtype, rcode, rdata) in cases {
        let answer = ask(&authority, name, *rtype);
        let what = format!("{name} {rtype}: {answer:?}");
        assert_eq!(answer.rcode, *rcode, "{what}");
        assert!(answer.authoritative, "{what}");
        let want: Vec<String> = rdata.iter().map(|r| r.to_string()).collect();
        assert_eq!(answer.rdata(), want, "{what}");
        if rdata.is_empty() {
            assert_eq!(answer.authority.len(), 1, "{what}");
            assert!(answer.authority[0].contains(" SOA "), "{what}");
        } else {
            assert!(answer.authority.is_empty(), "{what}");
        }
    }
}

#[test]
fn the_apexes_answer_soa_with_the_configured_ttl() {
    let authority = Authority::new(ZoneConfig {
        ttl: 30,
        ..zone_config()
    })
    .unwrap();
    for apex in ["cluster.local.", "244.10.in-addr.arpa."] {
        let answer = ask(&authority, apex, RecordType::SOA);
        assert_eq!(answer.answers.len(), 1, "{answer:?}");
        let soa = &answer.answers[0];
        assert!(
            soa.starts_with(&format!(
                "{apex} 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "
            )),
            "{soa}"
        );
        assert!(soa.ends_with(" 7200 1800 86400 30"), "{soa}");
    }
}

#[test]
fn names_match_without_case_and_answers_echo_the_question() {
    let authority = authority(snapshot());
    let answer = ask(&authority, "PG-0.Pg.DB.svc.Cluster.LOCAL.", RecordType::A);
    assert_eq!(answer.rcode, ResponseCode::NoError);
    assert_eq!(answer.question, "PG-0.Pg.DB.svc.Cluster.LOCAL.");
    assert_eq!(
        answer.answers,
        vec!["PG-0.Pg.DB.svc.Cluster.LOCAL. 5 IN A 10.244.1.10"]
    );
    let negative = ask(&authority, "Nope.DB.svc.Cluster.LOCAL.", RecordType::A);
    assert!(
        negative.authority[0].starts_with("Cluster.LOCAL. 5 IN SOA"),
        "{negative:?}"
    );
}

#[test]
fn srv_answers_carry_every_targets_address_in_additional() {
    let mut snap = Snapshot::default();
    snap.services.push(service("db", "pg", "pg"));
    for i in 0..5 {
        snap.pods
            .push(pod("db", "pg", i, &format!("10.244.1.{}", 10 + i)));
    }
    let answer = ask(
        &authority(snap),
        "_sql._tcp.pg.db.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(answer.answers.len(), 5);
    assert!(
        answer.rdata().iter().all(|r| r.starts_with("0 20 5432 ")),
        "{answer:?}"
    );
    let mut additional: Vec<&str> = answer.additional.iter().map(String::as_str).collect();
    additional.sort();
    let want: Vec<String> = (0..5)
        .map(|i| format!("pg-{i}.pg.db.svc.cluster.local. 5 IN A 10.244.1.{}", 10 + i))
        .collect();
    assert_eq!(additional, want);
}

#[test]
fn unnamed_ports_get_no_srv_and_named_target_ports_resolve_per_pod() {
    let mut snap = Snapshot::default();
    snap.services.push(service("db", "pg", "pg"));
    let mut p0 = pod("db", "pg", 0, "10.244.1.10");
    p0.container_ports[0].container_port = 15432;
    let mut p1 = pod("db", "pg", 1, "10.244.1.11");
    p1.container_ports.clear();
    snap.pods = vec![p0, p1];
    let authority = authority(snap);
    let srv = ask(
        &authority,
        "_sql._tcp.pg.db.svc.cluster.local.",
        RecordType::SRV,
    );
    // pg-1 lacks the named port: no SRV for it, but it still has its A records.
    assert_eq!(
        srv.rdata(),
        vec!["0 100 15432 pg-0.pg.db.svc.cluster.local."]
    );
    let a = ask(&authority, "pg-1.pg.db.svc.cluster.local.", RecordType::A);
    assert_eq!(a.rdata(), vec!["10.244.1.11"]);
}

#[test]
fn dual_stack_pods_get_a_and_aaaa_and_v6_ptr() {
    let config = ZoneConfig {
        pod_networks: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:10:244::/48".parse().unwrap(),
        ],
        ..zone_config()
    };
    let authority = Authority::new(config).unwrap();
    let mut p = pod("db", "pg", 0, "10.244.1.10");
    p.ips.push("fd00:10:244::a".parse().unwrap());
    authority.replace(Snapshot {
        services: vec![service("db", "pg", "pg")],
        pods: vec![p],
    });
    let aaaa = ask(
        &authority,
        "pg-0.pg.db.svc.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(aaaa.rdata(), vec!["fd00:10:244::a"]);
    let reverse = berth_dns::Name::reverse("fd00:10:244::a".parse().unwrap()).to_string();
    let ptr = ask(&authority, &reverse, RecordType::PTR);
    assert_eq!(ptr.rdata(), vec!["pg-0.pg.db.svc.cluster.local."]);
    let srv = ask(
        &authority,
        "_sql._tcp.pg.db.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(srv.additional.len(), 2, "{srv:?}");
}

#[test]
fn a_pod_turning_not_ready_leaves_a_srv_and_ptr_and_the_last_one_makes_nxdomain() {
    let authority = authority(Snapshot {
        services: vec![service("db", "pg", "pg")],
        pods: vec![
            pod("db", "pg", 0, "10.244.1.10"),
            pod("db", "pg", 1, "10.244.1.11"),
        ],
    });
    let mut p1 = pod("db", "pg", 1, "10.244.1.11");
    p1.ready = false;
    authority.apply([Change::UpsertPod(p1)]);
    assert_eq!(
        ask(&authority, "pg.db.svc.cluster.local.", RecordType::A).rdata(),
        vec!["10.244.1.10"]
    );
    assert_eq!(
        ask(&authority, "pg-1.pg.db.svc.cluster.local.", RecordType::A).rcode,
        ResponseCode::NXDomain
    );
    assert_eq!(
        ask(
            &authority,
            "_sql._tcp.pg.db.svc.cluster.local.",
            RecordType::SRV
        )
        .rdata(),
        vec!["0 100 5432 pg-0.pg.db.svc.cluster.local."]
    );
    assert_eq!(
        ask(&authority, "11.1.244.10.in-addr.arpa.", RecordType::PTR).rcode,
        ResponseCode::NXDomain
    );

    let mut p0 = pod("db", "pg", 0, "10.244.1.10");
    p0.terminating = true;
    authority.apply([Change::UpsertPod(p0)]);
    for name in [
        "pg.db.svc.cluster.local.",
        "_sql._tcp.pg.db.svc.cluster.local.",
        "_tcp.pg.db.svc.cluster.local.",
    ] {
        assert_eq!(
            ask(&authority, name, RecordType::A).rcode,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    // The namespace still exists.
    assert_eq!(
        ask(&authority, "db.svc.cluster.local.", RecordType::A).rcode,
        ResponseCode::NoError
    );

    authority.apply([Change::UpsertPod(pod("db", "pg", 1, "10.244.1.11"))]);
    assert_eq!(
        ask(&authority, "pg.db.svc.cluster.local.", RecordType::A).rdata(),
        vec!["10.244.1.11"]
    );
}

#[test]
fn finished_pods_are_never_published_even_with_publish_not_ready() {
    let mut svc = service("db", "pg", "pg");
    svc.publish_not_ready_addresses = true;
    let mut failed = pod("db", "pg", 0, "10.244.1.10");
    failed.phase = PodPhase::Failed;
    let mut succeeded = pod("db", "pg", 1, "10.244.1.11");
    succeeded.phase = PodPhase::Succeeded;
    let mut unready = pod("db", "pg", 2, "10.244.1.12");
    unready.ready = false;
    let authority = authority(Snapshot {
        services: vec![svc],
        pods: vec![failed, succeeded, unready],
    });
    assert_eq!(
        ask(&authority, "pg.db.svc.cluster.local.", RecordType::A).rdata(),
        vec!["10.244.1.12"]
    );
}

#[test]
fn deleting_a_service_or_namespace_content_removes_every_name() {
    let authority = authority(snapshot());
    authority.replace(Snapshot::default());
    for name in [
        "pg.db.svc.cluster.local.",
        "db.svc.cluster.local.",
        "10.1.244.10.in-addr.arpa.",
        "1.244.10.in-addr.arpa.",
    ] {
        assert_eq!(
            ask(&authority, name, RecordType::A).rcode,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    // What is always there stays.
    assert_eq!(
        ask(&authority, "svc.cluster.local.", RecordType::A).rcode,
        ResponseCode::NoError
    );
    assert_eq!(
        ask(&authority, "dns-version.cluster.local.", RecordType::TXT)
            .answers
            .len(),
        1
    );
}

#[test]
fn an_invalid_hostname_leaves_out_only_that_endpoint() {
    let mut bad = pod("db", "pg", 1, "10.244.1.11");
    bad.hostname = Some("a".repeat(70));
    let authority = authority(Snapshot {
        services: vec![service("db", "pg", "pg")],
        pods: vec![pod("db", "pg", 0, "10.244.1.10"), bad],
    });
    assert_eq!(
        ask(&authority, "pg.db.svc.cluster.local.", RecordType::A).rdata(),
        vec!["10.244.1.10"]
    );
}

#[test]
fn any_returns_every_record_set_of_the_name() {
    let authority = authority(snapshot());
    let answer = ask(&authority, "cluster.local.", RecordType::ANY);
    let types: Vec<&str> = answer
        .answers
        .iter()
        .map(|r| r.split(' ').nth(3).unwrap())
        .collect();
    assert_eq!(types, vec!["SOA", "NS"], "{answer:?}");
}

#[test]
fn zone_transfers_are_refused() {
    let authority = authority(snapshot());
    for rtype in [RecordType::AXFR, RecordType::IXFR] {
        assert_eq!(
            ask(&authority, "cluster.local.", rtype).rcode,
            ResponseCode::Refused,
            "{rtype}"
        );
    }
}

/// A small deterministic generator, so the sequence is the same on every run.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn incremental_updates_end_where_a_fresh_build_from_the_same_snapshot_ends() {
    let authority = Authority::new(zone_config()).unwrap();
    let mut rng = Lcg(7);
    let mut current = Snapshot::default();
    for set in ["a", "b", "c"] {
        current.services.push(service("ns1", set, set));
    }
    for step in 0..400 {
        let set = ["a", "b", "c"][rng.next(3) as usize];
        let ordinal = rng.next(6) as u32;
        let key = ObjectKey::new("ns1", format!("{set}-{ordinal}"));
        let change = match rng.next(6) {
            0 => Change::DeletePod(key.clone()),
            1 => {
                let mut svc = service("ns1", set, set);
                svc.publish_not_ready_addresses = rng.next(2) == 0;
                Change::UpsertService(svc)
            }
            _ => {
                let mut p = pod(
                    "ns1",
                    set,
                    ordinal,
                    &format!("10.244.{}.{}", rng.next(3), rng.next(250) + 1),
                );
                p.ready = rng.next(3) != 0;
                p.terminating = rng.next(8) == 0;
                if rng.next(5) == 0 {
                    p.labels
                        .insert("app".into(), ["a", "b", "c"][rng.next(3) as usize].into());
                }
                Change::UpsertPod(p)
            }
        };
        match &change {
            Change::DeletePod(key) => current.pods.retain(|p| &p.key != key),
            Change::UpsertPod(p) => {
                current.pods.retain(|q| q.key != p.key);
                current.pods.push(p.clone());
            }
            Change::UpsertService(s) => {
                current.services.retain(|t| t.key != s.key);
                current.services.push(s.clone());
            }
            Change::DeleteService(_) => unreachable!(),
        }
        if step == 0 {
            authority.replace(current.clone());
        } else {
            authority.apply([change]);
        }
        if step % 50 == 49 {
            let fresh = Authority::new(zone_config()).unwrap();
            fresh.replace(current.clone());
            assert_eq!(
                strip_serial(authority.master_files()),
                strip_serial(fresh.master_files()),
                "step {step}"
            );
            assert_eq!(
                authority.index().name_count(),
                fresh.index().name_count(),
                "step {step}"
            );
        }
    }
}

fn strip_serial(files: Vec<(String, String)>) -> Vec<(String, String)> {
    files
        .into_iter()
        .map(|(apex, text)| {
            (
                apex,
                text.lines()
                    .filter(|l| !l.contains(" SOA "))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })
        .collect()
}

#[test]
fn an_update_that_changes_nothing_publishes_nothing() {
    let authority = authority(snapshot());
    let serial = authority.index().serial();
    let report = authority.replace(snapshot());
    assert_eq!(report.stats.names_changed, 0);
    assert_eq!(authority.index().serial(), serial);
}
