//! Forwarding of names outside the authoritative zones to upstream resolvers, and the
//! host resolver configuration those upstreams come from.
//!
//! The forwarder relays the client's query as it is (new random ID, fresh random source
//! port per attempt) and relays the upstream's answer as it is: NXDOMAIN stays NXDOMAIN,
//! the upstream's AA and AD bits are kept, RA is set (this server is the client's
//! recursive resolver). An upstream that answers SERVFAIL or REFUSED,
//! or does not answer in time, is skipped for the next one. There is no cache (CoreDNS's
//! `forward` has none either; its `cache` is a separate plugin).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::respond::Transport;
use crate::wire::{self, Header, Parsed, rcode};

/// Where kubelet's resolver configuration lives when systemd-resolved manages the host.
pub const SYSTEMD_RESOLVED_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// The host's resolver configuration.
pub const ETC_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's stub listener address.
pub const SYSTEMD_RESOLVED_STUB: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53));

/// The parts of a resolv.conf that matter here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, in order (unparseable ones, e.g. with a `%scope`, are skipped).
    pub nameservers: Vec<IpAddr>,
    /// The last `search` (or `domain`) line's domains.
    pub search: Vec<String>,
    /// All `options` values, in order.
    pub options: Vec<String>,
}

/// Parses resolv.conf text the way the C library does: comments start with `#` or `;`,
/// the last `search`/`domain` line wins, `options` accumulate.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => {
                if let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) {
                    conf.nameservers.push(ip);
                }
            }
            Some("search") => {
                conf.search = fields
                    .map(|d| d.trim_end_matches('.').to_string())
                    .filter(|d| !d.is_empty())
                    .collect();
            }
            Some("domain") => {
                conf.search = fields
                    .next()
                    .map(|d| d.trim_end_matches('.').to_string())
                    .filter(|d| !d.is_empty())
                    .into_iter()
                    .collect();
            }
            Some("options") => conf.options.extend(fields.map(String::from)),
            _ => {}
        }
    }
    conf
}

/// Which file to read, as kubelet does on a systemd-resolved host: when
/// `/etc/resolv.conf` points at the stub resolver 127.0.0.53, the real upstreams are in
/// [`SYSTEMD_RESOLVED_CONF`].
pub fn resolv_conf_path(etc_resolv_conf: &ResolvConf) -> &'static Path {
    if etc_resolv_conf.nameservers.contains(&SYSTEMD_RESOLVED_STUB) {
        Path::new(SYSTEMD_RESOLVED_CONF)
    } else {
        Path::new(ETC_RESOLV_CONF)
    }
}

/// Errors reading the host's resolver configuration.
#[derive(Debug, thiserror::Error)]
pub enum ResolvConfError {
    /// The file could not be read.
    #[error("cannot read resolver configuration {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Reads the host's resolver configuration as kubelet does (see [`resolv_conf_path`]).
/// Returns the file used and its content.
pub fn host_resolv_conf() -> Result<(PathBuf, ResolvConf), ResolvConfError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|text| parse_resolv_conf(&text))
            .map_err(|source| ResolvConfError::Read {
                path: path.to_path_buf(),
                source,
            })
    };
    let etc = read(Path::new(ETC_RESOLV_CONF))?;
    let path = resolv_conf_path(&etc);
    if path == Path::new(ETC_RESOLV_CONF) {
        return Ok((path.to_path_buf(), etc));
    }
    Ok((path.to_path_buf(), read(path)?))
}

/// The upstreams to forward to: `explicit` when not empty (the agent's `--dns-upstream`),
/// else the host's nameservers on port 53; never one of the server's own listening
/// addresses (loop protection). `is_local` tells whether an address belongs to this host,
/// for listeners on an unspecified address.
pub fn choose_upstreams(
    explicit: &[SocketAddr],
    host: Option<&ResolvConf>,
    listening: &[SocketAddr],
    is_local: impl Fn(IpAddr) -> bool,
) -> Vec<SocketAddr> {
    let candidates: Vec<SocketAddr> = if explicit.is_empty() {
        host.map(|conf| {
            conf.nameservers
                .iter()
                .map(|ip| SocketAddr::new(*ip, 53))
                .collect()
        })
        .unwrap_or_default()
    } else {
        explicit.to_vec()
    };
    let mut upstreams = Vec::new();
    for upstream in candidates {
        let is_self = listening.iter().any(|listen| {
            listen.port() == upstream.port()
                && (listen.ip() == upstream.ip()
                    || (listen.ip().is_unspecified()
                        && (upstream.ip().is_loopback() || is_local(upstream.ip()))))
        });
        if is_self {
            tracing::warn!(%upstream, "dropping upstream resolver: it is this server");
        } else if !upstreams.contains(&upstream) {
            upstreams.push(upstream);
        }
    }
    upstreams
}

