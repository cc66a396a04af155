//! Links (`ip link`): the node's bridge and the pods' veth pairs.

use std::os::fd::AsRawFd;

use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    BridgePortState, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};

use super::netlink::{CREATE_EXCL, NetlinkError, Rtnl};
use super::netns::Netns;

/// What berth needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// The link kind (`bridge`, `veth`...), when the kernel reports one.
    pub kind: Option<String>,
    /// Index of the bridge (or other controller) the link is a port of.
    pub controller: Option<u32>,
    /// The interface alias (`ip link set ... alias`).
    pub alias: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Hardware address.
    pub mac: Vec<u8>,
    /// For a bridge port: whether it forwards frames yet (the bridge enables a port shortly
    /// after its carrier comes up).
    pub forwarding: Option<bool>,
}

fn parse(message: LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        kind: None,
        controller: None,
        alias: None,
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        mac: Vec::new(),
        forwarding: None,
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Controller(index) => link.controller = Some(index),
            LinkAttribute::IfAlias(alias) => link.alias = Some(alias),
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Address(mac) => link.mac = mac,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                        LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                            link.forwarding = port.iter().find_map(|a| match a {
                                InfoBridgePort::State(state) => {
                                    Some(*state == BridgePortState::Forwarding)
                                }
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

fn message(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.attributes = attributes;
    message
}

fn up_message(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut message = message(index, attributes);
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message
}

/// The link named `name`, if there is one.
pub fn get(rtnl: &mut Rtnl, name: &str) -> Result<Option<Link>, NetlinkError> {
    let request = message(0, vec![LinkAttribute::IfName(name.to_string())]);
    match rtnl.get(RouteNetlinkMessage::GetLink(request)) {
        Ok(RouteNetlinkMessage::NewLink(reply)) => Ok(Some(parse(reply))),
        Ok(_) => Err(NetlinkError::Decode(
            "a link request was answered with something else".into(),
        )),
        Err(error) if error.errno() == Some(libc::ENODEV) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Every link in the namespace.
pub fn list(rtnl: &mut Rtnl) -> Result<Vec<Link>, NetlinkError> {
    Ok(rtnl
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(parse(link)),
            _ => None,
        })
        .collect())
}

/// Creates a bridge named `name`, up, with a fixed hardware address (else the bridge takes
/// the lowest address of its ports, and the gateway's address would change as pods come and
/// go) and MTU. Fails with `EEXIST` when a link of that name exists.
pub fn create_bridge(
    rtnl: &mut Rtnl,
    name: &str,
    mac: [u8; 6],
    mtu: u32,
) -> Result<(), NetlinkError> {
    let request = up_message(
        0,
        vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Address(mac.to_vec()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ],
    );
    rtnl.execute(RouteNetlinkMessage::NewLink(request), CREATE_EXCL)
}

/// Brings a link up, setting its MTU when given.
pub fn set_up(rtnl: &mut Rtnl, index: u32, mtu: Option<u32>) -> Result<(), NetlinkError> {
    let attributes: Vec<LinkAttribute> = mtu.map(LinkAttribute::Mtu).into_iter().collect();
    rtnl.execute(
        RouteNetlinkMessage::SetLink(up_message(index, attributes)),
        0,
    )
}

/// Brings the link named `name` up and sets its alias (shown by `ip link`; berth records the
/// pod there), in one request (the kernel finds the
/// link by name: no lookup of its index first).
pub fn set_up_by_name(rtnl: &mut Rtnl, name: &str, alias: &str) -> Result<(), NetlinkError> {
    let request = up_message(
        0,
        vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::IfAlias(alias.to_string()),
        ],
    );
    rtnl.execute(RouteNetlinkMessage::SetLink(request), 0)
}

/// Deletes the link named `name`; `false` when there was none.
pub fn delete(rtnl: &mut Rtnl, name: &str) -> Result<bool, NetlinkError> {
    let request = message(0, vec![LinkAttribute::IfName(name.to_string())]);
    match rtnl.execute(RouteNetlinkMessage::DelLink(request), 0) {
        Ok(()) => Ok(true),
        Err(error) if error.errno() == Some(libc::ENODEV) => Ok(false),
        Err(error) => Err(error),
    }
}

/// The pod end of a veth pair.
#[derive(Debug)]
pub struct VethPeer<'a> {
    /// Its name inside the pod (`eth0`).
    pub name: &'a str,
    /// The pod's network namespace: the peer is created directly in it.
    pub netns: &'a Netns,
    /// Its hardware address.
    pub mac: [u8; 6],
}

/// Creates a veth pair in one request: `host_name` in this namespace, a port of the bridge
/// `bridge_index`; the peer directly in the pod's namespace. Both ends get `mtu`; both are
/// left down (the kernel refuses to create a veth peer up, with `ENOTCONN`): bring each up
/// with [`set_up`] in its namespace. Fails with `EEXIST` when `host_name` exists.
pub fn create_veth(
    rtnl: &mut Rtnl,
    host_name: &str,
    bridge_index: u32,
    mtu: u32,
    peer: &VethPeer<'_>,
) -> Result<(), NetlinkError> {
    let peer_message = message(
        0,
        vec![
            LinkAttribute::IfName(peer.name.to_string()),
            LinkAttribute::Address(peer.mac.to_vec()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::NetNsFd(peer.netns.file().as_raw_fd()),
        ],
    );
    let request = message(
        0,
        vec![
            LinkAttribute::IfName(host_name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::Controller(bridge_index),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
            ]),
        ],
    );
    rtnl.execute(RouteNetlinkMessage::NewLink(request), CREATE_EXCL)
}
