//! Arbitrary sequences of Service and Pod changes (names with any characters and lengths,
//! any addresses): never a panic, and the incremental result equals a fresh build of the
//! final snapshot.
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;

use berth_dns::{
    Authority, Change, ContainerPort, ObjectKey, Pod, PodPhase, Protocol, Service, ServicePort,
    Snapshot, TargetPort, ZoneConfig,
};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "a", "b", "web", "Web", "x.y", "", "-", "_p", "ä", "a b", "0",
];

struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }
    fn name(&mut self) -> String {
        let b = self.byte();
        if b >= 250 {
            "n".repeat(usize::from(self.byte()) % 80)
        } else {
            NAMES[usize::from(b) % NAMES.len()].to_string()
        }
    }
    fn ip(&mut self) -> IpAddr {
        if self.byte() % 4 == 0 {
            format!("fd00::{:x}", self.byte()).parse().unwrap()
        } else {
            format!(
                "10.{}.{}.{}",
                if self.byte() % 2 == 0 { 244 } else { 9 },
                self.byte() % 3,
                self.byte()
            )
            .parse()
            .unwrap()
        }
    }
}

fn config() -> ZoneConfig {
    ZoneConfig {
        pod_networks: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00::/64".parse().unwrap(),
        ],
        ..ZoneConfig::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Bytes(data);
    let authority = Authority::new(config()).unwrap();
    let mut services: BTreeMap<ObjectKey, Service> = BTreeMap::new();
    let mut pods: BTreeMap<ObjectKey, Pod> = BTreeMap::new();
    while !input.0.is_empty() {
        let kind = input.byte() % 4;
        let key = ObjectKey::new(input.name(), input.name());
        let change = match kind {
            0 => Change::DeleteService(key),
            1 => Change::DeletePod(key),
            2 => {
                let flags = input.byte();
                Change::UpsertService(Service {
                    key,
                    headless: flags & 1 != 0,
                    selector: (flags & 2 != 0)
                        .then(|| BTreeMap::from([("app".into(), input.name())])),
                    publish_not_ready_addresses: flags & 4 != 0,
                    ports: vec![ServicePort {
                        name: (flags & 8 != 0).then(|| input.name()),
                        protocol: if flags & 16 != 0 {
                            Protocol::Udp
                        } else {
                            Protocol::Tcp
                        },
                        port: u16::from(input.byte()),
                        target_port: Some(if flags & 32 != 0 {
                            TargetPort::Name(input.name())
                        } else {
                            TargetPort::Number(u16::from(input.byte()))
                        }),
                    }],
                })
            }
            _ => {
                let flags = input.byte();
                let ips = (0..flags % 3).map(|_| input.ip()).collect();
                Change::UpsertPod(Pod {
                    key,
                    labels: BTreeMap::from([("app".into(), input.name())]),
                    hostname: (flags & 4 != 0).then(|| input.name()),
                    subdomain: (flags & 8 != 0).then(|| input.name()),
                    ips,
                    ready: flags & 16 != 0,
                    terminating: flags & 32 != 0,
                    phase: if flags & 64 != 0 {
                        PodPhase::Failed
                    } else {
                        PodPhase::Running
                    },
                    container_ports: vec![ContainerPort {
                        name: Some(input.name()),
                        protocol: Protocol::Tcp,
                        container_port: u16::from(input.byte()),
                    }],
                })
            }
        };
        match &change {
            Change::DeleteService(key) => {
                services.remove(key);
            }
            Change::DeletePod(key) => {
                pods.remove(key);
            }
            Change::UpsertService(s) => {
                services.insert(s.key.clone(), s.clone());
            }
            Change::UpsertPod(p) => {
                pods.insert(p.key.clone(), p.clone());
            }
        }
        authority.apply([change]);
    }
    let fresh = Authority::new(config()).unwrap();
    fresh.replace(Snapshot {
        services: services.into_values().collect(),
        pods: pods.into_values().collect(),
    });
    let strip = |files: Vec<(String, String)>| -> Vec<String> {
        files
            .into_iter()
            .map(|(_, t)| {
                t.lines()
                    .filter(|l| !l.contains(" SOA "))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect()
    };
    assert_eq!(strip(authority.master_files()), strip(fresh.master_files()));
    assert_eq!(authority.index().name_count(), fresh.index().name_count());
});
