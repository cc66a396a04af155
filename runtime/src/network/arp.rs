//! Gratuitous ARP: a pod announces its (address, hardware address) on the bridge as soon as its
//! interface is up, so neighbours holding an entry for a returning address learn the new port
//! at once instead of after their entry goes stale (about 5 s).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ARP_REQUEST: u16 = 1;
const BROADCAST: [u8; 6] = [0xff; 6];

/// The frame announcing `ip` at `mac`: an ARP request for its own address (RFC 5227's
/// announcement), sent to the broadcast address.
pub fn announcement(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[0..6].copy_from_slice(&BROADCAST);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    frame[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    frame[16..18].copy_from_slice(&ETH_P_IP.to_be_bytes());
    frame[18] = 6; // hardware address length
    frame[19] = 4; // protocol address length
    frame[20..22].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    frame[22..28].copy_from_slice(&mac); // sender hardware address
    frame[28..32].copy_from_slice(&ip.octets()); // sender protocol address
    // target hardware address stays zero
    frame[38..42].copy_from_slice(&ip.octets()); // target protocol address
    frame
}

/// Sends the announcement of `ip` at `mac` out of interface `index` of the calling thread's
/// network namespace. Returns once the frame is sent; the socket is closed afterwards on a
/// thread of its own (see [`close_later`]).
pub fn announce(index: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    let protocol = ETH_P_ARP.to_be() as libc::c_int;
    // SAFETY: plain socket call; the descriptor is owned by `socket` right below.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is a plain C struct of integers and a byte array; all-zero is valid.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = ETH_P_ARP.to_be();
    address.sll_ifindex = index as i32;
    address.sll_halen = 6;
    address.sll_addr[..6].copy_from_slice(&BROADCAST);
    let frame = announcement(mac, ip);
    // SAFETY: `frame` and `address` are valid for the lengths given for the whole call.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    let result = if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    };
    close_later(socket);
    result
}

/// Closes a packet socket on a short-lived thread of its own. Closing one waits for an RCU
/// grace period in the kernel (`packet_release` calls `synchronize_net`): 5-15 ms on a busy
/// host, most of a pod's setup time when it was waited for. Nothing depends on the close;
/// until it happens the socket only keeps the pod's namespace referenced.
fn close_later(socket: OwnedFd) {
    // When no thread can be started, the closure is dropped, and the socket closed, here.
    let _ = std::thread::Builder::new()
        .name("berth-arp-close".into())
        .spawn(move || drop(socket));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announcement_asks_for_its_own_address_from_its_own_mac() {
        let mac = [0x0a, 0x58, 10, 244, 0, 7];
        let ip = Ipv4Addr::new(10, 244, 0, 7);
        let frame = announcement(mac, ip);
        assert_eq!(&frame[0..6], &[0xff; 6], "broadcast destination");
        assert_eq!(&frame[6..12], &mac, "source");
        assert_eq!(&frame[12..14], &[0x08, 0x06], "ethertype ARP");
        assert_eq!(
            &frame[14..22],
            &[0, 1, 0x08, 0x00, 6, 4, 0, 1],
            "Ethernet/IPv4 request"
        );
        assert_eq!(&frame[22..28], &mac, "sender hardware address");
        assert_eq!(&frame[28..32], &[10, 244, 0, 7], "sender address");
        assert_eq!(&frame[32..38], &[0; 6], "target hardware address unknown");
        assert_eq!(
            &frame[38..42],
            &[10, 244, 0, 7],
            "target address is its own"
        );
    }
}
