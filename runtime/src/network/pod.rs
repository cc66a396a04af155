//! A pod's interface: a veth pair from the bridge into the pod's network namespace, the pod's
//! address and default route, a gratuitous ARP, and the pod's published ports.
//!
//! Everything a pod gets is found again from its uid alone: the host end is named
//! [`host_interface_name`] and carries the alias `berth pod <uid> <description>`, and each
//! published port's nft rule carries the uid in its comment. So detaching is idempotent and
//! works after an agent restart, and orphans are found by comparing uids with the live pods.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::Path;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use super::NetworkError;
use super::addresses::{self, Route};
use super::arp;
use super::host::{HostNetwork, mac_for, netlink_error, nft_error};
use super::hostports::{self, HostPort, HostPortRule, PortHolder, Protocol};
use super::links::{self, VethPeer};
use super::netlink::Rtnl;
use super::netns::{Netns, run_in};

/// The pod's interface name inside its namespace.
pub const POD_INTERFACE: &str = "eth0";
/// Host ends of pod veths start with this.
pub const HOST_INTERFACE_PREFIX: &str = "bv";
const ALIAS_PREFIX: &str = "berth pod ";
/// How long an attach waits for the bridge to forward from a new port before announcing the
/// pod's address anyway.
const FORWARDING_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// The host end's name for a pod: `bv` and 12 hex digits of the uid's SHA-256 (interface names
/// are limited to 15 bytes).
pub fn host_interface_name(pod_uid: &str) -> String {
    let digest = Sha256::digest(pod_uid.as_bytes());
    format!("{HOST_INTERFACE_PREFIX}{}", &hex::encode(digest)[..12])
}

/// The host end's alias: `berth pod <uid> <description>`.
pub fn alias(pod_uid: &str, description: &str) -> String {
    let alias = format!("{ALIAS_PREFIX}{pod_uid} {description}");
    // IFALIASZ is 256 including the terminating zero.
    alias.chars().take(255).collect()
}

/// The uid recorded in an alias written by [`alias`].
pub fn uid_from_alias(alias: &str) -> Option<&str> {
    alias
        .strip_prefix(ALIAS_PREFIX)?
        .split(' ')
        .next()
        .filter(|uid| !uid.is_empty())
}

/// What a pod needs from the node's network.
#[derive(Debug, Clone)]
pub struct PodAttachment<'a> {
    /// The pod's uid.
    pub pod_uid: &'a str,
    /// For people reading `ip link`: usually `<namespace>/<name>`.
    pub description: &'a str,
    /// The pod's network namespace file (the sandbox's).
    pub netns: &'a Path,
    /// The pod's address, from the pod CIDR.
    pub address: Ipv4Addr,
    /// Ports to publish on the node.
    pub host_ports: &'a [HostPort],
}

/// A pod's interface, as set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    /// The pod's address with the pod CIDR's prefix length.
    pub address: Ipv4Net,
    /// The pod's default gateway (the bridge).
    pub gateway: Ipv4Addr,
    /// The interface's name inside the pod.
    pub interface: String,
    /// The interface's hardware address.
    pub mac: [u8; 6],
    /// The MTU of both ends.
    pub mtu: u32,
    /// The host end's name.
    pub host_interface: String,
}

/// A pod link found on the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLink {
    /// The uid from the link's alias (`None` if the alias was never set: a setup interrupted
    /// between creating the pair and naming it).
    pub pod_uid: Option<String>,
    /// The host end's name.
    pub host_interface: String,
}

/// What orphan collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Host ends of pod veths removed.
    pub links: Vec<String>,
    /// Published-port rules removed.
    pub ports: Vec<HostPortRule>,
}

