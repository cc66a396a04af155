//! Any bytes through the request path, over both transports, with and without recursion:
//! never a panic, and every response is a well-formed DNS message (decoded by
//! hickory-proto) with the request's ID, within the size limit of its transport.
#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use berth_dns::{
    Authority, ContainerPort, ObjectKey, Outcome, Pod, PodPhase, Protocol, RequestContext, Service,
    ServicePort, Snapshot, TargetPort, Transport, ZoneConfig, respond,
};
use libfuzzer_sys::fuzz_target;

fn authority() -> &'static Authority {
    static AUTHORITY: OnceLock<Authority> = OnceLock::new();
    AUTHORITY.get_or_init(|| {
        let authority = Authority::new(ZoneConfig {
            pod_networks: vec![
                "10.244.0.0/16".parse().unwrap(),
                "fd00::/64".parse().unwrap(),
            ],
            nameserver_ips: vec!["10.244.0.1".parse().unwrap()],
            ..ZoneConfig::default()
        })
        .unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.services.push(Service {
            key: ObjectKey::new("db", "pg"),
            headless: true,
            selector: Some(BTreeMap::from([("app".into(), "pg".into())])),
            publish_not_ready_addresses: false,
            ports: vec![ServicePort {
                name: Some("sql".into()),
                protocol: Protocol::Tcp,
                port: 5432,
                target_port: Some(TargetPort::Name("pg".into())),
            }],
        });
        // Enough pods that SRV and A answers exceed every UDP limit.
        for i in 0..80u32 {
            let mut ips = vec![
                format!("10.244.{}.{}", i / 200, 1 + i % 200)
                    .parse()
                    .unwrap(),
            ];
            if i % 3 == 0 {
                ips.push(format!("fd00::{:x}", i + 1).parse().unwrap());
            }
            snapshot.pods.push(Pod {
                key: ObjectKey::new("db", format!("pg-{i}")),
                labels: BTreeMap::from([("app".into(), "pg".into())]),
                hostname: (i % 4 != 0).then(|| format!("pg-{i}")),
                subdomain: Some("pg".into()),
                ips,
                ready: i % 7 != 0,
                terminating: false,
                phase: PodPhase::Running,
                container_ports: vec![ContainerPort {
                    name: Some("pg".into()),
                    protocol: Protocol::Tcp,
                    container_port: 5432,
                }],
            });
        }
        authority.replace(snapshot);
        authority
    })
}

fuzz_target!(|data: &[u8]| {
    let index: Arc<_> = authority().index();
    let mut out = Vec::new();
    for (transport, recursion_allowed) in [
        (Transport::Udp, false),
        (Transport::Udp, true),
        (Transport::Tcp, false),
    ] {
        let ctx = RequestContext {
            transport,
            recursion_allowed,
            max_udp_payload: 1232,
        };
        match respond(&index, data, &ctx, &mut out) {
            Outcome::Drop => assert!(data.len() < 12 || data[2] & 0x80 != 0),
            Outcome::Forward => assert!(recursion_allowed),
            Outcome::Reply => {
                assert!(out.len() >= 12);
                assert_eq!(out[0..2], data[0..2]);
                assert!(out[2] & 0x80 != 0, "QR set");
                match transport {
                    Transport::Udp => {
                        assert!(out.len() <= 1232, "udp answer of {} bytes", out.len())
                    }
                    Transport::Tcp => assert!(out.len() <= 65535),
                }
                if let Err(error) = hickory_proto::op::Message::from_vec(&out) {
                    panic!("our response does not decode: {error}: {out:02x?}");
                }
            }
        }
    }
});
