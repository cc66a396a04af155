//! Pod networking on one simulated node, with real namespaces, links, routes and nft rules.
//! Each test builds its own node namespace (and an "internet" namespace beyond its uplink), so
//! nothing outside them is touched; everything goes when the namespaces are deleted.

mod network_support;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use berth_runtime::network::{
    HostNetwork, HostPort, NetworkError, NodeNetworkConfig, PodAttachment, PodInterface,
    PortHolder, Protocol, host_interface_name,
};
use network_support::{HOST_ADDRESS, INTERNET_ADDRESS, Ns, Site, addr};

fn open(site: &Site) -> HostNetwork {
    let mut config = NodeNetworkConfig::default();
    config.netns = Some(site.host.path());
    HostNetwork::open(config).unwrap()
}

fn attach(
    network: &HostNetwork,
    pod: &Ns,
    uid: &str,
    last_octet: u8,
    host_ports: &[HostPort],
) -> Result<PodInterface, NetworkError> {
    network.attach(&PodAttachment {
        pod_uid: uid,
        description: &format!("test/{uid}"),
        netns: &pod.path(),
        address: Ipv4Addr::new(10, 244, 0, last_octet),
        host_ports,
    })
}

fn tcp(host_port: u16, container_port: u16) -> HostPort {
    HostPort {
        protocol: Protocol::Tcp,
        host_ip: None,
        host_port,
        container_port,
    }
}

fn pod_ip(last_octet: u8, port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 244, 0, last_octet), port))
}

fn nft_ruleset(ns: &Ns) -> String {
    ns.exec_output("nft", &["list", "ruleset"])
}

#[test]
fn two_pods_on_one_node_reach_each_other_by_address() {
    let site = Site::new("pods");
    let network = open(&site);
    let (a, b) = (Ns::new("pods-a"), Ns::new("pods-b"));
    let attached = attach(&network, &a, "uid-a", 2, &[]).unwrap();
    attach(&network, &b, "uid-b", 3, &[]).unwrap();

    assert_eq!(attached.address.to_string(), "10.244.0.2/24");
    assert_eq!(attached.gateway, Ipv4Addr::new(10, 244, 0, 1));
    assert_eq!(attached.mtu, 1400, "the MTU of the host's uplink");
    let inside = a.ip_output(&["-o", "link", "show", "eth0"]);
    assert!(inside.contains("mtu 1400"), "{inside}");
    assert!(
        inside.contains("0a:58:0a:f4:00:02"),
        "derived hardware address: {inside}"
    );
    let routes = a.ip_output(&["route"]);
    assert!(
        routes.contains("default via 10.244.0.1 dev eth0"),
        "{routes}"
    );

    let _server = b.serve(addr("10.244.0.3:5000"), "b");
    assert_eq!(
        a.fetch(addr("10.244.0.3:5000")).unwrap(),
        "b 10.244.0.2",
        "no NAT between pods"
    );
}

#[test]
fn a_pod_reaches_a_server_beyond_the_node_through_masquerade() {
    let site = Site::new("masq");
    let network = open(&site);
    let pod = Ns::new("masq-p");
    attach(&network, &pod, "uid-p", 2, &[]).unwrap();
    let _server = site.internet.serve(addr("198.51.100.2:80"), "internet");

    let answer = pod.fetch(SocketAddr::from((
        INTERNET_ADDRESS.parse::<Ipv4Addr>().unwrap(),
        80,
    )));
    assert_eq!(
        answer.unwrap(),
        format!("internet {HOST_ADDRESS}"),
        "the internet sees the node's address, and has no route back to the pod CIDR"
    );
}

