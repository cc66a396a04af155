//! Pod CIDRs: each host gets a /24 of the cluster CIDR. Pure.

use ipnet::Ipv4Net;

/// Why no pod CIDR could be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Every /24 of the cluster CIDR is taken.
    #[error("the cluster CIDR {cluster} has no free /{prefix} left for another node")]
    Exhausted {
        /// The cluster CIDR.
        cluster: Ipv4Net,
        /// The per-node prefix length.
        prefix: u8,
    },
    /// The cluster CIDR is smaller than one node's network.
    #[error("the cluster CIDR {cluster} is smaller than a /{prefix} node network")]
    TooSmall {
        /// The cluster CIDR.
        cluster: Ipv4Net,
        /// The per-node prefix length.
        prefix: u8,
    },
}

/// The per-node prefix length.
pub const NODE_PREFIX: u8 = 24;

/// The first /24 of `cluster` that overlaps none of `used`.
pub fn allocate(cluster: Ipv4Net, used: &[Ipv4Net]) -> Result<Ipv4Net, CidrError> {
    let subnets = cluster
        .subnets(NODE_PREFIX)
        .map_err(|_| CidrError::TooSmall {
            cluster,
            prefix: NODE_PREFIX,
        })?;
    subnets
        .into_iter()
        .find(|candidate| {
            !used
                .iter()
                .any(|u| u.contains(&candidate.network()) || candidate.contains(&u.network()))
        })
        .ok_or(CidrError::Exhausted {
            cluster,
            prefix: NODE_PREFIX,
        })
}

/// The first host's pod CIDR: the one it was given if it lies inside the cluster CIDR,
/// otherwise the first /24 of the cluster CIDR.
pub fn first_host(cluster: Ipv4Net, given: Option<Ipv4Net>) -> Result<Ipv4Net, CidrError> {
    match given {
        Some(given)
            if cluster.contains(&given.network()) && cluster.contains(&given.broadcast()) =>
        {
            Ok(given)
        }
        _ => allocate(cluster, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn nodes_get_the_first_free_slash_24() {
        let cluster = net("10.244.0.0/16");
        let table: &[(&[&str], Result<&str, ()>)] = &[
            (&[], Ok("10.244.0.0/24")),
            (&["10.244.0.0/24"], Ok("10.244.1.0/24")),
            (&["10.244.0.0/24", "10.244.2.0/24"], Ok("10.244.1.0/24")),
            (&["10.244.0.0/23"], Ok("10.244.2.0/24")),
            (&["10.244.0.0/16"], Err(())),
        ];
        for (used, want) in table {
            let used: Vec<Ipv4Net> = used.iter().map(|s| net(s)).collect();
            let got = allocate(cluster, &used).map_err(drop);
            assert_eq!(got, want.map(net), "{used:?}");
        }
        assert!(matches!(
            allocate(net("10.0.0.0/25"), &[]),
            Err(CidrError::TooSmall { .. })
        ));
    }

    #[test]
    fn the_first_host_keeps_its_pod_cidr_only_inside_the_cluster_cidr() {
        let cluster = net("10.244.0.0/16");
        assert_eq!(
            first_host(cluster, Some(net("10.244.7.0/24"))),
            Ok(net("10.244.7.0/24"))
        );
        assert_eq!(
            first_host(cluster, Some(net("192.168.5.0/24"))),
            Ok(net("10.244.0.0/24"))
        );
        assert_eq!(first_host(cluster, None), Ok(net("10.244.0.0/24")));
    }
}