impl HostNetwork {
    /// Gives a pod its interface: a veth pair from the bridge into `attachment.netns`
    /// (`eth0` inside, with a hardware address derived from the pod's address), the address,
    /// a default route via the gateway, a gratuitous ARP, and the published ports.
    ///
    /// Idempotent: whatever a previous, interrupted attach of the same pod left is replaced.
    /// On failure nothing of this pod stays behind, and no other pod is touched (a port held
    /// by another pod or a host process is refused before anything changes).
    pub fn attach(&self, attachment: &PodAttachment<'_>) -> Result<PodInterface, NetworkError> {
        let pod = attachment.pod_uid;
        self.check_address(pod, attachment.address)?;
        let rules: Vec<HostPortRule> = attachment
            .host_ports
            .iter()
            .map(|port| HostPortRule {
                pod_uid: pod.to_string(),
                pod_ip: attachment.address,
                port: *port,
            })
            .collect();
        // Holding the ports lock from the conflict check until the rules are in makes the
        // check and the install one step for concurrent attaches.
        let mut ports = self.ports();
        self.check_ports(pod, attachment.host_ports, &ports)?;

        let netns = Netns::open(attachment.netns).map_err(|source| NetworkError::Netns {
            path: attachment.netns.to_path_buf(),
            source,
        })?;
        let result = self.attach_link(attachment, &netns).and_then(|interface| {
            self.replace_ports(pod, &rules, &mut ports)?;
            Ok(interface)
        });
        match result {
            Ok(interface) => Ok(interface),
            Err(error) => {
                drop(ports);
                if let Err(cleanup) = self.detach(pod) {
                    tracing::warn!(pod, error = %cleanup, "cleaning up after a failed attach");
                }
                Err(error)
            }
        }
    }

