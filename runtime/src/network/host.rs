//! The node side of pod networking: the bridge and its gateway address, forwarding, berth's nft
//! table, and the routes to peers. [`HostNetwork::open`] sets it up (idempotently: an agent
//! restart finds and adopts what the previous run left); pods are attached in `pod.rs`.

use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use ipnet::Ipv4Net;

use super::NetworkError;
use super::addresses::{self, LinkAddress, Route};
use super::config::{FALLBACK_MTU, NodeNetworkConfig};
use super::hostports::InstalledRules;
use super::links::{self, Link};
use super::netlink::{NetlinkError, Rtnl};
use super::netns::{Netns, run_in};
use super::nft::{self, Nft, Table};
use super::peers::{self, PeerRoute, RTPROT_BERTH};

/// The node's pod network, set up. Cheap operations lock briefly; share it behind an `Arc`.
#[derive(Debug)]
pub struct HostNetwork {
    pub(super) config: NodeNetworkConfig,
    pub(super) netns: Option<Netns>,
    pub(super) rtnl: Mutex<Rtnl>,
    pub(super) bridge_index: u32,
    pub(super) mtu: u32,
    pub(super) table: Table,
    /// The nftables context in the node's namespace, kept open.
    pub(super) nft: Mutex<Nft>,
    /// Published ports by nft handle, as installed.
    pub(super) ports: Mutex<InstalledRules>,
}

pub(super) fn netlink_error(
    action: impl Into<String>,
) -> impl FnOnce(NetlinkError) -> NetworkError {
    let action = action.into();
    move |source| NetworkError::Netlink { action, source }
}

pub(super) fn nft_error(action: impl Into<String>) -> impl FnOnce(nft::NftError) -> NetworkError {
    let action = action.into();
    move |source| NetworkError::Nft { action, source }
}

/// A network of the host that the pod CIDR must not overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNet {
    /// The network.
    pub network: Ipv4Net,
    /// Where it is: an interface name, or "a route via X".
    pub place: String,
}

/// The host's networks (addresses' prefixes and routes) that the pod CIDR must stay clear of,
/// leaving out what belongs to berth itself: the bridge (by index) and berth's peer routes.
pub fn host_nets(
    links: &[Link],
    addresses: &[LinkAddress],
    routes: &[Route],
    bridge_index: Option<u32>,
) -> Vec<HostNet> {
    let name = |index: u32| {
        links
            .iter()
            .find(|link| link.index == index)
            .map(|link| link.name.clone())
            .unwrap_or_else(|| format!("interface {index}"))
    };
    let mut nets = Vec::new();
    for address in addresses {
        if Some(address.index) == bridge_index {
            continue;
        }
        nets.push(HostNet {
            network: address.address.trunc(),
            place: name(address.index),
        });
    }
    for route in routes {
        if route.destination.prefix_len() == 0
            || route.protocol == RTPROT_BERTH
            || (route.interface.is_some() && route.interface == bridge_index)
        {
            continue;
        }
        let place = match (route.gateway, route.interface) {
            (Some(gateway), _) => format!("a route via {gateway}"),
            (None, Some(index)) => name(index),
            (None, None) => "a route".into(),
        };
        nets.push(HostNet {
            network: route.destination,
            place,
        });
    }
    nets
}

/// The first host network overlapping `cidr`.
pub fn find_overlap(cidr: Ipv4Net, nets: &[HostNet]) -> Option<&HostNet> {
    nets.iter()
        .find(|net| net.network.contains(&cidr.network()) || cidr.contains(&net.network.network()))
}

/// The MTU of the interface carrying the default route (the lowest, if there are several).
pub fn uplink_mtu(links: &[Link], routes: &[Route], bridge_index: Option<u32>) -> Option<u32> {
    routes
        .iter()
        .filter(|route| route.destination.prefix_len() == 0)
        .filter_map(|route| route.interface)
        .filter(|index| Some(*index) != bridge_index)
        .filter_map(|index| links.iter().find(|link| link.index == index))
        .map(|link| link.mtu)
        .filter(|mtu| *mtu > 0)
        .min()
}

/// A fixed, locally administered hardware address derived from an IPv4 address
/// (`0a:58:<address>`), as OVN-Kubernetes does: a returning pod address comes back with the
/// same hardware address, so neighbours' entries stay right.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x0a, 0x58, a, b, c, d]
}

