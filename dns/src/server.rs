//! The UDP and TCP server around [`respond`](crate::respond()).
//!
//! Built on tokio sockets directly rather than hickory-server's `Server`: that server
//! spawns a task per UDP query and accepts unbounded TCP connections, while this one
//! answers authoritative queries inline on the socket's task, up to 32 per system call
//! (no per-query allocation or task)
//! and bounds everything a client can make it hold: TCP connections, per-connection
//! buffers (one message of at most 64 KiB each way), idle time, and concurrent forwards.
//!
//! Access: authoritative answers for the cluster zones go to any client that reaches a
//! listening address (they reveal nothing a Pod could not list, UDP answers are capped
//! at `max_udp_payload` so amplification stays small, and operators point LAN resolvers
//! at the node for `cluster.local`). Recursion (forwarding) is offered only to clients
//! in `allowed_networks`; others get REFUSED, so the server is never an open resolver.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authority::Authority;
use crate::forward::{self, Forwarder};
use crate::respond::{Outcome, RequestContext, Transport, respond};
use crate::udp_batch::UdpBatch;

/// How the server listens, whom it serves and where it forwards.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Addresses to listen on, each over UDP and TCP. Port 0 picks a free port (the same
    /// for UDP and TCP); [`DnsServer::local_addrs`] reports it.
    pub listen: Vec<SocketAddr>,
    /// Clients allowed to recurse: loopback, the node's addresses, the pod networks.
    pub allowed_networks: Vec<IpNet>,
    /// Upstream resolvers (`--dns-upstream`). Empty: read the host's resolver
    /// configuration as kubelet does.
    pub upstreams: Vec<SocketAddr>,
    /// Time to wait for one upstream before trying the next.
    pub forward_timeout: Duration,
    /// Largest UDP response sent, whatever a client's EDNS offers (1232: no fragmentation).
    pub max_udp_payload: u16,
    /// Open TCP connections at most; further connections are closed at once.
    pub max_tcp_connections: usize,
    /// A TCP connection idle this long (or slow to send a message it began) is closed.
    pub tcp_idle_timeout: Duration,
    /// Queries being forwarded at once at most; beyond it clients get SERVFAIL.
    pub max_concurrent_forwards: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            allowed_networks: vec![
                "127.0.0.0/8".parse().expect("valid network"),
                "::1/128".parse().expect("valid network"),
            ],
            upstreams: Vec::new(),
            forward_timeout: Duration::from_secs(2),
            max_udp_payload: 1232,
            max_tcp_connections: 256,
            tcp_idle_timeout: Duration::from_secs(10),
            max_concurrent_forwards: 512,
        }
    }
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// No listen address was given.
    #[error("no listen address configured for the dns server")]
    NoListenAddress,
    /// A socket could not be bound.
    #[error("cannot listen for dns on {address} ({protocol})")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// `udp` or `tcp`.
        protocol: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A running DNS server. Dropping it without [`DnsServer::shutdown`] leaves its tasks
