//! hostPorts: a container port published on the node's addresses with DNAT.
//!
//! Each published port is one rule in the `hostports` chain of berth's nft table, carrying a
//! comment that says whose it is (`<pod-uid> tcp *:8080 10.244.0.5:80`), so the rules can be
//! listed back after an agent restart and removed per pod. Conflicts are decided here, purely.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A transport protocol a hostPort can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The name nft uses (`tcp`).
    pub fn nft_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    /// Kubernetes' spelling (`TCP`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}

impl FromStr for Protocol {
    type Err = String;

    /// Accepts Kubernetes' `TCP`/`UDP`/`SCTP` and nft's lowercase names.
    fn from_str(s: &str) -> Result<Protocol, String> {
        match s {
            "TCP" | "tcp" => Ok(Protocol::Tcp),
            "UDP" | "udp" => Ok(Protocol::Udp),
            "SCTP" | "sctp" => Ok(Protocol::Sctp),
            other => Err(format!(
                "unsupported protocol {other:?}: must be TCP, UDP or SCTP"
            )),
        }
    }
}

/// One container port published on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub protocol: Protocol,
    /// Only traffic to this node address is forwarded; every node address when `None`.
    pub host_ip: Option<Ipv4Addr>,
    /// The port on the node.
    pub host_port: u16,
    /// The port inside the pod.
    pub container_port: u16,
}

impl fmt::Display for HostPort {
    /// `8080/TCP`, or `192.0.2.2:8080/TCP` with a host IP.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(ip) => write!(f, "{ip}:{}/{}", self.host_port, self.protocol),
            None => write!(f, "{}/{}", self.host_port, self.protocol),
        }
    }
}

impl HostPort {
    /// True when both publish the same node port: same protocol and port, and host IPs that
    /// are equal or of which one is "every address".
    pub fn overlaps(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// A published port as installed: whose it is and where it leads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPortRule {
    /// The pod's uid.
    pub pod_uid: String,
    /// The pod's address (the DNAT target).
    pub pod_ip: Ipv4Addr,
    pub port: HostPort,
}

impl HostPortRule {
    /// The rule's comment, from which [`HostPortRule::from_comment`] reads it back.
    pub fn comment(&self) -> String {
        let host = self
            .port
            .host_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "*".into());
        format!(
            "{} {} {host}:{} {}:{}",
            self.pod_uid,
            self.port.protocol.nft_name(),
            self.port.host_port,
            self.pod_ip,
            self.port.container_port
        )
    }

    /// Reads a rule back from its comment; `None` for comments berth did not write.
    pub fn from_comment(comment: &str) -> Option<HostPortRule> {
        let mut words = comment.split(' ');
        let pod_uid = words.next()?.to_string();
        let protocol = words.next()?.parse().ok()?;
        let (host, host_port) = words.next()?.rsplit_once(':')?;
        let (pod_ip, container_port) = words.next()?.rsplit_once(':')?;
        if words.next().is_some() || pod_uid.is_empty() {
            return None;
        }
        let host_ip = match host {
            "*" => None,
            ip => Some(ip.parse().ok()?),
        };
        Some(HostPortRule {
            pod_uid,
            pod_ip: pod_ip.parse().ok()?,
            port: HostPort {
                protocol,
                host_ip,
                host_port: host_port.parse().ok()?,
                container_port: container_port.parse().ok()?,
            },
        })
    }
}

/// Who holds a node port that a pod asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortHolder {
    /// Another pod on this node (its uid).
    Pod(String),
    /// The same pod asks for it twice.
    SamePod,
    /// A process on the node outside berth's pods.
    HostProcess,
}

impl fmt::Display for PortHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortHolder::Pod(uid) => write!(f, "pod {uid}"),
            PortHolder::SamePod => f.write_str("another port of the same pod"),
            PortHolder::HostProcess => f.write_str("a process on the node"),
        }
    }
}