    fn check_address(&self, pod: &str, address: Ipv4Addr) -> Result<(), NetworkError> {
        let cidr = self.config.pod_cidr;
        let reason = if !cidr.contains(&address) {
            Some("it is outside the pod CIDR")
        } else if address == cidr.network() {
            Some("it is the network address")
        } else if address == cidr.broadcast() {
            Some("it is the broadcast address")
        } else if address == self.gateway() {
            Some("it is the gateway's")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(NetworkError::BadAddress {
                pod: pod.to_string(),
                address,
                cidr,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Refuses ports that other pods publish, that processes on the node listen on, or whose
    /// hostIP is not an address of the node, before anything is set up. [`HostNetwork::attach`]
    /// checks again, atomically with installing the rules.
    pub fn check_host_ports(&self, pod_uid: &str, wanted: &[HostPort]) -> Result<(), NetworkError> {
        let ports = self.ports();
        self.check_ports(pod_uid, wanted, &ports)
    }

    fn check_ports(
        &self,
        pod: &str,
        wanted: &[HostPort],
        installed: &hostports::InstalledRules,
    ) -> Result<(), NetworkError> {
        if let Some((port, holder)) = hostports::first_conflict(pod, wanted, installed.values()) {
            return Err(NetworkError::HostPortTaken {
                pod: pod.to_string(),
                port,
                holder,
            });
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let checked = run_in(self.netns.as_ref(), || {
            wanted
                .iter()
                .map(|port| (*port, probe_port(port)))
                .collect::<Vec<_>>()
        })
        .map_err(|source| NetworkError::Netns {
            path: self.config.netns.clone().unwrap_or_default(),
            source,
        })?;
        for (port, probe) in checked {
            match probe {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(libc::EADDRINUSE) => {
                    return Err(NetworkError::HostPortTaken {
                        pod: pod.to_string(),
                        port,
                        holder: PortHolder::HostProcess,
                    });
                }
                Err(error) if error.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {
                    return Err(NetworkError::HostIpNotLocal {
                        pod: pod.to_string(),
                        port,
                    });
                }
                Err(error) => {
                    tracing::warn!(pod, %port, %error, "could not check whether a host port is free");
                }
            }
        }
        Ok(())
    }

    fn attach_link(
        &self,
        attachment: &PodAttachment<'_>,
        netns: &Netns,
    ) -> Result<PodInterface, NetworkError> {
        let pod = attachment.pod_uid;
        let host_interface = host_interface_name(pod);
        let mac = mac_for(attachment.address);
        let peer = VethPeer {
            name: POD_INTERFACE,
            netns,
            mac,
        };
        {
            let mut rtnl = self.rtnl();
            let create = |rtnl: &mut Rtnl| {
                links::create_veth(rtnl, &host_interface, self.bridge_index, self.mtu, &peer)
            };
            match create(&mut rtnl) {
                Err(error) if error.errno() == Some(libc::EEXIST) => {
                    // Left by an interrupted attach of this pod: start over.
                    links::delete(&mut rtnl, &host_interface).map_err(netlink_error(format!(
                        "removing the stale {host_interface} of pod {pod}"
                    )))?;
                    create(&mut rtnl)
                }
                other => other,
            }
            .map_err(netlink_error(format!(
                "creating the veth pair {host_interface} / {POD_INTERFACE} of pod {pod} in {}",
                attachment.netns.display()
            )))?;
            let alias = alias(pod, attachment.description);
            links::set_up_by_name(&mut rtnl, &host_interface, &alias)
                .map_err(netlink_error(format!("bringing {host_interface} up")))?;
        }
        let address = Ipv4Net::new(attachment.address, self.config.pod_cidr.prefix_len())
            .expect("the prefix length comes from a valid network");
        let gateway = self.gateway();
        // One thread inside the pod's namespace does the pod's side, waits for the bridge and
        // announces the address: entering a namespace costs a thread.
        let announced = netns
            .run(|| -> Result<std::io::Result<()>, NetworkError> {
                let pod_side = configure_pod_side(address, gateway)?;
                // The announcement is only heard once the bridge forwards from the new port.
                self.wait_forwarding(&host_interface);
                Ok(arp::announce(pod_side, mac, address.addr()))
            })
            .map_err(|source| NetworkError::Netns {
                path: attachment.netns.to_path_buf(),
                source,
            })??;
        if let Err(error) = announced {
            // Neighbours then learn the address on their next ARP: slower, not broken.
            tracing::warn!(pod, %error, address = %address.addr(), "gratuitous ARP failed");
        }
        Ok(PodInterface {
            address,
            gateway,
            interface: POD_INTERFACE.into(),
            mac,
            mtu: self.mtu,
            host_interface,
        })
    }

    /// Replaces the published-port rules of `pod` with `rules`, in one nft transaction.
    fn replace_ports(
        &self,
        pod: &str,
        rules: &[HostPortRule],
        ports: &mut hostports::InstalledRules,
    ) -> Result<(), NetworkError> {
        let old: Vec<u64> = ports
            .iter()
            .filter(|(_, rule)| rule.pod_uid == pod)
            .map(|(handle, _)| *handle)
            .collect();
        if old.is_empty() && rules.is_empty() {
            return Ok(());
        }
        let mut commands = self.table.delete_rules(old.iter().copied());
        commands.extend(self.table.add_host_ports(rules));
        let mut nft = self.nft();
        let published = format!("publishing the host ports of pod {pod}");
        nft.apply(commands).map_err(nft_error(published.clone()))?;
        // What the chain now holds is the truth, for this pod and any other.
        match nft.host_ports(&self.table) {
            Ok(listed) => {
                *ports = listed;
                Ok(())
            }
            Err(error) => {
                // The old rules are gone for sure; the new ones are learnt at the next listing.
                for handle in old {
                    ports.remove(&handle);
                }
                Err(nft_error(published)(error))
            }
        }
    }

    /// Waits (briefly: at most [`FORWARDING_WAIT`]) until the bridge forwards frames from the
    /// pod's port. The kernel enables a port asynchronously once its carrier is up, typically
    /// within a fraction of a millisecond.
    fn wait_forwarding(&self, host_interface: &str) {
        let deadline = std::time::Instant::now() + FORWARDING_WAIT;
        loop {
            match links::get(&mut self.rtnl(), host_interface) {
                Ok(Some(link)) if link.forwarding != Some(false) => return,
                Ok(Some(_)) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                _ => {
                    tracing::debug!(
                        interface = host_interface,
                        "the bridge port is not forwarding yet"
                    );
                    return;
                }
            }
        }
    }

    /// Takes a pod's interface and published ports away. Idempotent: a pod with nothing left
    /// is fine. The pod's namespace itself is the sandbox's.
    pub fn detach(&self, pod_uid: &str) -> Result<(), NetworkError> {
        let host_interface = host_interface_name(pod_uid);
        links::delete(&mut self.rtnl(), &host_interface).map_err(netlink_error(format!(
            "removing {host_interface} of pod {pod_uid}"
        )))?;
        let mut ports = self.ports();
        self.replace_ports(pod_uid, &[], &mut ports)
    }

    /// The pod links on the bridge.
    pub fn pods(&self) -> Result<Vec<PodLink>, NetworkError> {
        let all = links::list(&mut self.rtnl()).map_err(netlink_error("listing links"))?;
        Ok(all
            .into_iter()
            .filter(|link| {
                link.controller == Some(self.bridge_index)
                    && link.name.starts_with(HOST_INTERFACE_PREFIX)
            })
            .map(|link| PodLink {
                pod_uid: link
                    .alias
                    .as_deref()
                    .and_then(uid_from_alias)
                    .map(str::to_string),
                host_interface: link.name,
            })
            .collect())
    }

    /// The published ports, as installed.
    pub fn host_ports(&self) -> Vec<HostPortRule> {
        self.ports().values().cloned().collect()
    }

    /// Removes the links and published ports of every pod not in `live` (pods whose network
    /// must stay). A link whose alias was never set is kept only if its name is that of a live
    /// pod.
    pub fn collect_orphans(&self, live: &BTreeSet<String>) -> Result<Collected, NetworkError> {
        let live_names: HashMap<String, &str> = live
            .iter()
            .map(|uid| (host_interface_name(uid), uid.as_str()))
            .collect();
        let mut collected = Collected::default();
        for link in self.pods()? {
            let keep = match &link.pod_uid {
                Some(uid) => live.contains(uid),
                None => live_names.contains_key(&link.host_interface),
            };
            if !keep {
                links::delete(&mut self.rtnl(), &link.host_interface).map_err(netlink_error(
                    format!("removing the orphaned {}", link.host_interface),
                ))?;
                collected.links.push(link.host_interface);
            }
        }
        let mut ports = self.ports();
        let orphaned: Vec<(u64, HostPortRule)> = ports
            .iter()
            .filter(|(_, rule)| !live.contains(&rule.pod_uid))
            .map(|(handle, rule)| (*handle, rule.clone()))
            .collect();
        if !orphaned.is_empty() {
            let commands = self
                .table
                .delete_rules(orphaned.iter().map(|(handle, _)| *handle));
            self.nft()
                .apply(commands)
                .map_err(nft_error("removing orphaned host ports"))?;
            for (handle, rule) in orphaned {
                ports.remove(&handle);
                collected.ports.push(rule);
            }
        }
        Ok(collected)
    }
}

/// Inside the pod's namespace: eth0 up, its address, the default route. Returns eth0's index.
fn configure_pod_side(address: Ipv4Net, gateway: Ipv4Addr) -> Result<u32, NetworkError> {
    let pod_side = |what: String| netlink_error(format!("{what} inside the pod"));
    let mut rtnl = Rtnl::open().map_err(pod_side("opening a netlink socket".into()))?;
    let link = links::get(&mut rtnl, POD_INTERFACE)
        .map_err(pod_side(format!("reading {POD_INTERFACE}")))?
        .ok_or_else(|| NetworkError::Netlink {
            action: format!("reading {POD_INTERFACE} inside the pod"),
            source: super::netlink::NetlinkError::Decode("the interface is missing".into()),
        })?;
    links::set_up(&mut rtnl, link.index, None)
        .map_err(pod_side(format!("bringing {POD_INTERFACE} up")))?;
    addresses::add(&mut rtnl, link.index, address)
        .map_err(pod_side(format!("adding {address} to {POD_INTERFACE}")))?;
    let default = Route {
        destination: Ipv4Net::default(),
        gateway: Some(gateway),
        interface: Some(link.index),
        protocol: 3, // RTPROT_BOOT, as `ip route add` does
    };
    addresses::replace_route(&mut rtnl, &default)
        .map_err(pod_side(format!("adding the default route via {gateway}")))?;
    Ok(link.index)
}

/// Tries to bind the port on the node (then lets go): `EADDRINUSE` means a process listens on
/// it. SCTP is not probed (the module may not be loaded).
fn probe_port(port: &HostPort) -> std::io::Result<()> {
    let address = SocketAddrV4::new(
        port.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
        port.host_port,
    );
    match port.protocol {
        Protocol::Tcp => TcpListener::bind(address).map(drop),
        Protocol::Udp => UdpSocket::bind(address).map(drop),
        Protocol::Sctp => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_interface_names_fit_the_kernel_limit_and_depend_only_on_the_uid() {
        let name = host_interface_name("3f1c1b6e-9a7e-4d5c-8f00-1a2b3c4d5e6f");
        assert_eq!(name.len(), 14);
        assert!(name.starts_with("bv"));
        assert_eq!(
            name,
            host_interface_name("3f1c1b6e-9a7e-4d5c-8f00-1a2b3c4d5e6f")
        );
        assert_ne!(name, host_interface_name("another-uid"));
    }

    #[test]
    fn the_alias_records_the_uid_and_is_read_back() {
        let text = alias("uid-1", "db/pg-0");
        assert_eq!(text, "berth pod uid-1 db/pg-0");
        assert_eq!(uid_from_alias(&text), Some("uid-1"));
        assert_eq!(uid_from_alias("berth pod "), None);
        assert_eq!(uid_from_alias("something else"), None);
        assert_eq!(alias("u", &"x".repeat(400)).len(), 255);
    }
}