impl HostNetwork {
    /// Sets the node's pod network up, or adopts the one a previous run left: checks the pod
    /// CIDR against the host's networks, creates the bridge with the gateway address (removing
    /// other addresses from it), enables IPv4 forwarding, and rebuilds berth's nft table
    /// atomically, keeping the published ports of running pods and the peer routes.
    pub fn open(config: NodeNetworkConfig) -> Result<HostNetwork, NetworkError> {
        config.validate()?;
        let netns = match &config.netns {
            Some(path) => Some(Netns::open(path).map_err(|source| NetworkError::Netns {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let mut rtnl = run_in(netns.as_ref(), Rtnl::open)
            .map_err(|source| NetworkError::Netns {
                path: config.netns.clone().unwrap_or_default(),
                source,
            })?
            .map_err(netlink_error("opening a netlink socket"))?;

        let reading = "reading the host's interfaces, addresses and routes";
        let links = links::list(&mut rtnl).map_err(netlink_error(reading))?;
        let addresses = addresses::list(&mut rtnl).map_err(netlink_error(reading))?;
        let routes = addresses::list_routes(&mut rtnl).map_err(netlink_error(reading))?;
        let existing = links.iter().find(|link| link.name == config.bridge);
        if let Some(link) = existing
            && link.kind.as_deref() != Some("bridge")
        {
            return Err(NetworkError::NotABridge {
                name: config.bridge.clone(),
                kind: link.kind.clone().unwrap_or_else(|| "device".into()),
            });
        }
        let existing_index = existing.map(|link| link.index);
        let nets = host_nets(&links, &addresses, &routes, existing_index);
        if let Some(net) = find_overlap(config.pod_cidr, &nets) {
            return Err(NetworkError::CidrOverlap {
                cidr: config.pod_cidr,
                network: net.network,
                place: net.place.clone(),
            });
        }
        let mtu = config
            .mtu
            .or_else(|| uplink_mtu(&links, &routes, existing_index))
            .unwrap_or(FALLBACK_MTU);

        let gateway = Ipv4Net::new(config.gateway(), config.pod_cidr.prefix_len())
            .expect("the prefix length comes from a valid network");
        let bridge_index = setup_bridge(&mut rtnl, &config, existing_index, gateway, mtu)?;
        for stale in addresses
            .iter()
            .filter(|a| a.index == bridge_index && a.address != gateway)
        {
            tracing::warn!(bridge = %config.bridge, address = %stale.address, "removing an address berth did not configure from the pod bridge");
            addresses::delete(&mut rtnl, bridge_index, stale.address).map_err(netlink_error(
                format!("removing {} from {}", stale.address, config.bridge),
            ))?;
        }
        enable_forwarding(netns.as_ref())?;

        let table = Table {
            name: config.nft_table.clone(),
            pod_cidr: config.pod_cidr,
            bridge: config.bridge.clone(),
        };
        let mut nft = Nft::open(netns.as_ref()).map_err(nft_error("opening nftables"))?;
        let kept_ports = existing_ports(&mut nft, &table)?;
        let peer_cidrs: Vec<Ipv4Net> = peers::installed(&routes)
            .iter()
            .map(|p| p.pod_cidr)
            .collect();
        let kept: Vec<_> = kept_ports.into_values().collect();
        let building = format!("building nft table ip {}", table.name);
        nft.apply(table.replace(&peer_cidrs, &kept))
            .map_err(nft_error(building.clone()))?;
        let ports = nft.host_ports(&table).map_err(nft_error(building))?;
        tracing::info!(
            bridge = %config.bridge, pod_cidr = %config.pod_cidr, gateway = %gateway.addr(), mtu,
            table = %table.name, published_ports = ports.len(), "pod network ready"
        );
        Ok(HostNetwork {
            config,
            netns,
            rtnl: Mutex::new(rtnl),
            bridge_index,
            mtu,
            table,
            nft: Mutex::new(nft),
            ports: Mutex::new(ports),
        })
    }

    /// The configuration this network was opened with.
    pub fn config(&self) -> &NodeNetworkConfig {
        &self.config
    }

    /// The pods' gateway, held by the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.config.gateway()
    }

    /// The node's pod CIDR.
    pub fn pod_cidr(&self) -> Ipv4Net {
        self.config.pod_cidr
    }

    /// The pods' MTU.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    pub(super) fn rtnl(&self) -> MutexGuard<'_, Rtnl> {
        self.rtnl
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn nft(&self) -> MutexGuard<'_, Nft> {
        self.nft
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn ports(&self) -> MutexGuard<'_, InstalledRules> {
        self.ports
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes berth's routes lead exactly to `peers`' pod CIDRs via their node addresses
    /// (adding, replacing and removing only berth's own routes), and stops masquerading
    /// traffic to them. The set is checked first; a refused set changes nothing.
    pub fn set_peers(&self, peers: &[PeerRoute]) -> Result<(), NetworkError> {
        peers::check(self.config.pod_cidr, peers)?;
        {
            let mut rtnl = self.rtnl();
            let routes = addresses::list_routes(&mut rtnl)
                .map_err(netlink_error("reading the routing table"))?;
            let plan = peers::plan(&routes, peers);
            let mut applied: Vec<PeerRoute> = Vec::new();
            for peer in &plan.replace {
                if let Err(source) = addresses::replace_route(&mut rtnl, &peers::route(peer)) {
                    // Put back what this call changed, so a refused set changes nothing.
                    for done in &applied {
                        let previous = routes
                            .iter()
                            .find(|r| r.protocol == RTPROT_BERTH && r.destination == done.pod_cidr);
                        let undone = match previous {
                            Some(previous) => addresses::replace_route(&mut rtnl, previous),
                            None => addresses::delete_route(&mut rtnl, &peers::route(done)),
                        };
                        if let Err(error) = undone {
                            tracing::warn!(peer = %done, %error, "could not undo a peer route");
                        }
                    }
                    return Err(if source.errno() == Some(libc::ENETUNREACH) {
                        NetworkError::PeerUnreachable { peer: *peer }
                    } else {
                        NetworkError::Netlink {
                            action: format!("adding the route {peer}"),
                            source,
                        }
                    });
                }
                applied.push(*peer);
            }
            for route in &plan.delete {
                addresses::delete_route(&mut rtnl, route).map_err(netlink_error(format!(
                    "removing the route to {}",
                    route.destination
                )))?;
            }
            if !plan.replace.is_empty() || !plan.delete.is_empty() {
                tracing::info!(
                    added = plan.replace.len(),
                    removed = plan.delete.len(),
                    "peer routes updated"
                );
            }
        }
        let cidrs: Vec<Ipv4Net> = peers.iter().map(|p| p.pod_cidr).collect();
        self.nft()
            .apply(self.table.set_pod_networks(&cidrs))
            .map_err(nft_error("updating the pod networks not masqueraded"))?;
        Ok(())
    }

    /// The peers berth's routes lead to.
    pub fn peers(&self) -> Result<Vec<PeerRoute>, NetworkError> {
        let routes = addresses::list_routes(&mut self.rtnl())
            .map_err(netlink_error("reading the routing table"))?;
        Ok(peers::installed(&routes))
    }

    /// Removes everything berth set up on this node: pod links on the bridge, the bridge, the
    /// peer routes and the nft table. (Forwarding stays enabled.) For uninstalling and tests.
    pub fn remove(self) -> Result<(), NetworkError> {
        for pod in self.pods()? {
            links::delete(&mut self.rtnl(), &pod.host_interface)
                .map_err(netlink_error(format!("removing {}", pod.host_interface)))?;
        }
        self.set_peers(&[])?;
        links::delete(&mut self.rtnl(), &self.config.bridge).map_err(netlink_error(format!(
            "removing the bridge {}",
            self.config.bridge
        )))?;
        self.nft()
            .apply(self.table.delete())
            .map_err(nft_error(format!(
                "removing nft table ip {}",
                self.table.name
            )))?;
        Ok(())
    }
}

/// Creates the bridge (or adopts it), gives it the gateway address and brings it up; returns
/// its index.
fn setup_bridge(
    rtnl: &mut Rtnl,
    config: &NodeNetworkConfig,
    existing: Option<u32>,
    gateway: Ipv4Net,
    mtu: u32,
) -> Result<u32, NetworkError> {
    let name = &config.bridge;
    if existing.is_none() {
        match links::create_bridge(rtnl, name, mac_for(gateway.addr()), mtu) {
            Ok(()) => {}
            // Another agent raced us to it: adopt it below.
            Err(error) if error.errno() == Some(libc::EEXIST) => {}
            Err(source) => {
                return Err(NetworkError::Netlink {
                    action: format!("creating the bridge {name}"),
                    source,
                });
            }
        }
    }
    let bridge = links::get(rtnl, name)
        .map_err(netlink_error(format!("reading the bridge {name}")))?
        .ok_or_else(|| NetworkError::Netlink {
            action: format!("reading the bridge {name}"),
            source: NetlinkError::Decode("the bridge vanished after it was created".into()),
        })?;
    links::set_up(rtnl, bridge.index, Some(mtu))
        .map_err(netlink_error(format!("bringing the bridge {name} up")))?;
    addresses::add(rtnl, bridge.index, gateway).map_err(netlink_error(format!(
        "adding {gateway} to the bridge {name}"
    )))?;
    Ok(bridge.index)
}

/// Sets `net.ipv4.ip_forward` to 1 in `netns`, if it is not already.
fn enable_forwarding(netns: Option<&Netns>) -> Result<(), NetworkError> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    let result = run_in(netns, || -> std::io::Result<bool> {
        if std::fs::read_to_string(PATH)?.trim() == "1" {
            return Ok(false);
        }
        std::fs::write(PATH, "1")?;
        Ok(true)
    })
    .and_then(|inner| inner);
    match result {
        Ok(changed) => {
            if changed {
                tracing::info!("enabled IPv4 forwarding (net.ipv4.ip_forward=1) for pod traffic");
            }
            Ok(())
        }
        Err(source) => Err(NetworkError::Sysctl {
            path: PATH.into(),
            source,
        }),
    }
}

/// The published-port rules of berth's table, if the table exists.
fn existing_ports(nft: &mut Nft, table: &Table) -> Result<InstalledRules, NetworkError> {
    let tables = nft
        .list("list tables")
        .map_err(nft_error("listing nft tables"))?;
    if !table.listed_in(&tables) {
        return Ok(InstalledRules::new());
    }
    let listing = nft
        .list(&format!("list table ip {}", table.name))
        .map_err(nft_error(format!("listing nft table ip {}", table.name)))?;
    let mut rules = nft::host_port_rules(&listing, &table.name);
    // Ports leading outside the (possibly changed) pod CIDR cannot belong to a pod any more.
    rules.retain(|_, rule| table.pod_cidr.contains(&rule.pod_ip));
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, mtu: u32) -> Link {
        Link {
            index,
            name: name.into(),
            kind: None,
            controller: None,
            alias: None,
            mtu,
            up: true,
            mac: vec![],
            forwarding: None,
        }
    }

    fn route(dest: &str, gateway: Option<&str>, interface: Option<u32>, protocol: u8) -> Route {
        Route {
            destination: dest.parse().unwrap(),
            gateway: gateway.map(|g| g.parse().unwrap()),
            interface,
            protocol,
        }
    }

    #[test]
    fn the_pod_cidr_must_not_overlap_host_addresses_or_routes_but_may_reuse_its_own() {
        let links = [
            link(1, "lo", 65536),
            link(2, "eth0", 1500),
            link(3, "berth0", 1500),
        ];
        let addresses = [
            LinkAddress {
                index: 1,
                address: "127.0.0.1/8".parse().unwrap(),
            },
            LinkAddress {
                index: 2,
                address: "192.0.2.2/24".parse().unwrap(),
            },
            LinkAddress {
                index: 3,
                address: "10.244.0.1/24".parse().unwrap(),
            },
        ];
        let routes = [
            route("0.0.0.0/0", Some("192.0.2.1"), Some(2), 3),
            route("10.8.0.0/16", Some("192.0.2.1"), Some(2), 4),
            route("10.244.0.0/24", None, Some(3), 2),
            route("10.244.1.0/24", Some("192.0.2.3"), Some(2), RTPROT_BERTH),
        ];
        let nets = host_nets(&links, &addresses, &routes, Some(3));
        let overlap = |cidr: &str| {
            find_overlap(cidr.parse().unwrap(), &nets).map(|n| format!("{} {}", n.network, n.place))
        };
        assert_eq!(overlap("10.244.0.0/24"), None, "berth's own bridge");
        assert_eq!(overlap("10.244.1.0/24"), None, "berth's own peer route");
        assert_eq!(
            overlap("192.0.2.0/25").as_deref(),
            Some("192.0.2.0/24 eth0")
        );
        assert_eq!(
            overlap("192.0.0.0/16").as_deref(),
            Some("192.0.2.0/24 eth0")
        );
        assert_eq!(
            overlap("10.8.4.0/24").as_deref(),
            Some("10.8.0.0/16 a route via 192.0.2.1")
        );
        assert_eq!(overlap("127.0.0.0/24").as_deref(), Some("127.0.0.0/8 lo"));
        assert_eq!(overlap("10.245.0.0/24"), None);
    }

    #[test]
    fn the_mtu_comes_from_the_default_routes_interface() {
        let links = [
            link(2, "eth0", 1450),
            link(3, "wg0", 1420),
            link(4, "berth0", 9000),
        ];
        let routes = [
            route("0.0.0.0/0", Some("192.0.2.1"), Some(2), 3),
            route("10.0.0.0/8", None, Some(3), 2),
        ];
        assert_eq!(uplink_mtu(&links, &routes, Some(4)), Some(1450));
        assert_eq!(uplink_mtu(&links, &routes[1..], Some(4)), None);
    }

    #[test]
    fn hardware_addresses_are_derived_from_the_ip() {
        assert_eq!(
            mac_for(Ipv4Addr::new(10, 244, 0, 5)),
            [0x0a, 0x58, 10, 244, 0, 5]
        );
    }
}
