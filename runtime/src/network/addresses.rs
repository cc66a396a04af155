//! IPv4 addresses (`ip -4 addr`) and routes (`ip -4 route`, main table).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::netlink::{CREATE_EXCL, CREATE_REPLACE, NetlinkError, Rtnl};

/// An IPv4 address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAddress {
    /// The link's index.
    pub index: u32,
    /// The address and its prefix length.
    pub address: Ipv4Net,
}

fn address_message(index: u32, address: Ipv4Net) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    message.header.prefix_len = address.prefix_len();
    message.header.scope = AddressScope::Universe;
    message.header.index = index;
    let ip = IpAddr::V4(address.addr());
    message.attributes = vec![AddressAttribute::Local(ip), AddressAttribute::Address(ip)];
    if address.prefix_len() < 31 {
        message
            .attributes
            .push(AddressAttribute::Broadcast(address.broadcast()));
    }
    message
}

/// Adds `address` to link `index`; an address that is already there is fine.
pub fn add(rtnl: &mut Rtnl, index: u32, address: Ipv4Net) -> Result<(), NetlinkError> {
    let request = address_message(index, address);
    match rtnl.execute(RouteNetlinkMessage::NewAddress(request), CREATE_EXCL) {
        Err(error) if error.errno() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// Removes `address` from link `index`; an address that is not there is fine.
pub fn delete(rtnl: &mut Rtnl, index: u32, address: Ipv4Net) -> Result<(), NetlinkError> {
    let request = address_message(index, address);
    match rtnl.execute(RouteNetlinkMessage::DelAddress(request), 0) {
        Err(error) if error.errno() == Some(libc::EADDRNOTAVAIL) => Ok(()),
        other => other,
    }
}

/// Every IPv4 address in the namespace.
pub fn list(rtnl: &mut Rtnl) -> Result<Vec<LinkAddress>, NetlinkError> {
    let mut request = AddressMessage::default();
    request.header.family = AddressFamily::Inet;
    let mut addresses = Vec::new();
    for reply in rtnl.dump(RouteNetlinkMessage::GetAddress(request))? {
        let RouteNetlinkMessage::NewAddress(message) = reply else {
            continue;
        };
        if message.header.family != AddressFamily::Inet {
            continue;
        }
        let local = message.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let address = local.or_else(|| {
            message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            })
        });
        if let Some(ip) = address
            && let Ok(address) = Ipv4Net::new(ip, message.header.prefix_len)
        {
            addresses.push(LinkAddress {
                index: message.header.index,
                address,
            });
        }
    }
    Ok(addresses)
}

/// An IPv4 unicast route in the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Destination network (`0.0.0.0/0` for the default route).
    pub destination: Ipv4Net,
    /// Next hop, for routes through a gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub interface: Option<u32>,
    /// Who installed the route (`RTPROT_*`; see [`super::peers::RTPROT_BERTH`]).
    pub protocol: u8,
}

fn route_message(route: &Route) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = AddressFamily::Inet;
    message.header.destination_prefix_length = route.destination.prefix_len();
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::from(route.protocol);
    message.header.kind = RouteType::Unicast;
    message.header.scope = if route.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    if route.destination.prefix_len() > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(
                route.destination.network(),
            )));
    }
    if let Some(gateway) = route.gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
    }
    if let Some(index) = route.interface {
        message.attributes.push(RouteAttribute::Oif(index));
    }
    message
}

/// Adds `route`, replacing a route to the same destination.
pub fn replace_route(rtnl: &mut Rtnl, route: &Route) -> Result<(), NetlinkError> {
    rtnl.execute(
        RouteNetlinkMessage::NewRoute(route_message(route)),
        CREATE_REPLACE,
    )
}

/// Deletes `route`; a route that is not there is fine.
pub fn delete_route(rtnl: &mut Rtnl, route: &Route) -> Result<(), NetlinkError> {
    match rtnl.execute(RouteNetlinkMessage::DelRoute(route_message(route)), 0) {
        Err(error) if error.errno() == Some(libc::ESRCH) => Ok(()),
        other => other,
    }
}

/// The IPv4 unicast routes of the main table.
pub fn list_routes(rtnl: &mut Rtnl) -> Result<Vec<Route>, NetlinkError> {
    let mut request = RouteMessage::default();
    request.header.address_family = AddressFamily::Inet;
    let mut routes = Vec::new();
    for reply in rtnl.dump(RouteNetlinkMessage::GetRoute(request))? {
        let RouteNetlinkMessage::NewRoute(message) = reply else {
            continue;
        };
        let header = &message.header;
        if header.address_family != AddressFamily::Inet || header.kind != RouteType::Unicast {
            continue;
        }
        let mut table = u32::from(header.table);
        let mut destination = Ipv4Addr::UNSPECIFIED;
        let mut gateway = None;
        let mut interface = None;
        for attribute in &message.attributes {
            match attribute {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = *ip,
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                RouteAttribute::Oif(index) => interface = Some(*index),
                _ => {}
            }
        }
        if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
            continue;
        }
        let Ok(destination) = Ipv4Net::new(destination, header.destination_prefix_length) else {
            continue;
        };
        routes.push(Route {
            destination,
            gateway,
            interface,
            protocol: u8::from(header.protocol),
        });
    }
    Ok(routes)
}