#[test]
fn a_host_port_is_reachable_at_the_nodes_address_from_outside_the_node_and_from_the_node() {
    let site = Site::new("hport");
    let network = open(&site);
    let (pod, other) = (Ns::new("hport-p"), Ns::new("hport-o"));
    attach(&network, &pod, "uid-p", 2, &[tcp(8080, 80)]).unwrap();
    attach(&network, &other, "uid-o", 3, &[]).unwrap();
    let _server = pod.serve(addr("0.0.0.0:80"), "pod");
    let published = addr(&format!("{HOST_ADDRESS}:8080"));

    assert_eq!(
        site.internet.fetch(published).unwrap(),
        format!("pod {INTERNET_ADDRESS}")
    );
    assert!(
        site.host.fetch(published).unwrap().starts_with("pod "),
        "from the node itself"
    );
    // A pod reaching a hostPort on its own node: routed, the hairpin rule masquerades it
    // (the server sees the gateway); with br_netfilter loaded the DNAT'd packet is bridged
    // and conntrack undoes the DNAT on the reply (the server sees the client pod).
    let answer = other.fetch(published).unwrap();
    assert!(
        answer == "pod 10.244.0.1" || answer == "pod 10.244.0.3",
        "{answer}"
    );
    let rules = network.host_ports();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].comment(), "uid-p tcp *:8080 10.244.0.2:80");
}

#[test]
fn two_pods_both_listen_on_5432() {
    let site = Site::new("pg");
    let network = open(&site);
    let (first, second) = (Ns::new("pg-0"), Ns::new("pg-1"));
    attach(&network, &first, "uid-0", 2, &[]).unwrap();
    attach(&network, &second, "uid-1", 3, &[]).unwrap();
    let _a = first.serve(addr("0.0.0.0:5432"), "pg-0");
    let _b = second.serve(addr("0.0.0.0:5432"), "pg-1");

    assert_eq!(site.host.fetch(pod_ip(2, 5432)).unwrap(), "pg-0 10.244.0.1");
    assert_eq!(site.host.fetch(pod_ip(3, 5432)).unwrap(), "pg-1 10.244.0.1");
}

#[test]
fn a_taken_host_port_is_refused_naming_its_holder_and_disturbs_no_other_pod() {
    let site = Site::new("taken");
    let network = open(&site);
    let (holder, late, third) = (Ns::new("taken-a"), Ns::new("taken-b"), Ns::new("taken-c"));
    attach(&network, &holder, "uid-a", 2, &[tcp(8080, 80)]).unwrap();
    let _server = holder.serve(addr("0.0.0.0:80"), "holder");

    let error = attach(&network, &late, "uid-b", 3, &[tcp(8080, 8080)]).unwrap_err();
    assert!(
        matches!(&error, NetworkError::HostPortTaken { holder: PortHolder::Pod(uid), .. } if uid == "uid-a"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "host port 8080/TCP for pod uid-b is already taken by pod uid-a"
    );
    assert!(
        late.ip_output(&["-o", "link"])
            .lines()
            .all(|l| !l.contains("eth0")),
        "nothing was set up"
    );

    // A process of the node listening on a port counts as well.
    let _listener = site
        .host
        .run(|| std::net::TcpListener::bind("0.0.0.0:9090"))
        .unwrap();
    let error = attach(&network, &third, "uid-c", 4, &[tcp(9090, 80)]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "host port 9090/TCP for pod uid-c is already taken by a process on the node"
    );
    let error = attach(
        &network,
        &third,
        "uid-c",
        4,
        &[HostPort {
            host_ip: Some(Ipv4Addr::new(203, 0, 113, 9)),
            ..tcp(9191, 80)
        }],
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "host port 203.0.113.9:9191/TCP for pod uid-c: the hostIP is not an address of this node"
    );

    let published = addr(&format!("{HOST_ADDRESS}:8080"));
    assert_eq!(
        site.internet.fetch(published).unwrap(),
        format!("holder {INTERNET_ADDRESS}")
    );
    let links: Vec<_> = network
        .pods()
        .unwrap()
        .into_iter()
        .map(|p| p.pod_uid)
        .collect();
    assert_eq!(links, [Some("uid-a".to_string())]);
}

#[test]
fn detaching_a_pod_leaves_no_veth_address_rule_or_namespace() {
    let site = Site::new("detach");
    let network = open(&site);
    let pod = Ns::new("detach-p");
    attach(&network, &pod, "uid-gone", 2, &[tcp(8080, 80)]).unwrap();
    let host_if = host_interface_name("uid-gone");
    assert!(site.host.ip_output(&["-o", "link"]).contains(&host_if));
    assert!(nft_ruleset(&site.host).contains("uid-gone"));

    network.detach("uid-gone").unwrap();
    network.detach("uid-gone").unwrap(); // idempotent

    let links = site.host.ip_output(&["-o", "link"]);
    assert!(!links.contains(&host_if), "{links}");
    assert!(
        !pod.ip_output(&["-o", "link"]).contains("eth0"),
        "the pod end went with the pair"
    );
    assert!(!pod.ip_output(&["-4", "-o", "addr"]).contains("10.244.0.2/"));
    assert!(
        !site
            .host
            .ip_output(&["-4", "-o", "addr"])
            .contains("10.244.0.2/")
    );
    assert!(!nft_ruleset(&site.host).contains("uid-gone"));
    assert!(network.pods().unwrap().is_empty());
    assert!(network.host_ports().is_empty());
    let name = pod.name.clone();
    drop(pod);
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&namespaces.stdout).contains(&name));
}

