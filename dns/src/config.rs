//! What the authority serves: the cluster domain, the pod networks' reverse zones, the TTL.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::name::{Name, NameError};

/// Configuration of the authoritative zones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The cluster domain (kubelet's `--cluster-domain`), default `cluster.local`.
    pub cluster_domain: String,
    /// The pod networks. Their reverse zones (and only those) are served; PTR queries for
    /// other addresses are forwarded.
    pub pod_networks: Vec<IpNet>,
    /// TTL of every record, and of negative answers (SOA minimum). Default 5 s, as CoreDNS.
    pub ttl: u32,
    /// Addresses published as `ns.dns.<zone>` (the node's DNS addresses), the target of
    /// the zone's NS record. May be empty.
    pub nameserver_ips: Vec<IpAddr>,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            pod_networks: Vec::new(),
            ttl: 5,
            nameserver_ips: Vec::new(),
        }
    }
}

/// Errors in a [`ZoneConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cluster domain is not a valid domain name.
    #[error("cluster domain {domain:?} is not a valid domain name")]
    ClusterDomain {
        /// The configured domain.
        domain: String,
        /// Why it is invalid.
        #[source]
        source: NameError,
    },
    /// The cluster domain is the root.
    #[error("cluster domain must not be the root")]
    RootClusterDomain,
    /// A pod network is so wide that its reverse zones would swallow foreign addresses.
    #[error("pod network {network} is wider than /{minimum}: refusing to serve its reverse zone")]
    PodNetworkTooWide {
        /// The configured network.
        network: IpNet,
        /// The narrowest prefix accepted for its family.
        minimum: u8,
    },
}

/// The validated, derived form of a [`ZoneConfig`].
#[derive(Clone, Debug)]
pub(crate) struct Zones {
    pub(crate) cluster: Name,
    pub(crate) reverse: Vec<Name>,
    pub(crate) pod_networks: Vec<IpNet>,
    pub(crate) ttl: u32,
    pub(crate) nameserver_ips: Vec<IpAddr>,
}

impl Zones {
    pub(crate) fn new(config: &ZoneConfig) -> Result<Self, ConfigError> {
        let cluster = Name::from_dotted(&config.cluster_domain).map_err(|source| {
            ConfigError::ClusterDomain {
                domain: config.cluster_domain.clone(),
                source,
            }
        })?;
        if cluster.wire().len() <= 1 {
            return Err(ConfigError::RootClusterDomain);
        }
        let mut reverse = Vec::new();
        let mut pod_networks = Vec::new();
        for network in &config.pod_networks {
            let network = network.trunc();
            for zone in reverse_zones(network)? {
                if !reverse.contains(&zone) {
                    reverse.push(zone);
                }
            }
            pod_networks.push(network);
        }
        Ok(Self {
            cluster,
            reverse,
            pod_networks,
            ttl: config.ttl,
            nameserver_ips: config.nameserver_ips.clone(),
        })
    }

    /// Every apex, the cluster zone first.
    pub(crate) fn apexes(&self) -> impl Iterator<Item = &Name> {
        std::iter::once(&self.cluster).chain(self.reverse.iter())
    }

    pub(crate) fn in_pod_network(&self, ip: IpAddr) -> bool {
        self.pod_networks.iter().any(|net| net.contains(&ip))
    }
}

/// The reverse zones exactly covering a network: the network rounded to the next octet
/// (IPv4) or nibble (IPv6) boundary, one zone per resulting subnet.
pub(crate) fn reverse_zones(network: IpNet) -> Result<Vec<Name>, ConfigError> {
    let (step, minimum) = match network {
        IpNet::V4(_) => (8u8, 8u8),
        IpNet::V6(_) => (4u8, 16u8),
    };
    let prefix = network.prefix_len();
    if prefix < minimum {
        return Err(ConfigError::PodNetworkTooWide { network, minimum });
    }
    let rounded = prefix.div_ceil(step) * step;
    let subnets = network
        .subnets(rounded)
        .map_err(|_| ConfigError::PodNetworkTooWide { network, minimum })?;
    Ok(subnets
        .map(|subnet| {
            let full = Name::reverse(subnet.network());
            // Keep only the labels of the significant octets/nibbles.
            let host_labels = match subnet {
                IpNet::V4(_) => usize::from((32 - rounded) / 8),
                IpNet::V6(_) => usize::from((128 - rounded) / 4),
            };
            let mut wire = full.wire();
            for _ in 0..host_labels {
                wire = crate::name::parent(wire).unwrap_or(wire);
            }
            Name::from_wire_unchecked(wire)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_zones_round_to_octet_and_nibble_boundaries() {
        let cases: &[(&str, &[&str])] = &[
            ("10.244.0.0/16", &["244.10.in-addr.arpa."]),
            ("10.244.1.0/24", &["1.244.10.in-addr.arpa."]),
            (
                "10.244.4.0/23",
                &["4.244.10.in-addr.arpa.", "5.244.10.in-addr.arpa."],
            ),
            ("10.0.0.0/8", &["10.in-addr.arpa."]),
            ("fd00:10::/32", &["0.1.0.0.0.0.d.f.ip6.arpa."]),
        ];
        for (network, want) in cases {
            let zones = reverse_zones(network.parse().unwrap()).unwrap();
            let got: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
            assert_eq!(got, *want, "{network}");
        }
        assert_eq!(
            reverse_zones("10.244.0.0/20".parse().unwrap())
                .unwrap()
                .len(),
            16
        );
    }

    #[test]
    fn networks_wider_than_a_slash_8_are_refused() {
        for network in ["10.0.0.0/7", "0.0.0.0/0", "fd00::/8"] {
            let err = reverse_zones(network.parse().unwrap()).unwrap_err();
            assert!(
                matches!(err, ConfigError::PodNetworkTooWide { .. }),
                "{network}"
            );
        }
    }

    #[test]
    fn a_bad_cluster_domain_names_the_domain() {
        let config = ZoneConfig {
            cluster_domain: "cluster..local".into(),
            ..ZoneConfig::default()
        };
        let err = Zones::new(&config).unwrap_err();
        assert!(err.to_string().contains("cluster..local"), "{err}");
    }
}