/// Whether an address belongs to this host (a socket can be bound to it).
pub fn is_local_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Relays queries to upstream resolvers.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    max_udp_payload: u16,
    /// Index of the upstream that answered last; tried first.
    preferred: AtomicUsize,
    /// Upstream trouble is logged at warn level at most once a minute (else debug).
    created: Instant,
    last_warning: AtomicU64,
}

/// Seconds between two warnings about failing upstreams.
const WARNING_INTERVAL_SECS: u64 = 60;

impl Forwarder {
    /// A forwarder trying `upstreams` in order, `timeout` per attempt.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, max_udp_payload: u16) -> Self {
        Self {
            upstreams,
            timeout,
            max_udp_payload,
            preferred: AtomicUsize::new(0),
            created: Instant::now(),
            last_warning: AtomicU64::new(0),
        }
    }

    /// Whether a warning may be logged now (at most one per interval).
    fn may_warn(&self) -> bool {
        let now = self.created.elapsed().as_secs() + WARNING_INTERVAL_SECS;
        let last = self.last_warning.load(Ordering::Relaxed);
        now >= last + WARNING_INTERVAL_SECS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// The upstreams, in configured order.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Forwards `request` (as received from a client over `transport`) and returns the
    /// response to send back: the upstream's, or SERVFAIL when none answered usefully.
    /// `None` when the request is not a query worth answering.
    pub async fn forward(&self, request: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let Parsed::Query(query) = wire::parse_query(request) else {
            return None;
        };
        let client_limit = match (transport, query.edns) {
            (Transport::Tcp, _) => usize::from(u16::MAX),
            (Transport::Udp, None) => wire::CLASSIC_UDP_SIZE,
            (Transport::Udp, Some(edns)) => {
                usize::from(edns.udp_size.min(self.max_udp_payload)).max(wire::CLASSIC_UDP_SIZE)
            }
        };
        let question = &request[wire::HEADER_LEN..query.question_end];
        let mut fallback: Option<Vec<u8>> = None;
        let count = self.upstreams.len();
        let first = self.preferred.load(Ordering::Relaxed);
        for attempt in 0..count {
            let which = (first + attempt) % count;
            let upstream = self.upstreams[which];
            let id: u16 = rand::random();
            let mut outgoing = request.to_vec();
            outgoing[0..2].copy_from_slice(&id.to_be_bytes());
            let exchange = match transport {
                Transport::Udp => self.exchange_udp(upstream, &outgoing, id, question).await,
                Transport::Tcp => self.exchange_tcp(upstream, &outgoing, id, question).await,
            };
            let mut response = match exchange {
                Ok(response) => response,
                Err(error) => {
                    if self.may_warn() {
                        tracing::warn!(%upstream, %error, "upstream dns resolver failed (repeats are logged at debug level for a minute)");
                    } else {
                        tracing::debug!(%upstream, %error, "upstream dns resolver failed");
                    }
                    continue;
                }
            };
            response[0..2].copy_from_slice(&query.id.to_be_bytes());
            // This server offers the recursion, whatever the upstream says about itself.
            response[3] |= 0x80;
            let code = response[3] & 0x0F;
            if code == rcode::SERVFAIL || code == rcode::REFUSED {
                fallback = Some(response);
                continue;
            }
            self.preferred.store(which, Ordering::Relaxed);
            return Some(fit_udp(response, client_limit, query.question_end));
        }
        Some(match fallback {
            Some(response) => fit_udp(response, client_limit, query.question_end),
            None => servfail(request, query.id, query.question_end),
        })
    }

    async fn exchange_udp(
        &self,
        upstream: SocketAddr,
        outgoing: &[u8],
        id: u16,
        question: &[u8],
    ) -> io::Result<Vec<u8>> {
        let bind: SocketAddr = match upstream {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(upstream).await?;
        socket.send(outgoing).await?;
        let mut buf = vec![0u8; 65535];
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let len = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))??;
            // Anything that does not match (a late answer, a spoofing attempt) is ignored.
            if is_answer_to(&buf[..len], id, question) {
                buf.truncate(len);
                return Ok(buf);
            }
        }
    }

    async fn exchange_tcp(
        &self,
        upstream: SocketAddr,
        outgoing: &[u8],
        id: u16,
        question: &[u8],
    ) -> io::Result<Vec<u8>> {
        let exchange = async {
            let mut stream = TcpStream::connect(upstream).await?;
            stream.set_nodelay(true)?;
            let mut message = Vec::with_capacity(outgoing.len() + 2);
            message.extend_from_slice(&(outgoing.len() as u16).to_be_bytes());
            message.extend_from_slice(outgoing);
            stream.write_all(&message).await?;
            let length = usize::from(stream.read_u16().await?);
            let mut buf = vec![0u8; length];
            stream.read_exact(&mut buf).await?;
            if is_answer_to(&buf, id, question) {
                Ok(buf)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "answer does not match the query",
                ))
            }
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))?
    }
}

