//! A small synchronous rtnetlink client over `netlink-sys` and `netlink-packet-route`.
//!
//! One socket per network namespace: a netlink socket talks to the namespace it was created in
//! for its whole life, whichever thread uses it later (see [`super::netns::Netns::run`]).
//! Requests are strictly one at a time (`&mut self`), so replies are matched by sequence
//! number alone. The kernel's extended ack message ("Nexthop has invalid gateway") is kept in
//! errors, since it is often the only useful explanation.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// `NLMSGERR_ATTR_MSG`: the extended ack's human-readable message.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// Size of a netlink message header.
const NLMSG_HDRLEN: usize = 16;
/// Receive buffer: dumps arrive in datagrams of up to about a page each, single replies are
/// small; 64 KiB holds any datagram the kernel sends for the requests made here.
const RECV_BUFFER: usize = 64 * 1024;

/// A netlink request the kernel refused, or a socket failure.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel answered with an error code.
    #[error("the kernel refused: {}{}", .errno, .message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Refused {
        /// The error code as an io::Error (for `kind()` and `raw_os_error()`).
        errno: io::Error,
        /// The kernel's extended ack message, when it sent one.
        message: Option<String>,
    },
    /// The netlink socket itself failed.
    #[error("netlink socket")]
    Socket(#[source] io::Error),
    /// The kernel sent something that does not parse.
    #[error("unreadable netlink reply: {0}")]
    Decode(String),
}

impl NetlinkError {
    /// The errno of a refusal (`None` for socket or decode failures).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Refused { errno, .. } => errno.raw_os_error(),
            _ => None,
        }
    }
}

/// Flags for a request that creates an object and must fail if it exists.
pub const CREATE_EXCL: u16 = NLM_F_CREATE | NLM_F_EXCL;
/// Flags for a request that creates an object or replaces an existing one.
pub const CREATE_REPLACE: u16 = NLM_F_CREATE | netlink_packet_core::NLM_F_REPLACE;

/// An rtnetlink socket bound to the network namespace it was opened in.
pub struct Rtnl {
    socket: Socket,
    sequence: u32,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtnl")
            .field("sequence", &self.sequence)
            .finish()
    }
}

impl Rtnl {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Rtnl, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        // Best effort: older kernels lack these options; errors then carry only the errno.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Rtnl {
            socket,
            sequence: 0,
            buffer: vec![0; RECV_BUFFER],
        })
    }

    /// Sends a request that changes something and waits for the kernel's acknowledgement.
    /// `flags` are added to `NLM_F_REQUEST | NLM_F_ACK` (e.g. [`CREATE_EXCL`]).
    pub fn execute(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(), NetlinkError> {
        let sequence = self.send(message, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        loop {
            for reply in self.receive(sequence)? {
                match reply {
                    NetlinkPayload::Error(error) => return check(error),
                    NetlinkPayload::Done(_) => return Ok(()),
                    _ => {}
                }
            }
        }
    }

    /// Sends a dump request and collects every object the kernel returns.
    pub fn dump(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        let sequence = self.send(message, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut objects = Vec::new();
        loop {
            for reply in self.receive(sequence)? {
                match reply {
                    NetlinkPayload::InnerMessage(object) => objects.push(object),
                    NetlinkPayload::Done(_) => return Ok(objects),
                    NetlinkPayload::Error(error) => {
                        check(error)?;
                        return Ok(objects);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sends a request for one object (e.g. a link by name) and returns the reply.
    pub fn get(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> Result<RouteNetlinkMessage, NetlinkError> {
        let sequence = self.send(message, NLM_F_REQUEST)?;
        loop {
            for reply in self.receive(sequence)? {
                match reply {
                    NetlinkPayload::InnerMessage(object) => return Ok(object),
                    NetlinkPayload::Error(error) => {
                        check(error)?;
                        return Err(NetlinkError::Decode(
                            "the kernel acknowledged a get request without an answer".into(),
                        ));
                    }
                    _ => {}
                }
            }
        }
    }

    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> Result<u32, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        self.socket.send(&bytes, 0).map_err(NetlinkError::Socket)?;
        Ok(self.sequence)
    }

    /// Receives one datagram and returns the payloads answering `sequence`.
    fn receive(
        &mut self,
        sequence: u32,
    ) -> Result<Vec<NetlinkPayload<RouteNetlinkMessage>>, NetlinkError> {
        let mut payloads = Vec::new();
        let length = loop {
            let mut target = &mut self.buffer[..];
            match self.socket.recv(&mut target, 0) {
                Ok(length) => break length.min(RECV_BUFFER),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(NetlinkError::Socket(error)),
            }
        };
        let mut offset = 0;
        while offset + NLMSG_HDRLEN <= length {
            let bytes = &self.buffer[offset..length];
            let declared = u32::from_ne_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
            if declared < NLMSG_HDRLEN || declared > bytes.len() {
                return Err(NetlinkError::Decode(format!(
                    "message length {declared} at offset {offset} of a {length}-byte datagram"
                )));
            }
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[..declared])
                .map_err(|error| NetlinkError::Decode(error.to_string()))?;
            if message.header.sequence_number == sequence {
                payloads.push(message.payload);
            }
            offset += (declared + 3) & !3;
        }
        Ok(payloads)
    }
}

/// Turns an `NLMSG_ERROR` reply into `Ok` (an ack) or the refusal with its extended message.
fn check(error: netlink_packet_core::ErrorMessage) -> Result<(), NetlinkError> {
    if error.code.is_none() {
        return Ok(());
    }
    Err(NetlinkError::Refused {
        errno: error.to_io(),
        message: extended_ack_message(&error.header),
    })
}

/// Reads `NLMSGERR_ATTR_MSG` from an error's payload: the request's header (capped, as asked
/// with `NETLINK_CAP_ACK`, which every kernel since 4.3 honours) followed by attributes.
fn extended_ack_message(payload: &[u8]) -> Option<String> {
    let mut offset = NLMSG_HDRLEN;
    while offset + 4 <= payload.len() {
        let len = u16::from_ne_bytes([payload[offset], payload[offset + 1]]) as usize;
        let kind = u16::from_ne_bytes([payload[offset + 2], payload[offset + 3]]) & 0x3fff;
        if len < 4 || offset + len > payload.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &payload[offset + 4..offset + len];
            let text = text.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        offset += (len + 3) & !3;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = 4 + value.len();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(len as u16).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(value);
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        bytes
    }

    fn header(len: u32) -> Vec<u8> {
        let mut bytes = len.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&[0; 12]);
        bytes
    }

    #[test]
    fn the_extended_ack_message_is_read_after_a_capped_header() {
        let mut payload = header(64);
        payload.extend(attribute(
            NLMSGERR_ATTR_MSG,
            b"Nexthop has invalid gateway\0",
        ));
        assert_eq!(
            extended_ack_message(&payload).as_deref(),
            Some("Nexthop has invalid gateway")
        );
    }

    #[test]
    fn an_error_without_attributes_has_no_message() {
        assert_eq!(extended_ack_message(&header(32)), None);
        assert_eq!(extended_ack_message(&[1, 2]), None);
    }

    #[test]
    fn a_refusal_shows_the_errno_and_the_kernel_message() {
        let error = NetlinkError::Refused {
            errno: io::Error::from_raw_os_error(libc::EEXIST),
            message: Some("Device exists".into()),
        };
        assert_eq!(
            error.to_string(),
            "the kernel refused: File exists (os error 17) (Device exists)"
        );
        assert_eq!(error.errno(), Some(libc::EEXIST));
    }
}