/// The first of `wanted` that collides with an installed rule of another pod or with another
/// of `wanted`, and with whom. Rules of `pod_uid` itself are ignored (they are replaced).
pub fn first_conflict<'a>(
    pod_uid: &str,
    wanted: &[HostPort],
    installed: impl IntoIterator<Item = &'a HostPortRule> + Clone,
) -> Option<(HostPort, PortHolder)> {
    for (i, port) in wanted.iter().enumerate() {
        if wanted[..i].iter().any(|earlier| earlier.overlaps(port)) {
            return Some((*port, PortHolder::SamePod));
        }
        if let Some(rule) = installed
            .clone()
            .into_iter()
            .find(|rule| rule.pod_uid != pod_uid && rule.port.overlaps(port))
        {
            return Some((*port, PortHolder::Pod(rule.pod_uid.clone())));
        }
    }
    None
}

/// Installed rules by nft handle.
pub type InstalledRules = BTreeMap<u64, HostPortRule>;

#[cfg(test)]
mod tests {
    use super::*;

    fn port(protocol: Protocol, host_ip: Option<[u8; 4]>, host_port: u16) -> HostPort {
        HostPort {
            protocol,
            host_ip: host_ip.map(Ipv4Addr::from),
            host_port,
            container_port: 80,
        }
    }

    #[test]
    fn ports_overlap_on_the_same_protocol_and_port_unless_both_name_different_addresses() {
        use Protocol::*;
        let cases = [
            (port(Tcp, None, 80), port(Tcp, None, 80), true),
            (port(Tcp, None, 80), port(Udp, None, 80), false),
            (port(Tcp, None, 80), port(Tcp, None, 81), false),
            (port(Tcp, Some([1, 2, 3, 4]), 80), port(Tcp, None, 80), true),
            (port(Tcp, None, 80), port(Tcp, Some([1, 2, 3, 4]), 80), true),
            (
                port(Tcp, Some([1, 2, 3, 4]), 80),
                port(Tcp, Some([1, 2, 3, 4]), 80),
                true,
            ),
            (
                port(Tcp, Some([1, 2, 3, 4]), 80),
                port(Tcp, Some([1, 2, 3, 5]), 80),
                false,
            ),
        ];
        for (a, b, overlap) in cases {
            assert_eq!(a.overlaps(&b), overlap, "{a} vs {b}");
        }
    }

    #[test]
    fn rules_read_back_from_their_comments() {
        let rules = [
            HostPortRule {
                pod_uid: "0b6e-uid".into(),
                pod_ip: Ipv4Addr::new(10, 244, 0, 5),
                port: port(Protocol::Tcp, None, 8080),
            },
            HostPortRule {
                pod_uid: "u".into(),
                pod_ip: Ipv4Addr::new(10, 244, 0, 6),
                port: port(Protocol::Udp, Some([192, 0, 2, 2]), 53),
            },
        ];
        assert_eq!(rules[0].comment(), "0b6e-uid tcp *:8080 10.244.0.5:80");
        for rule in rules {
            assert_eq!(HostPortRule::from_comment(&rule.comment()), Some(rule));
        }
        for foreign in [
            "",
            "hello",
            "u tcp *:x 1.2.3.4:5",
            "u icmp *:1 1.2.3.4:5",
            "u tcp *:1 1.2.3.4:5 extra",
        ] {
            assert_eq!(HostPortRule::from_comment(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn a_conflict_names_the_pod_holding_the_port() {
        let installed = [HostPortRule {
            pod_uid: "other".into(),
            pod_ip: Ipv4Addr::new(10, 244, 0, 5),
            port: port(Protocol::Tcp, None, 5432),
        }];
        let cases: [(&str, Vec<HostPort>, Option<(HostPort, PortHolder)>); 5] = [
            ("me", vec![port(Protocol::Tcp, None, 5433)], None),
            ("me", vec![port(Protocol::Udp, None, 5432)], None),
            (
                "me",
                vec![port(Protocol::Tcp, Some([192, 0, 2, 2]), 5432)],
                Some((
                    port(Protocol::Tcp, Some([192, 0, 2, 2]), 5432),
                    PortHolder::Pod("other".into()),
                )),
            ),
            ("other", vec![port(Protocol::Tcp, None, 5432)], None),
            (
                "me",
                vec![port(Protocol::Udp, None, 53), port(Protocol::Udp, None, 53)],
                Some((port(Protocol::Udp, None, 53), PortHolder::SamePod)),
            ),
        ];
        for (pod, wanted, expected) in cases {
            assert_eq!(
                first_conflict(pod, &wanted, &installed),
                expected,
                "{wanted:?}"
            );
        }
    }
}
