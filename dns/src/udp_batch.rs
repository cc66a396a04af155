//! Batched UDP I/O: up to [`BATCH`] datagrams per `recvmmsg` and per `sendmmsg`, so a
//! loaded server pays two system calls per batch instead of two per query.
//!
//! The only `unsafe` code of the crate lives here: the two system calls and reading the
//! peer address the kernel wrote.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::ptr::null_mut;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub(crate) const BATCH: usize = 32;
/// Largest query accepted over UDP; longer datagrams are dropped (queries are small;
/// the limit bounds the buffers).
pub(crate) const SLOT: usize = 4096;

/// Receive and reply buffers for one socket.
pub(crate) struct UdpBatch {
    buffers: Box<[u8]>,
    lengths: [usize; BATCH],
    truncated: [bool; BATCH],
    addresses: Box<[libc::sockaddr_storage]>,
    address_lengths: [libc::socklen_t; BATCH],
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    /// Replies waiting for `send`: (slot of the query whose sender gets it, bytes).
    replies: Vec<(usize, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

// SAFETY: the raw pointers inside `iovecs` and `headers` point only into buffers owned
// by the same `UdpBatch` (or its queued replies); they are rewritten before every system
// call and used only during calls made through `&mut self`, so moving the whole batch to
// another thread cannot leave a pointer shared with the old one.
unsafe impl Send for UdpBatch {}

impl UdpBatch {
    pub(crate) fn new() -> Self {
        // SAFETY: all-zero bytes are a valid value of these plain C structs.
        let zeroed_address = unsafe { zeroed::<libc::sockaddr_storage>() };
        // SAFETY: as above; the pointers are set before every system call.
        let zeroed_header = unsafe { zeroed::<libc::mmsghdr>() };
        Self {
            buffers: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            lengths: [0; BATCH],
            truncated: [false; BATCH],
            addresses: vec![zeroed_address; BATCH].into_boxed_slice(),
            address_lengths: [0; BATCH],
            iovecs: vec![
                libc::iovec {
                    iov_base: null_mut(),
                    iov_len: 0
                };
                BATCH
            ]
            .into_boxed_slice(),
            headers: vec![zeroed_header; BATCH].into_boxed_slice(),
            replies: Vec::with_capacity(BATCH),
            spare: (0..BATCH).map(|_| Vec::with_capacity(1232)).collect(),
        }
    }

    /// Receives up to [`BATCH`] datagrams without waiting; `WouldBlock` when none is
    /// queued (and the socket's readiness is cleared, so `readable().await` works).
    pub(crate) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        socket.try_io(Interest::READABLE, || {
            for i in 0..BATCH {
                self.iovecs[i] = libc::iovec {
                    iov_base: self.buffers[i * SLOT..].as_mut_ptr().cast(),
                    iov_len: SLOT,
                };
                let header = &mut self.headers[i];
                header.msg_hdr.msg_name =
                    (&mut self.addresses[i] as *mut libc::sockaddr_storage).cast();
                header.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                header.msg_hdr.msg_iov = &mut self.iovecs[i];
                header.msg_hdr.msg_iovlen = 1;
                header.msg_hdr.msg_control = null_mut();
                header.msg_hdr.msg_controllen = 0;
                header.msg_hdr.msg_flags = 0;
                header.msg_len = 0;
            }
            // SAFETY: each of the BATCH headers points at its own live iovec (covering
            // SLOT bytes of `buffers`) and its own sockaddr_storage with the matching
            // length; all are owned by `self` and outlive the call. The kernel writes
            // within those bounds only.
            let received = unsafe {
                libc::recvmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    null_mut(),
                )
            };
            if received < 0 {
                return Err(io::Error::last_os_error());
            }
            let received = received as usize;
            for i in 0..received {
                let header = &self.headers[i];
                self.lengths[i] = header.msg_len as usize;
                self.truncated[i] = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                self.address_lengths[i] = header.msg_hdr.msg_namelen;
            }
            Ok(received)
        })
    }

    /// Datagram `i` of the last receive and its sender, or `None` for a datagram that
    /// did not fit a slot or came from an address family other than IPv4/IPv6.
    pub(crate) fn datagram(&self, i: usize) -> Option<(&[u8], SocketAddr)> {
        if self.truncated[i] {
            return None;
        }
        let peer = socket_addr(&self.addresses[i], self.address_lengths[i])?;
        Some((&self.buffers[i * SLOT..i * SLOT + self.lengths[i]], peer))
    }

    /// A cleared buffer to write a reply into (give it back with [`UdpBatch::queue`]).
    pub(crate) fn reply_buffer(&mut self) -> Vec<u8> {
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Queues `reply` for the sender of datagram `slot`.
    pub(crate) fn queue(&mut self, slot: usize, reply: Vec<u8>) {
        self.replies.push((slot, reply));
    }

    /// Returns an unused reply buffer.
    pub(crate) fn recycle(&mut self, buffer: Vec<u8>) {
        self.spare.push(buffer);
    }

    /// Sends every queued reply: in one `sendmmsg` when the socket takes them, waiting for
    /// room otherwise. A reply the kernel refuses (an unreachable sender) is dropped.
    pub(crate) async fn send(&mut self, socket: &UdpSocket) {
        let mut next = 0;
        while next < self.replies.len() {
            match self.send_some(socket, next) {
                Ok(sent) => next += sent,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if socket.writable().await.is_err() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "dns udp send failed");
                    next += 1;
                }
            }
        }
        for (_, buffer) in self.replies.drain(..) {
            self.spare.push(buffer);
        }
    }

    fn send_some(&mut self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let count = self.replies.len() - from;
        socket.try_io(Interest::WRITABLE, || {
            for k in 0..count {
                let (slot, reply) = &mut self.replies[from + k];
                self.iovecs[k] = libc::iovec {
                    iov_base: reply.as_mut_ptr().cast(),
                    iov_len: reply.len(),
                };
                let header = &mut self.headers[k];
                header.msg_hdr.msg_name =
                    (&mut self.addresses[*slot] as *mut libc::sockaddr_storage).cast();
                header.msg_hdr.msg_namelen = self.address_lengths[*slot];
                header.msg_hdr.msg_iov = &mut self.iovecs[k];
                header.msg_hdr.msg_iovlen = 1;
                header.msg_hdr.msg_control = null_mut();
                header.msg_hdr.msg_controllen = 0;
                header.msg_hdr.msg_flags = 0;
                header.msg_len = 0;
            }
            // SAFETY: the first `count` headers point at live iovecs covering each
            // reply's initialised bytes and at the sender addresses the kernel filled in
            // (with their lengths); all outlive the call, and the kernel only reads them.
            let sent = unsafe {
                libc::sendmmsg(
                    fd,
                    self.headers.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if sent < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(sent as usize)
            }
        })
    }
}

fn socket_addr(storage: &libc::sockaddr_storage, length: libc::socklen_t) -> Option<SocketAddr> {
    let length = length as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if length >= size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family is AF_INET and the kernel wrote a whole sockaddr_in;
            // sockaddr_storage is large and aligned enough for any socket address.
            let v4 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if length >= size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for AF_INET6 and sockaddr_in6.
            let v6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(v6.sin6_addr.s6_addr),
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}