/// running until the runtime stops.
pub struct DnsServer {
    local_addrs: Vec<SocketAddr>,
    upstreams: Vec<SocketAddr>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

struct Shared {
    authority: Arc<Authority>,
    forwarder: Forwarder,
    allowed_networks: Vec<IpNet>,
    max_udp_payload: u16,
    tcp_idle_timeout: Duration,
    forwards: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Shared {
    fn recursion_allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed_networks.iter().any(|net| net.contains(&ip))
    }
}

impl DnsServer {
    /// Binds every listen address (UDP and TCP) and starts serving `authority`. On error
    /// nothing stays bound.
    pub async fn start(
        config: ServerConfig,
        authority: Arc<Authority>,
    ) -> Result<Self, ServerError> {
        if config.listen.is_empty() {
            return Err(ServerError::NoListenAddress);
        }
        let mut sockets = Vec::new();
        for address in &config.listen {
            sockets.push(bind_pair(*address).await?);
        }
        let local_addrs: Vec<SocketAddr> = sockets.iter().map(|(addr, _, _)| *addr).collect();

        let host = if config.upstreams.is_empty() {
            match forward::host_resolv_conf() {
                Ok((path, conf)) => {
                    tracing::info!(path = %path.display(), "dns upstreams from the host resolver configuration");
                    Some(conf)
                }
                Err(error) => {
                    tracing::warn!(error = %error, "no host resolver configuration: names outside the cluster will fail");
                    None
                }
            }
        } else {
            None
        };
        let upstreams = forward::choose_upstreams(
            &config.upstreams,
            host.as_ref(),
            &local_addrs,
            forward::is_local_address,
        );
        if upstreams.is_empty() {
            tracing::warn!("no dns upstream resolvers: names outside the cluster get SERVFAIL");
        }

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let shared = Arc::new(Shared {
            authority,
            forwarder: Forwarder::new(
                upstreams.clone(),
                config.forward_timeout,
                config.max_udp_payload,
            ),
            allowed_networks: config.allowed_networks.clone(),
            max_udp_payload: config.max_udp_payload,
            tcp_idle_timeout: config.tcp_idle_timeout,
            forwards: Arc::new(Semaphore::new(config.max_concurrent_forwards)),
            connections: Arc::new(Semaphore::new(config.max_tcp_connections)),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        });
        for (address, udp, tcp) in sockets {
            tasks.spawn(serve_udp(Arc::new(udp), shared.clone()));
            tasks.spawn(serve_tcp(tcp, shared.clone()));
            tracing::info!(%address, "dns server listening (udp and tcp)");
        }
        tracing::info!(upstreams = ?upstreams, "dns forwarding configured");
        Ok(Self {
            local_addrs,
            upstreams,
            shutdown,
            tasks,
        })
    }

    /// The bound addresses, in the order of [`ServerConfig::listen`] (ports resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The upstream resolvers in use (after dropping the server's own addresses).
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Stops accepting, closes every connection and waits for all tasks to end.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Binds UDP and TCP on the same address (and, for port 0, the same port).
async fn bind_pair(
    address: SocketAddr,
) -> Result<(SocketAddr, UdpSocket, TcpListener), ServerError> {
    let bind_error = |protocol| {
        move |source| ServerError::Bind {
            address,
            protocol,
            source,
        }
    };
    let attempts = if address.port() == 0 { 16 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(address).await.map_err(bind_error("udp"))?;
        let bound = udp.local_addr().map_err(bind_error("udp"))?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((bound, udp, tcp)),
            // The port picked for UDP is taken for TCP: pick another.
            Err(source) => last_error = Some(source),
        }
    }
    Err(bind_error("tcp")(
        last_error.unwrap_or_else(|| io::Error::other("no port")),
    ))
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut batch = UdpBatch::new();
    let mut batches: u32 = 0;
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let received = match batch.receive(&socket) {
            Ok(received) => received,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    ready = socket.readable() => {
                        if let Err(error) = ready {
                            tracing::error!(%error, "dns udp socket failed");
                            return;
                        }
                    }
                }
                continue;
            }
            Err(error) => {
                // ICMP errors for earlier sends surface here; they concern one peer only.
                tracing::debug!(%error, "dns udp receive error");
                tokio::task::yield_now().await;
                continue;
            }
        };
        {
            let index = shared.authority.load();
            for slot in 0..received {
                let mut out = batch.reply_buffer();
                let Some((request, peer)) = batch.datagram(slot) else {
                    batch.recycle(out);
                    continue;
                };
                let ctx = RequestContext {
                    transport: Transport::Udp,
                    recursion_allowed: shared.recursion_allowed(peer.ip()),
                    max_udp_payload: shared.max_udp_payload,
                };
                match respond(&index, request, &ctx, &mut out) {
                    Outcome::Reply => batch.queue(slot, out),
                    Outcome::Drop => batch.recycle(out),
                    Outcome::Forward => {
                        let request = request.to_vec();
                        batch.recycle(out);
                        forward_udp(&socket, &shared, request, peer);
                    }
                }
            }
        }
        batch.send(&socket).await;
        batches = batches.wrapping_add(1);
        if batches.is_multiple_of(8) {
            // Let other tasks on this worker run under sustained load.
            tokio::task::yield_now().await;
        }
    }
}

