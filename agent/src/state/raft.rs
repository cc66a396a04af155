//! openraft wiring: the type configuration, the member record and the peer network.
//!
//! Peers talk HTTPS with JSON (openraft's request and response types are serde): a
//! [`PeerClient`] per peer address, mutual TLS with the cluster CA (the client presents this
//! host's node certificate and verifies the peer's against the CA). The server side is
//! `cluster::peer`. A host without TLS settings (no cluster PKI yet) reports every peer
//! unreachable.

use std::fmt;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::command::Command;
use super::outcome::{Applied, Rejection};

/// A raft node id: a random u64 chosen on a host's first start and persisted with its state.
pub type NodeId = u64;

/// What the raft membership records about a host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The host's node name (the Kubernetes Node object's name).
    pub name: String,
    /// Where peers reach its peer port (`ADDR:PORT`); empty for a host that never had one.
    pub address: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.address.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}@{}", self.name, self.address)
        }
    }
}

/// The response of the state machine to one raft entry: the outcome of its command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response(pub Result<Applied, Rejection>);

openraft::declare_raft_types!(
    /// berth's openraft type configuration: entries carry [`Command`]s, the state machine
    /// answers with a [`Response`], snapshots are one in-memory blob.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The raft handle type.
pub type Raft = openraft::Raft<TypeConfig>;

/// Peer endpoint paths (served by `cluster::peer`).
pub mod paths {
    /// openraft AppendEntries.
    pub const APPEND: &str = "/peer/v1/raft/append";
    /// openraft Vote.
    pub const VOTE: &str = "/peer/v1/raft/vote";
    /// openraft InstallSnapshot (one chunk).
    pub const SNAPSHOT: &str = "/peer/v1/raft/snapshot";
    /// A command forwarded by a follower to the leader.
    pub const PROPOSE: &str = "/peer/v1/propose";
}

/// Largest peer response body read (a snapshot chunk answer, a forwarded outcome).
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Idle connections kept per peer.
const IDLE_CONNECTIONS: usize = 4;

/// A failed request to a peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// This host has no cluster certificates, so it cannot talk to peers.
    #[error("cannot reach peer {address}: this host has no cluster certificates")]
    NoTls {
        /// The peer.
        address: String,
    },
    /// The TCP connection failed.
    #[error("cannot connect to peer {address}")]
    Connect {
        /// The peer.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (for instance, the peer's certificate is not from the CA).
    #[error("TLS handshake with peer {address} failed")]
    Tls {
        /// The peer.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The address is not `HOST:PORT`.
    #[error("peer address {address:?} is not HOST:PORT")]
    Address {
        /// The address.
        address: String,
    },
    /// HTTP failed.
    #[error("HTTP request to peer {address} failed")]
    Http {
        /// The peer.
        address: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No answer in time.
    #[error("peer {address} did not answer within {timeout:?}")]
    Timeout {
        /// The peer.
        address: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The peer answered with an error status.
    #[error("peer {address} answered {status}: {message}")]
    Status {
        /// The peer.
        address: String,
        /// The HTTP status.
        status: u16,
        /// The message in the answer.
        message: String,
    },
    /// The answer is not the expected JSON.
    #[error("peer {address} sent an answer that is not valid JSON")]
    Decode {
        /// The peer.
        address: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl PeerError {
    /// Whether the peer could not be reached at all (connect or TLS failure, no TLS).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            PeerError::Connect { .. } | PeerError::NoTls { .. } | PeerError::Tls { .. }
        )
    }
}

/// Client TLS settings shared by every peer client of a host, set once the host has its
/// cluster certificates (a joining host gets them after its state is open).
pub type TlsSlot = Arc<std::sync::RwLock<Option<Arc<rustls::ClientConfig>>>>;

/// An HTTPS client of one peer, keeping a few idle connections.
#[derive(Clone)]
pub struct PeerClient {
    address: String,
    tls: TlsSlot,
    idle: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
}

impl fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerClient")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    /// A client of the peer at `address` (`HOST:PORT`) using the settings in `tls` (client
    /// certificate and CA roots); while it is empty, requests fail with [`PeerError::NoTls`].
    pub fn new(address: impl Into<String>, tls: TlsSlot) -> PeerClient {
        PeerClient {
            address: address.into(),
            tls,
            idle: Arc::default(),
        }
    }

    /// A client of the peer at `address` with fixed TLS settings.
    pub fn with_config(address: impl Into<String>, tls: Arc<rustls::ClientConfig>) -> PeerClient {
        PeerClient::new(address, Arc::new(std::sync::RwLock::new(Some(tls))))
    }

    /// The peer's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// POSTs `body` as JSON to `path` and decodes the JSON answer, all within `timeout`.
    pub async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        let bytes = serde_json::to_vec(body).expect("peer requests serialise");
        match tokio::time::timeout(timeout, self.send("POST", path, bytes)).await {
            Ok(result) => result,
            Err(_) => Err(PeerError::Timeout {
                address: self.address.clone(),
                timeout,
            }),
        }
    }

    /// GETs `path` and decodes the JSON answer within `timeout`.
    pub async fn get<Resp: DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<Resp, PeerError> {
        match tokio::time::timeout(timeout, self.send("GET", path, Vec::new())).await {
            Ok(result) => result,
            Err(_) => Err(PeerError::Timeout {
                address: self.address.clone(),
                timeout,
            }),
        }
    }

    async fn send<Resp: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<Resp, PeerError> {
        let mut sender = self.connection().await?;
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.address)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("valid request parts");
        let http = |source: Box<dyn std::error::Error + Send + Sync>| PeerError::Http {
            address: self.address.clone(),
            source,
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http(Box::new(e)))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(http)?
            .to_bytes();
        {
            let mut idle = self.idle.lock().expect("peer pool lock poisoned");
            if idle.len() < IDLE_CONNECTIONS {
                idle.push(sender);
            }
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(PeerError::Status {
                address: self.address.clone(),
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|source| PeerError::Decode {
            address: self.address.clone(),
            source,
        })
    }

    async fn connection(&self) -> Result<SendRequest<Full<Bytes>>, PeerError> {
        loop {
            let candidate = self.idle.lock().expect("peer pool lock poisoned").pop();
            match candidate {
                Some(mut sender) => {
                    if !sender.is_closed() && sender.ready().await.is_ok() {
                        return Ok(sender);
                    }
                }
                None => break,
            }
        }
        let address = || self.address.clone();
        let tls = self
            .tls
            .read()
            .expect("TLS slot lock poisoned")
            .clone()
            .ok_or_else(|| PeerError::NoTls { address: address() })?;
        let (host, _) = self
            .address
            .rsplit_once(':')
            .ok_or_else(|| PeerError::Address { address: address() })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| PeerError::Address { address: address() })?;
        let tcp = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|source| PeerError::Connect {
                address: address(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(server_name, tcp)
            .await
            .map_err(|source| PeerError::Tls {
                address: address(),
                source,
            })?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| PeerError::Http {
                address: address(),
                source: Box::new(e),
            })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// Connections to raft peers over HTTPS.
#[derive(Clone, Debug, Default)]
pub struct PeerNetwork {
    /// This host's node id (named in timeout errors).
    pub node_id: NodeId,
    /// Client TLS settings; empty before the host has cluster certificates.
    pub tls: TlsSlot,
}

/// A connection to one peer; see [`PeerNetwork`].
#[derive(Clone, Debug)]
pub struct PeerConnection {
    node_id: NodeId,
    target: NodeId,
    member: Member,
    client: PeerClient,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let timeout = option.hard_ttl();
        let answer: Result<Result<Resp, RaftError<NodeId, E>>, PeerError> =
            self.client.post(path, request, timeout).await;
        match answer {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.member.clone(),
                error,
            ))),
            Err(PeerError::Timeout { .. }) => Err(RPCError::Timeout(Timeout {
                action,
                id: self.node_id,
                target: self.target,
                timeout,
            })),
            Err(error) if error.is_unreachable() => {
                Err(RPCError::Unreachable(Unreachable::new(&error)))
            }
            Err(error) => Err(RPCError::Network(NetworkError::new(&error))),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerConnection {
        PeerConnection {
            node_id: self.node_id,
            target,
            member: node.clone(),
            client: PeerClient::new(node.address.clone(), self.tls.clone()),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(paths::APPEND, RPCTypes::AppendEntries, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(paths::SNAPSHOT, RPCTypes::InstallSnapshot, &rpc, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(paths::VOTE, RPCTypes::Vote, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::Vote;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::VoteRequest;

    use super::*;

    #[tokio::test]
    async fn a_host_without_certificates_reports_peers_unreachable() {
        let member = Member {
            name: "host-b".into(),
            address: "127.0.0.1:1".into(),
        };
        let mut connection = PeerNetwork {
            node_id: 7,
            tls: TlsSlot::default(),
        }
        .new_client(42, &member)
        .await;
        let request = VoteRequest::new(Vote::new(1, 7), None);
        let option = RPCOption::new(std::time::Duration::from_secs(1));
        let error = connection.vote(request, option).await.unwrap_err();
        let RPCError::Unreachable(unreachable) = &error else {
            panic!("{error:?}")
        };
        assert!(
            unreachable.to_string().contains("no cluster certificates"),
            "{unreachable}"
        );
    }
}