#[test]
fn a_restarted_node_adopts_its_network_and_collects_the_pods_that_are_gone() {
    let site = Site::new("adopt");
    let network = open(&site);
    let (kept, gone) = (Ns::new("adopt-k"), Ns::new("adopt-g"));
    attach(&network, &kept, "uid-kept", 2, &[tcp(8080, 80)]).unwrap();
    attach(&network, &gone, "uid-gone", 3, &[tcp(8081, 80)]).unwrap();
    // An attach interrupted between creating the pair and naming it: no alias, no address.
    let half = Ns::new("adopt-half");
    berth_runtime::network::netns::Netns::open(&site.host.path())
        .unwrap()
        .run(|| {
            let mut rtnl = berth_runtime::network::netlink::Rtnl::open().unwrap();
            let bridge = berth_runtime::network::links::get(&mut rtnl, "berth0")
                .unwrap()
                .unwrap();
            let netns = berth_runtime::network::netns::Netns::open(&half.path()).unwrap();
            let peer = berth_runtime::network::links::VethPeer {
                name: "eth0",
                netns: &netns,
                mac: [0x0a, 0x58, 10, 244, 0, 4],
            };
            berth_runtime::network::links::create_veth(
                &mut rtnl,
                &host_interface_name("uid-half"),
                bridge.index,
                1400,
                &peer,
            )
            .unwrap();
        })
        .unwrap();
    let _server = kept.serve(addr("0.0.0.0:80"), "kept");
    drop(network); // the agent stops without tearing anything down

    let network = open(&site);
    assert_eq!(
        network.host_ports().len(),
        2,
        "published ports survive a restart"
    );
    let published = addr(&format!("{HOST_ADDRESS}:8080"));
    assert_eq!(
        site.internet.fetch(published).unwrap(),
        format!("kept {INTERNET_ADDRESS}")
    );

    let live = BTreeSet::from(["uid-kept".to_string()]);
    let collected = network.collect_orphans(&live).unwrap();
    let mut links = collected.links.clone();
    links.sort();
    let mut expected = vec![
        host_interface_name("uid-gone"),
        host_interface_name("uid-half"),
    ];
    expected.sort();
    assert_eq!(links, expected);
    assert_eq!(collected.ports.len(), 1);
    assert_eq!(collected.ports[0].pod_uid, "uid-gone");
    let ruleset = nft_ruleset(&site.host);
    assert!(
        ruleset.contains("uid-kept") && !ruleset.contains("uid-gone"),
        "{ruleset}"
    );
    assert_eq!(
        site.internet.fetch(published).unwrap(),
        format!("kept {INTERNET_ADDRESS}")
    );
}