/// Whether `response` answers the query with `id` and `question` (names compared without
/// regard to case).
fn is_answer_to(response: &[u8], id: u16, question: &[u8]) -> bool {
    let end = wire::HEADER_LEN + question.len();
    response.len() >= end
        && u16::from_be_bytes([response[0], response[1]]) == id
        && response[2] & 0x80 != 0
        && u16::from_be_bytes([response[4], response[5]]) == 1
        && response[wire::HEADER_LEN..end].eq_ignore_ascii_case(question)
}

/// A response too large for the client's UDP limit becomes header + question with TC.
fn fit_udp(mut response: Vec<u8>, limit: usize, question_end: usize) -> Vec<u8> {
    if response.len() > limit {
        response.truncate(question_end);
        response[2] |= 0x02;
        response[6..12].fill(0);
    }
    response
}

/// SERVFAIL for a query no upstream answered.
fn servfail(request: &[u8], id: u16, question_end: usize) -> Vec<u8> {
    let mut out = request[..question_end].to_vec();
    Header {
        id,
        recursion_desired: request[2] & 0x01 != 0,
        recursion_available: true,
        rcode: rcode::SERVFAIL,
        qdcount: 1,
        ..Header::default()
    }
    .write(&mut out[..wire::HEADER_LEN]);
    out
}

/// SERVFAIL for a query that cannot be forwarded now (the server is at its limit).
pub(crate) fn servfail_for(request: &[u8]) -> Option<Vec<u8>> {
    match wire::parse_query(request) {
        Parsed::Query(query) => Some(servfail(request, query.id, query.question_end)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_parses_like_the_c_library() {
        let conf = parse_resolv_conf(
            "# generated\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\nnameserver 2001:db8::1 ; x\n\
             domain old.example\nsearch a.example b.example. \noptions ndots:2\noptions edns0 rotate\n",
        );
        assert_eq!(
            conf.nameservers,
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "2001:db8::1".parse().unwrap()
            ]
        );
        assert_eq!(conf.search, vec!["a.example", "b.example"]);
        assert_eq!(conf.options, vec!["ndots:2", "edns0", "rotate"]);
    }

    #[test]
    fn the_systemd_resolved_stub_sends_kubelet_to_the_real_file() {
        let stub = parse_resolv_conf("nameserver 127.0.0.53\noptions edns0 trust-ad\n");
        assert_eq!(resolv_conf_path(&stub), Path::new(SYSTEMD_RESOLVED_CONF));
        let plain = parse_resolv_conf("nameserver 192.0.2.1\n");
        assert_eq!(resolv_conf_path(&plain), Path::new(ETC_RESOLV_CONF));
    }

    #[test]
    fn upstreams_prefer_the_explicit_list_and_never_point_at_the_server() {
        let host = parse_resolv_conf("nameserver 192.0.2.1\nnameserver 10.96.0.1\n");
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        type Case<'a> = (&'a str, Vec<SocketAddr>, Vec<SocketAddr>, Vec<SocketAddr>);
        let cases: Vec<Case> = vec![
            (
                "host nameservers on port 53",
                vec![],
                vec![addr("10.244.0.1:53")],
                vec![addr("192.0.2.1:53"), addr("10.96.0.1:53")],
            ),
            (
                "explicit list overrides the host",
                vec![addr("198.51.100.7:5353")],
                vec![addr("10.244.0.1:53")],
                vec![addr("198.51.100.7:5353")],
            ),
            (
                "own listen address dropped",
                vec![],
                vec![addr("10.96.0.1:53")],
                vec![addr("192.0.2.1:53")],
            ),
            (
                "a local address behind a wildcard listener dropped",
                vec![
                    addr("127.0.0.1:53"),
                    addr("192.0.2.1:53"),
                    addr("192.0.2.1:53"),
                ],
                vec![addr("0.0.0.0:53")],
                vec![addr("192.0.2.1:53")],
            ),
            (
                "same address on another port kept",
                vec![addr("10.96.0.1:5353")],
                vec![addr("10.96.0.1:53")],
                vec![addr("10.96.0.1:5353")],
            ),
        ];
        for (name, explicit, listening, want) in cases {
            let got = choose_upstreams(&explicit, Some(&host), &listening, |_| false);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn oversized_udp_answers_are_cut_to_the_question_with_tc() {
        let mut response = vec![0u8; 12];
        response[5] = 1;
        response[7] = 3;
        response.extend_from_slice(b"\x00\x00\x01\x00\x01");
        let question_end = response.len();
        response.extend(std::iter::repeat_n(0xAB, 600));
        let cut = fit_udp(response, 512, question_end);
        assert_eq!(cut.len(), question_end);
        assert_eq!(cut[2] & 0x02, 0x02);
        assert_eq!(&cut[6..12], &[0; 6]);
    }
}