/// Forwards one UDP query on its own task, or answers SERVFAIL at the limit.
fn forward_udp(socket: &Arc<UdpSocket>, shared: &Arc<Shared>, request: Vec<u8>, peer: SocketAddr) {
    match shared.forwards.clone().try_acquire_owned() {
        Ok(permit) => {
            let socket = socket.clone();
            let task_shared = shared.clone();
            shared.tasks.spawn(async move {
                let forwarded = tokio::select! {
                    _ = task_shared.shutdown.cancelled() => None,
                    response = task_shared.forwarder.forward(&request, Transport::Udp) => response,
                };
                if let Some(response) = forwarded {
                    send_udp(&socket, &response, peer).await;
                }
                drop(permit);
            });
        }
        Err(_) => {
            tracing::debug!(%peer, "too many queries being forwarded: SERVFAIL");
            if let Some(response) = forward::servfail_for(&request) {
                let socket = socket.clone();
                shared
                    .tasks
                    .spawn(async move { send_udp(&socket, &response, peer).await });
            }
        }
    }
}

async fn send_udp(socket: &UdpSocket, message: &[u8], peer: SocketAddr) {
    let sent = match socket.try_send_to(message, peer) {
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
            socket.send_to(message, peer).await.map(|_| ())
        }
        other => other.map(|_| ()),
    };
    if let Err(error) = sent {
        tracing::debug!(%peer, %error, "dns udp send failed");
    }
}

async fn serve_tcp(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly, keep serving.
                tracing::warn!(%error, "dns tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "too many dns tcp connections: closing the new one");
            drop(stream);
            continue;
        };
        let task_shared = shared.clone();
        shared.tasks.spawn(async move {
            tokio::select! {
                _ = task_shared.shutdown.cancelled() => {}
                result = serve_connection(stream, peer, &task_shared) => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "dns tcp connection ended");
                    }
                }
            }
            drop(permit);
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let idle = shared.tcp_idle_timeout;
    let timed_out = || io::Error::new(io::ErrorKind::TimedOut, "idle");
    let mut request = Vec::new();
    let mut out = Vec::new();
    let ctx = RequestContext {
        transport: Transport::Tcp,
        recursion_allowed: shared.recursion_allowed(peer.ip()),
        max_udp_payload: shared.max_udp_payload,
    };
    loop {
        let length = match tokio::time::timeout(idle, stream.read_u16()).await {
            Err(_) => return Ok(()),
            Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(result) => usize::from(result?),
        };
        request.resize(length, 0);
        tokio::time::timeout(idle, stream.read_exact(&mut request))
            .await
            .map_err(|_| timed_out())??;
        let outcome = {
            let index = shared.authority.load();
            respond(&index, &request, &ctx, &mut out)
        };
        let response = match outcome {
            Outcome::Reply => std::mem::take(&mut out),
            Outcome::Drop => continue,
            Outcome::Forward => {
                let Ok(_permit) = shared.forwards.try_acquire() else {
                    if let Some(response) = forward::servfail_for(&request) {
                        write_message(&mut stream, &response, idle).await?;
                    }
                    continue;
                };
                match shared.forwarder.forward(&request, Transport::Tcp).await {
                    Some(response) => response,
                    None => continue,
                }
            }
        };
        write_message(&mut stream, &response, idle).await?;
        out = response;
    }
}

async fn write_message(
    stream: &mut TcpStream,
    message: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
    framed.extend_from_slice(message);
    tokio::time::timeout(timeout, stream.write_all(&framed))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client does not read"))?
}
