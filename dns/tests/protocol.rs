//! Protocol edge cases of the request path, without sockets: EDNS, malformed queries,
//! opcodes, classes, size limits, forwarding decisions.

mod common;

use berth_dns::{Authority, Outcome, RequestContext, Snapshot, Transport, respond};
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;

fn authority(pods: u32) -> Authority {
    let authority = Authority::new(zone_config()).unwrap();
    let mut snapshot = Snapshot::default();
    snapshot.services.push(service("db", "pg", "pg"));
    for i in 0..pods {
        snapshot
            .pods
            .push(pod("db", "pg", i, &format!("10.244.1.{}", 10 + i)));
    }
    authority.replace(snapshot);
    authority
}

fn run(
    authority: &Authority,
    request: &[u8],
    transport: Transport,
    recursion_allowed: bool,
) -> (Outcome, Vec<u8>) {
    let mut out = Vec::new();
    let ctx = RequestContext {
        transport,
        recursion_allowed,
        max_udp_payload: 1232,
    };
    let outcome = respond(&authority.index(), request, &ctx, &mut out);
    (outcome, out)
}

#[test]
fn edns_queries_get_an_opt_record_and_unknown_versions_get_badvers() {
    let authority = authority(1);
    let request = query_message("pg-0.pg.db.svc.cluster.local.", RecordType::A, Some(4096));
    let (_, out) = run(&authority, &request, Transport::Udp, true);
    let message = Message::from_vec(&out).unwrap();
    let edns = message.edns.expect("opt in the response");
    assert_eq!(edns.max_payload(), 1232);
    assert_eq!(message.answers.len(), 1);

    let mut v1 = request.clone();
    let opt_version = v1.len() - 5; // OPT: name, type, class, ext-rcode, version, flags, rdlen
    v1[opt_version] = 1;
    let (_, out) = run(&authority, &v1, Transport::Udp, true);
    let message = Message::from_vec(&out).unwrap();
    // 16 is BADVERS in an OPT context (hickory names the shared code BADSIG).
    assert_eq!(u16::from(message.metadata.response_code), 16);
    assert!(message.answers.is_empty());
}

#[test]
fn malformed_and_unsupported_requests_get_the_right_error() {
    let authority = authority(1);
    let good = query_message("pg-0.pg.db.svc.cluster.local.", RecordType::A, None);
    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let mut notify = good.clone();
    notify[2] = (4 << 3) | 0x01;
    let mut response = good.clone();
    response[2] |= 0x80;
    let cases: Vec<(&str, Vec<u8>, Option<ResponseCode>)> = vec![
        ("two questions", two_questions, Some(ResponseCode::FormErr)),
        (
            "cut in the question",
            good[..good.len() - 3].to_vec(),
            Some(ResponseCode::FormErr),
        ),
        ("opcode notify", notify, Some(ResponseCode::NotImp)),
        ("a response is never answered", response, None),
        ("shorter than a header", good[..11].to_vec(), None),
    ];
    for (name, request, want) in cases {
        let (outcome, out) = run(&authority, &request, Transport::Udp, true);
        match want {
            None => assert_eq!(outcome, Outcome::Drop, "{name}"),
            Some(code) => {
                assert_eq!(outcome, Outcome::Reply, "{name}");
                let message = Message::from_vec(&out).unwrap();
                assert_eq!(message.metadata.response_code, code, "{name}");
                assert_eq!(message.metadata.id, 0x4242, "{name}");
            }
        }
    }
}

#[test]
fn other_classes_are_refused_inside_the_zone() {
    let authority = authority(1);
    let mut request = query_message("pg-0.pg.db.svc.cluster.local.", RecordType::A, None);
    let class_at = request.len() - 2;
    request[class_at..].copy_from_slice(&3u16.to_be_bytes()); // CHAOS
    let (_, out) = run(&authority, &request, Transport::Udp, true);
    assert_eq!(decode(&out).rcode, ResponseCode::Refused);
}

#[test]
fn outside_names_are_forwarded_only_for_allowed_clients_and_transfers_never() {
    let authority = authority(1);
    let external = query_message("www.example.com.", RecordType::A, None);
    assert_eq!(
        run(&authority, &external, Transport::Udp, true).0,
        Outcome::Forward
    );
    let (outcome, out) = run(&authority, &external, Transport::Udp, false);
    assert_eq!(outcome, Outcome::Reply);
    let refused = decode(&out);
    assert_eq!(refused.rcode, ResponseCode::Refused);
    assert!(!refused.authoritative && !refused.recursion_available);
    let axfr = query_message("example.com.", RecordType::AXFR, None);
    let (outcome, out) = run(&authority, &axfr, Transport::Tcp, true);
    assert_eq!(outcome, Outcome::Reply);
    assert_eq!(decode(&out).rcode, ResponseCode::Refused);
    // A PTR outside the pod network is not ours either.
    let ptr = query_message("1.0.168.192.in-addr.arpa.", RecordType::PTR, None);
    assert_eq!(
        run(&authority, &ptr, Transport::Udp, true).0,
        Outcome::Forward
    );
}

#[test]
fn udp_answers_respect_the_client_size_and_the_server_cap() {
    let authority = authority(100);
    let name = "_sql._tcp.pg.db.svc.cluster.local.";
    let cases: &[(Option<u16>, usize)] = &[
        (None, 512),
        (Some(512), 512),
        (Some(900), 900),
        (Some(65000), 1232),
        (Some(100), 512),
    ];
    for (edns, limit) in cases {
        let (_, out) = run(
            &authority,
            &query_message(name, RecordType::SRV, *edns),
            Transport::Udp,
            true,
        );
        let answer = decode(&out);
        assert!(out.len() <= *limit, "edns {edns:?}: {} bytes", out.len());
        assert!(
            out.len() > limit - 80,
            "edns {edns:?}: only {} bytes used",
            out.len()
        );
        assert!(answer.truncated, "edns {edns:?}");
        assert!(
            answer
                .additional
                .iter()
                .all(|r| r.contains(" OPT ") || r.is_empty()),
            "no partial additionals with TC"
        );
    }
    let (_, out) = run(
        &authority,
        &query_message(name, RecordType::SRV, None),
        Transport::Tcp,
        true,
    );
    let whole = decode(&out);
    assert!(!whole.truncated);
    assert_eq!((whole.answers.len(), whole.additional.len()), (100, 100));
}

#[test]
fn additional_records_that_do_not_fit_are_dropped_without_tc() {
    // 8 SRV records fit in 512 bytes, their 8 addresses do not all fit as well.
    let authority = authority(8);
    let (_, out) = run(
        &authority,
        &query_message("_sql._tcp.pg.db.svc.cluster.local.", RecordType::SRV, None),
        Transport::Udp,
        true,
    );
    let answer = decode(&out);
    assert_eq!(answer.answers.len(), 8, "{answer:?}");
    assert!(!answer.truncated, "{answer:?}");
    assert!(answer.additional.len() < 8, "{answer:?}");
    assert!(out.len() <= 512);
}
