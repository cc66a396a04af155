//! Cross-host routing (host-gw): a route to each peer node's pod CIDR via that node's address,
//! for nodes on one L2 segment. The routes carry berth's own protocol number, so berth finds
//! and replaces exactly its own routes and nothing else in the table.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::addresses::Route;

/// `rtm_protocol` of berth's routes (`ip route show proto 98`). Unassigned in iproute2's
/// rt_protos and in FRR's and BIRD's ranges.
pub const RTPROT_BERTH: u8 = 98;

/// A peer node: its address on the shared segment and its pod CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerRoute {
    /// The peer node's address (the next hop).
    pub node: Ipv4Addr,
    /// The peer's pod CIDR.
    pub pod_cidr: Ipv4Net,
}

impl fmt::Display for PeerRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} via {}", self.pod_cidr, self.node)
    }
}

/// Why a set of peers was refused before any route changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("peer {peer}: pod CIDR {} has host bits set (did you mean {}?)", .peer.pod_cidr, .peer.pod_cidr.trunc())]
    HostBits { peer: PeerRoute },
    #[error("peer {peer}: its pod CIDR overlaps this node's pod CIDR {own}")]
    OverlapsOwn { peer: PeerRoute, own: Ipv4Net },
    #[error("peers {first} and {second} have overlapping pod CIDRs")]
    OverlapEachOther { first: PeerRoute, second: PeerRoute },
    #[error("peer {peer}: the node address lies inside a pod CIDR ({cidr})")]
    NodeInPodCidr { peer: PeerRoute, cidr: Ipv4Net },
}

fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Checks a set of peers against this node's pod CIDR and each other.
pub fn check(own: Ipv4Net, peers: &[PeerRoute]) -> Result<(), PeerError> {
    for (i, peer) in peers.iter().enumerate() {
        if peer.pod_cidr.trunc() != peer.pod_cidr {
            return Err(PeerError::HostBits { peer: *peer });
        }
        if overlap(peer.pod_cidr, own) {
            return Err(PeerError::OverlapsOwn { peer: *peer, own });
        }
        if let Some(earlier) = peers[..i]
            .iter()
            .find(|earlier| overlap(earlier.pod_cidr, peer.pod_cidr))
        {
            return Err(PeerError::OverlapEachOther {
                first: *earlier,
                second: *peer,
            });
        }
        if let Some(cidr) = std::iter::once(own)
            .chain(peers.iter().map(|p| p.pod_cidr))
            .find(|cidr| cidr.contains(&peer.node))
        {
            return Err(PeerError::NodeInPodCidr { peer: *peer, cidr });
        }
    }
    Ok(())
}

/// The route to a peer's pod CIDR.
pub fn route(peer: &PeerRoute) -> Route {
    Route {
        destination: peer.pod_cidr,
        gateway: Some(peer.node),
        interface: None,
        protocol: RTPROT_BERTH,
    }
}

/// The peers berth's routes currently lead to.
pub fn installed(routes: &[Route]) -> Vec<PeerRoute> {
    let mut peers: Vec<PeerRoute> = routes
        .iter()
        .filter(|route| route.protocol == RTPROT_BERTH)
        .filter_map(|route| {
            Some(PeerRoute {
                node: route.gateway?,
                pod_cidr: route.destination,
            })
        })
        .collect();
    peers.sort();
    peers
}

/// What to change to go from berth's `current` routes to routes for `desired` peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// Routes to add or replace (new peers, or a peer whose node address changed).
    pub replace: Vec<PeerRoute>,
    /// berth routes no peer needs any more.
    pub delete: Vec<Route>,
}

