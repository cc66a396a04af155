//! A generated cluster for benchmarks: StatefulSets of 10 Pods behind headless Services,
//! 100 Services per namespace, Pod addresses in 10.244.0.0/16.

use std::collections::BTreeMap;

use berth_dns::{
    ContainerPort, ObjectKey, Pod, PodPhase, Protocol, Service, ServicePort, Snapshot, TargetPort,
    ZoneConfig,
};

/// Pods per StatefulSet.
pub const SET_SIZE: usize = 10;
/// Services per namespace.
pub const SETS_PER_NAMESPACE: usize = 100;

pub fn zone_config() -> ZoneConfig {
    ZoneConfig {
        cluster_domain: "cluster.local".into(),
        pod_networks: vec!["10.244.0.0/16".parse().unwrap()],
        ttl: 5,
        nameserver_ips: vec!["10.244.0.1".parse().unwrap()],
    }
}

pub fn set_name(set: usize) -> (String, String) {
    (
        format!("ns{}", set / SETS_PER_NAMESPACE),
        format!("sts{set}"),
    )
}

pub fn pod(set: usize, ordinal: usize, ready: bool) -> Pod {
    let (namespace, name) = set_name(set);
    let index = set * SET_SIZE + ordinal + 256; // skip 10.244.0.x (node addresses)
    let pod_name = format!("{name}-{ordinal}");
    Pod {
        key: ObjectKey::new(namespace, pod_name.clone()),
        labels: BTreeMap::from([("app".to_string(), name.clone())]),
        hostname: Some(pod_name),
        subdomain: Some(name),
        ips: vec![
            format!("10.244.{}.{}", index / 256, index % 256)
                .parse()
                .unwrap(),
        ],
        ready,
        terminating: false,
        phase: PodPhase::Running,
        container_ports: vec![ContainerPort {
            name: Some("peer".into()),
            protocol: Protocol::Tcp,
            container_port: 7000,
        }],
    }
}

pub fn service(set: usize) -> Service {
    let (namespace, name) = set_name(set);
    Service {
        key: ObjectKey::new(namespace, name.clone()),
        headless: true,
        selector: Some(BTreeMap::from([("app".to_string(), name)])),
        publish_not_ready_addresses: false,
        ports: vec![ServicePort {
            name: Some("peer".into()),
            protocol: Protocol::Tcp,
            port: 7000,
            target_port: Some(TargetPort::Name("peer".into())),
        }],
    }
}

/// A cluster of `pods` Pods (rounded up to whole StatefulSets; fewer than 10 makes one
/// set of that size).
pub fn snapshot(pods: usize) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let sets = pods.div_ceil(SET_SIZE);
    for set in 0..sets {
        snapshot.services.push(service(set));
        for ordinal in 0..SET_SIZE.min(pods - set * SET_SIZE) {
            snapshot.pods.push(pod(set, ordinal, true));
        }
    }
    snapshot
}
