//! Two simulated hosts on one L2 segment (a "LAN" namespace with a bridge), each with its own
//! pod CIDR; the routing primitive installs host-gw routes between them and a pod on one host
//! reaches a pod on the other by its own address.

mod network_support;

use std::net::{Ipv4Addr, SocketAddr};

use berth_runtime::network::{
    HostNetwork, NetworkError, NodeNetworkConfig, PeerRoute, PodAttachment,
};
use network_support::{Ns, addr, link};

/// A host namespace on the LAN at `192.168.77.<n>/24`.
fn host(tag: &str, lan: &Ns, n: u8) -> Ns {
    let host = Ns::new(&format!("{tag}-h{n}"));
    link(&host, "eth0", lan, &format!("lan-{n}"));
    lan.ip(&["link", "set", &format!("lan-{n}"), "master", "br0"]);
    host.ip(&["addr", "add", &format!("192.168.77.{n}/24"), "dev", "eth0"]);
    host
}

fn open(host: &Ns, cidr: &str) -> HostNetwork {
    let mut config = NodeNetworkConfig::new(cidr.parse().unwrap());
    config.netns = Some(host.path());
    HostNetwork::open(config).unwrap()
}

fn peer(node: &str, cidr: &str) -> PeerRoute {
    PeerRoute {
        node: node.parse().unwrap(),
        pod_cidr: cidr.parse().unwrap(),
    }
}

#[test]
fn a_pod_on_one_host_reaches_a_pod_on_the_other_through_host_gw_routes() {
    let lan = Ns::new("2h-lan");
    lan.ip(&["link", "add", "br0", "type", "bridge"]);
    lan.ip(&["link", "set", "br0", "up"]);
    let (one, two) = (host("2h", &lan, 1), host("2h", &lan, 2));
    let net_one = open(&one, "10.244.1.0/24");
    let net_two = open(&two, "10.244.2.0/24");
    let (pod_one, pod_two) = (Ns::new("2h-p1"), Ns::new("2h-p2"));
    let attach = |network: &HostNetwork, pod: &Ns, uid: &str, address: [u8; 4]| {
        network
            .attach(&PodAttachment {
                pod_uid: uid,
                description: uid,
                netns: &pod.path(),
                address: Ipv4Addr::from(address),
                host_ports: &[],
            })
            .unwrap()
    };
    attach(&net_one, &pod_one, "uid-1", [10, 244, 1, 2]);
    attach(&net_two, &pod_two, "uid-2", [10, 244, 2, 2]);
    let _server = pod_two.serve(addr("0.0.0.0:5432"), "pod-two");
    let target: SocketAddr = addr("10.244.2.2:5432");

    let error = pod_one.fetch(target).unwrap_err();
    assert!(
        matches!(
            error.raw_os_error(),
            Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ETIMEDOUT)
        ),
        "without routes host one cannot reach host two's pods: {error}"
    );

    net_one
        .set_peers(&[peer("192.168.77.2", "10.244.2.0/24")])
        .unwrap();
    net_two
        .set_peers(&[peer("192.168.77.1", "10.244.1.0/24")])
        .unwrap();
    assert_eq!(
        pod_one.fetch(target).unwrap(),
        "pod-two 10.244.1.2",
        "the pod is seen by its own address: no masquerade between pod networks"
    );
    assert_eq!(
        net_one.peers().unwrap(),
        [peer("192.168.77.2", "10.244.2.0/24")]
    );
    let routes = one.ip_output(&["route", "show", "proto", "98"]);
    assert_eq!(routes.trim(), "10.244.2.0/24 via 192.168.77.2 dev eth0");

    // The membership changes: the route goes, other routes stay.
    net_one.set_peers(&[]).unwrap();
    assert!(
        one.ip_output(&["route", "show", "proto", "98"])
            .trim()
            .is_empty()
    );
    assert!(
        one.ip_output(&["route"])
            .contains("192.168.77.0/24 dev eth0")
    );
    assert!(pod_one.fetch(target).is_err());
}

#[test]
fn a_peer_that_is_not_on_the_segment_or_overlaps_is_refused_and_changes_nothing() {
    let lan = Ns::new("2hbad-lan");
    lan.ip(&["link", "add", "br0", "type", "bridge"]);
    lan.ip(&["link", "set", "br0", "up"]);
    let one = host("2hbad", &lan, 1);
    let network = open(&one, "10.244.1.0/24");
    network
        .set_peers(&[peer("192.168.77.2", "10.244.2.0/24")])
        .unwrap();

    let error = network
        .set_peers(&[
            peer("192.168.77.2", "10.244.2.0/24"),
            peer("203.0.113.9", "10.244.3.0/24"),
        ])
        .unwrap_err();
    assert!(
        matches!(error, NetworkError::PeerUnreachable { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "peer 10.244.3.0/24 via 203.0.113.9: the node address is not on a directly connected network (host-gw routing needs the nodes on one L2 segment)"
    );
    let error = network
        .set_peers(&[peer("192.168.77.3", "10.244.1.0/25")])
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "peer 10.244.1.0/25 via 192.168.77.3: its pod CIDR overlaps this node's pod CIDR 10.244.1.0/24"
    );
    assert_eq!(
        network.peers().unwrap(),
        [peer("192.168.77.2", "10.244.2.0/24")]
    );
}