#[test]
fn attaching_a_pod_again_replaces_what_an_interrupted_attach_left() {
    let site = Site::new("again");
    let network = open(&site);
    let pod = Ns::new("again-p");
    attach(&network, &pod, "uid-p", 2, &[tcp(8080, 80)]).unwrap();
    attach(&network, &pod, "uid-p", 2, &[tcp(8080, 80)]).unwrap();
    assert_eq!(network.pods().unwrap().len(), 1);
    assert_eq!(network.host_ports().len(), 1);
    let _server = pod.serve(addr("0.0.0.0:80"), "pod");
    assert_eq!(
        site.internet
            .fetch(addr(&format!("{HOST_ADDRESS}:8080")))
            .unwrap(),
        format!("pod {INTERNET_ADDRESS}")
    );
}

#[test]
fn a_returning_address_is_announced_with_a_gratuitous_arp() {
    let site = Site::new("garp");
    let network = open(&site);
    let (first, listener, second) = (Ns::new("garp-1"), Ns::new("garp-l"), Ns::new("garp-2"));
    attach(&network, &listener, "uid-l", 3, &[]).unwrap();
    attach(&network, &first, "uid-1", 2, &[]).unwrap();
    network.detach("uid-1").unwrap();

    // Listen for ARP on the listener pod's interface while the address returns in a new pod.
    let capture = listener.run(|| {
        // SAFETY: plain socket call; ownership is taken at once.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (0x0806u16).to_be() as i32) };
        assert!(raw >= 0);
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) }
    });
    attach(&network, &second, "uid-2", 2, &[]).unwrap();
    // A datagram socket wrapper gives recv with a timeout; the packet socket is one.
    let socket = std::net::UdpSocket::from(capture);
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut frame = [0u8; 128];
    let announced = loop {
        let length = socket.recv(&mut frame).expect("an ARP frame within 5 s");
        if length >= 42 && frame[28..32] == [10, 244, 0, 2] && frame[38..42] == [10, 244, 0, 2] {
            break frame[22..28].to_vec();
        }
    };
    assert_eq!(announced, [0x0a, 0x58, 10, 244, 0, 2]);
}

#[test]
fn a_pod_cidr_overlapping_a_host_network_is_refused_and_changes_nothing() {
    let site = Site::new("overlap");
    let mut config = NodeNetworkConfig::new("198.51.100.0/25".parse().unwrap());
    config.netns = Some(site.host.path());
    let error = HostNetwork::open(config).unwrap_err();
    assert_eq!(
        error.to_string(),
        "pod CIDR 198.51.100.0/25 overlaps the host network 198.51.100.0/24 (eth0); choose a pod CIDR that is not in use on this host"
    );
    assert!(!site.host.ip_output(&["-o", "link"]).contains("berth0"));
    assert!(!nft_ruleset(&site.host).contains("berth"));
}

#[test]
fn a_bridge_name_held_by_another_kind_of_interface_is_refused() {
    let site = Site::new("notbr");
    site.host.ip(&[
        "link", "add", "berth0", "type", "veth", "peer", "name", "other",
    ]);
    let mut config = NodeNetworkConfig::default();
    config.netns = Some(site.host.path());
    let error = HostNetwork::open(config).unwrap_err();
    assert_eq!(
        error.to_string(),
        "interface berth0 exists and is a veth, not a bridge; choose another bridge name"
    );
}

#[test]
fn an_address_outside_the_pod_cidr_is_refused_before_anything_is_created() {
    let site = Site::new("badip");
    let network = open(&site);
    let pod = Ns::new("badip-p");
    for (address, reason) in [
        (Ipv4Addr::new(10, 245, 0, 2), "it is outside the pod CIDR"),
        (Ipv4Addr::new(10, 244, 0, 1), "it is the gateway's"),
        (
            Ipv4Addr::new(10, 244, 0, 255),
            "it is the broadcast address",
        ),
    ] {
        let error = network
            .attach(&PodAttachment {
                pod_uid: "uid-p",
                description: "test/p",
                netns: &pod.path(),
                address,
                host_ports: &[],
            })
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "address {address} for pod uid-p is not usable in pod CIDR 10.244.0.0/24: {reason}"
            )
        );
    }
    assert!(network.pods().unwrap().is_empty());
}