/// Plans the change from `current` (any routes; only berth's count) to `desired`.
pub fn plan(current: &[Route], desired: &[PeerRoute]) -> RoutePlan {
    let ours: Vec<&Route> = current
        .iter()
        .filter(|route| route.protocol == RTPROT_BERTH)
        .collect();
    let replace = desired
        .iter()
        .filter(|peer| {
            !ours
                .iter()
                .any(|r| r.destination == peer.pod_cidr && r.gateway == Some(peer.node))
        })
        .copied()
        .collect();
    let delete = ours
        .into_iter()
        .filter(|route| {
            !desired
                .iter()
                .any(|peer| peer.pod_cidr == route.destination)
        })
        .copied()
        .collect();
    RoutePlan { replace, delete }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(node: &str, cidr: &str) -> PeerRoute {
        PeerRoute {
            node: node.parse().unwrap(),
            pod_cidr: cidr.parse().unwrap(),
        }
    }

    fn own() -> Ipv4Net {
        "10.244.0.0/24".parse().unwrap()
    }

    #[test]
    fn peers_are_checked_against_this_node_and_each_other() {
        let cases: [(Vec<PeerRoute>, Option<&str>); 6] = [
            (
                vec![
                    peer("192.168.1.2", "10.244.1.0/24"),
                    peer("192.168.1.3", "10.244.2.0/24"),
                ],
                None,
            ),
            (
                vec![peer("192.168.1.2", "10.244.1.7/24")],
                Some(
                    "peer 10.244.1.7/24 via 192.168.1.2: pod CIDR 10.244.1.7/24 has host bits set (did you mean 10.244.1.0/24?)",
                ),
            ),
            (
                vec![peer("192.168.1.2", "10.244.0.0/16")],
                Some(
                    "peer 10.244.0.0/16 via 192.168.1.2: its pod CIDR overlaps this node's pod CIDR 10.244.0.0/24",
                ),
            ),
            (
                vec![peer("192.168.1.2", "10.244.0.128/25")],
                Some(
                    "peer 10.244.0.128/25 via 192.168.1.2: its pod CIDR overlaps this node's pod CIDR 10.244.0.0/24",
                ),
            ),
            (
                vec![
                    peer("192.168.1.2", "10.244.1.0/24"),
                    peer("192.168.1.3", "10.244.1.0/24"),
                ],
                Some(
                    "peers 10.244.1.0/24 via 192.168.1.2 and 10.244.1.0/24 via 192.168.1.3 have overlapping pod CIDRs",
                ),
            ),
            (
                vec![
                    peer("10.244.2.9", "10.244.1.0/24"),
                    peer("192.168.1.3", "10.244.2.0/24"),
                ],
                Some(
                    "peer 10.244.1.0/24 via 10.244.2.9: the node address lies inside a pod CIDR (10.244.2.0/24)",
                ),
            ),
        ];
        for (peers, expected) in cases {
            let got = check(own(), &peers).err().map(|e| e.to_string());
            assert_eq!(got.as_deref(), expected, "{peers:?}");
        }
    }

    #[test]
    fn the_plan_touches_only_berth_routes_that_differ() {
        let other = Route {
            destination: "10.9.0.0/16".parse().unwrap(),
            gateway: Some("192.168.1.1".parse().unwrap()),
            interface: Some(2),
            protocol: 4,
        };
        let kept = route(&peer("192.168.1.2", "10.244.1.0/24"));
        let moved = route(&peer("192.168.1.3", "10.244.2.0/24"));
        let gone = route(&peer("192.168.1.4", "10.244.3.0/24"));
        let current = [other, kept, moved, gone];
        let desired = [
            peer("192.168.1.2", "10.244.1.0/24"),
            peer("192.168.1.5", "10.244.2.0/24"),
            peer("192.168.1.6", "10.244.4.0/24"),
        ];
        assert_eq!(
            plan(&current, &desired),
            RoutePlan {
                replace: vec![desired[1], desired[2]],
                delete: vec![gone],
            }
        );
        assert_eq!(plan(&current, &[]).delete, vec![kept, moved, gone]);
        assert_eq!(
            installed(&current),
            vec![
                peer("192.168.1.2", "10.244.1.0/24"),
                peer("192.168.1.3", "10.244.2.0/24"),
                peer("192.168.1.4", "10.244.3.0/24")
            ]
        );
    }
}
