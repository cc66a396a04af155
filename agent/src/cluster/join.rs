//! Joining a host: the joiner's side ([`join`]) and the leader's ([`Cluster::admit`]).
//!
//! 1. The joiner fetches the CA certificate without trusting the server and checks its
//!    SHA-256 against the token's fingerprint; from then on it verifies the server against
//!    that CA (a man in the middle cannot present a certificate from it).
//! 2. It POSTs a [`JoinRequest`] (node name, its fresh node id, advertise address, the
//!    token). A host that does not lead answers with the leader's address and the joiner
//!    asks there.
//! 3. The leader checks the token (known, right secret, unexpired), the name (not a member,
//!    no Node of that name) and its own quorum, allocates a pod CIDR, signs a node
//!    certificate (the leader generates the key: the joiner has nothing to sign a CSR with
//!    that the token does not already authorise), creates its Node object, adds the host as
//!    a learner (in that order: a member without a Node is a forgotten host, see
//!    [`super::members`]), and answers with the CA (and its key, so that any host can later lead and
//!    admit), the node certificate and the members. A refusal changes nothing.
//! 4. The joiner stores the identity and starts raft with that membership; the leader's
//!    rebalancer promotes it to voter when the voter count calls for it.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Cluster;
use super::identity::{ClusterRecord, Identity};
use super::pki::{CertifiedKey, PkiDir, fingerprint, first_certificate_der};
use super::tls;
use super::token::{JoinToken, TOKEN_NAMESPACE, TokenError, TokenRecord};
use crate::state::raft::{Member, NodeId, PeerClient, PeerError};
use crate::state::{Command, ProposeError, State, Timestamp};

/// The CA download endpoint (no client certificate needed).
pub const CA_PATH: &str = "/cluster/v1/ca";
/// The join endpoint (the token authorises it).
pub const JOIN_PATH: &str = "/cluster/v1/join";

/// The CA certificate, as served to joining hosts.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaAnswer {
    /// PEM.
    pub ca_cert: String,
}

/// What a joining host sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The whole join token.
    pub token: String,
    /// The joiner's node name.
    pub node_name: String,
    /// The joiner's raft node id (random, generated on its first start).
    pub node_id: NodeId,
    /// Where peers reach it, `ADDR:PORT`.
    pub address: String,
    /// Its CPU architecture (for the Node's labels).
    pub arch: String,
}

/// What the joiner receives when admitted.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Admission {
    /// The CA certificate, PEM.
    pub ca_cert: String,
    /// The CA key, PEM.
    pub ca_key: Option<String>,
    /// The joiner's node certificate and key.
    pub node: CertifiedKey,
    /// Its pod CIDR.
    pub pod_cidr: Ipv4Net,
    /// The cluster CIDR.
    pub cluster_cidr: Ipv4Net,
    /// The members, the joiner included.
    pub members: Vec<(NodeId, Member)>,
}

/// The answer of the join endpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum JoinAnswer {
    /// Admitted.
    Admitted(Box<Admission>),
    /// This host does not lead: ask the leader at this address.
    AskLeader(String),
    /// Refused; the message says why. Nothing changed.
    Refused(String),
}

/// Why a host could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token is malformed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A request failed.
    #[error("cannot reach {server} to join")]
    Peer {
        /// The host asked.
        server: String,
        /// The cause.
        #[source]
        source: PeerError,
    },
    /// The CA the server presents is not the one the token names.
    #[error(
        "the CA of {server} (sha256 {actual}) is not the one the join token names (sha256 {expected}): refusing to join"
    )]
    WrongCa {
        /// The host asked.
        server: String,
        /// The token's fingerprint.
        expected: String,
        /// The served CA's.
        actual: String,
    },
    /// The server sent no certificate.
    #[error("{server} sent a CA answer without a PEM certificate")]
    NoCa {
        /// The host asked.
        server: String,
    },
    /// The cluster refused.
    #[error("the cluster refused the join: {reason}")]
    Refused {
        /// Its reason.
        reason: String,
    },
    /// Redirected too often.
    #[error("no host led the cluster after {attempts} redirects (last: {server})")]
    NoLeader {
        /// How many.
        attempts: usize,
        /// The last host asked.
        server: String,
    },
    /// Storing the identity failed.
    #[error("cannot store the cluster identity")]
    Store(#[source] super::identity::IdentityError),
    /// TLS material from the server is unusable.
    #[error("the CA certificate from {server} is unusable")]
    Tls {
        /// The host asked.
        server: String,
        /// The cause.
        #[source]
        source: tls::TlsError,
    },
}

const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Joins the cluster of `server` with `token` as `node_name` (raft id `node_id`), reachable
/// at `address`. Stores the identity in `pki` and returns it.
pub async fn join(
    pki: &PkiDir,
    server: &str,
    token: &str,
    node_name: &str,
    node_id: NodeId,
    address: &str,
) -> Result<(Identity, Vec<(NodeId, Member)>), JoinError> {
    let token = JoinToken::parse(token)?;
    let peer_error = |server: &str| {
        let server = server.to_string();
        move |source| JoinError::Peer { server, source }
    };
    // 1. The CA, untrusted until its fingerprint matches.
    let untrusting = PeerClient::with_config(server, tls::untrusting_client_config());
    let ca: CaAnswer = untrusting
        .get(CA_PATH, JOIN_TIMEOUT)
        .await
        .map_err(peer_error(server))?;
    let der = first_certificate_der(&ca.ca_cert).ok_or_else(|| JoinError::NoCa {
        server: server.to_string(),
    })?;
    let actual = fingerprint(&der);
    if actual != token.ca_fingerprint {
        return Err(JoinError::WrongCa {
            server: server.to_string(),
            expected: token.ca_fingerprint.clone(),
            actual,
        });
    }
    let trusting = tls::client_config(&ca.ca_cert, None).map_err(|source| JoinError::Tls {
        server: server.to_string(),
        source,
    })?;
    // 2. The join, following the leader.
    let request = JoinRequest {
        token: token.to_string(),
        node_name: node_name.to_string(),
        node_id,
        address: address.to_string(),
        arch: std::env::consts::ARCH.to_string(),
    };
    let mut target = server.to_string();
    for _ in 0..5 {
        let client = PeerClient::with_config(&target, trusting.clone());
        let answer: JoinAnswer = client
            .post(JOIN_PATH, &request, JOIN_TIMEOUT)
            .await
            .map_err(peer_error(&target))?;
        match answer {
            JoinAnswer::Admitted(admission) => {
                let identity = Identity {
                    ca: super::pki::Ca::from_pem(&admission.ca_cert, admission.ca_key.clone())
                        .map_err(|e| JoinError::Store(e.into()))?,
                    node: admission.node.clone(),
                    record: ClusterRecord {
                        cluster_cidr: admission.cluster_cidr,
                        pod_cidr: admission.pod_cidr,
                        founder: false,
                    },
                };
                identity.store(pki).map_err(JoinError::Store)?;
                return Ok((identity, admission.members));
            }
            JoinAnswer::AskLeader(leader) => {
                tracing::info!(asked = %target, %leader, "the host asked does not lead: asking the leader");
                target = leader;
            }
            JoinAnswer::Refused(reason) => return Err(JoinError::Refused { reason }),
        }
    }
    Err(JoinError::NoLeader {
        attempts: 5,
        server: target,
    })
}

impl Cluster {
    /// The leader's side of a join (the join endpoint). Every refusal leaves the cluster
    /// as it was.
    pub async fn admit(&self, request: JoinRequest) -> JoinAnswer {
        match self.try_admit(request).await {
            Ok(answer) => answer,
            Err(reason) => {
                tracing::warn!(%reason, "refused a join");
                JoinAnswer::Refused(reason)
            }
        }
    }

    async fn try_admit(&self, request: JoinRequest) -> Result<JoinAnswer, String> {
        let state = self.state();
        let token = JoinToken::parse(&request.token).map_err(|e| e.to_string())?;
        let ours = self.identity().ca.fingerprint();
        if token.ca_fingerprint != ours {
            return Err(format!(
                "the join token names another cluster's CA (sha256 {}; this cluster's is {ours})",
                token.ca_fingerprint
            ));
        }
        let record = state
            .get(
                "Secret",
                TOKEN_NAMESPACE,
                &TokenRecord::object_name(&token.id),
            )
            .and_then(|object| TokenRecord::from_object(&object))
            .ok_or_else(|| {
                TokenError::Unknown {
                    id: token.id.clone(),
                }
                .to_string()
            })?;
        record
            .check(&token, Timestamp::now().unix_seconds())
            .map_err(|e| e.to_string())?;
        if !state.is_leader() {
            let metrics = state.raft().metrics().borrow().clone();
            let leader = metrics.current_leader.and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .cloned()
            });
            return match leader {
                Some(member) if !member.address.is_empty() => Ok(JoinAnswer::AskLeader(member.address)),
                _ => Err("the cluster has no leader (no quorum): try again when a majority of its hosts is up".to_string()),
            };
        }
        if !crate::config::is_dns_subdomain(&request.node_name) {
            return Err(format!(
                "node name {:?} must be a lowercase RFC 1123 subdomain",
                request.node_name
            ));
        }
        let address: std::net::SocketAddr = request.address.parse().map_err(|_| {
            format!(
                "the joining host's address {:?} is not IP:PORT",
                request.address
            )
        })?;
        let _serial = self.inner.join_lock.lock().await;
        let metrics = state.raft().metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        for (id, member) in membership.nodes() {
            if member.name == request.node_name {
                return Err(format!(
                    "node name {:?} is already used by member {id} ({member}); remove that node first or choose another --node-name",
                    request.node_name
                ));
            }
            if *id == request.node_id {
                return Err(format!(
                    "node id {id} is already a member ({member}); the joining host must start from an empty data directory"
                ));
            }
        }
        if state.get("Node", "", &request.node_name).is_some() {
            return Err(format!(
                "a Node named {:?} already exists; choose another --node-name",
                request.node_name
            ));
        }
        let (nodes, _) = state.list("Node", None);
        let used: Vec<Ipv4Net> = nodes
            .iter()
            .filter_map(|n| {
                n.pointer("/spec/podCIDR")
                    .and_then(|c| c.as_str())
                    .and_then(|c| c.parse().ok())
            })
            .collect();
        let cluster_cidr = self.identity().record.cluster_cidr;
        let pod_cidr = super::cidr::allocate(cluster_cidr, &used).map_err(|e| e.to_string())?;
        let ca = &self.identity().ca;
        let node_cert = ca
            .sign_node(&request.node_name, &[address.ip()])
            .map_err(|e| format!("cannot sign the node certificate: {e}"))?;

        // Refuse before writing anything: a membership entry appended without quorum would
        // commit later, when the majority returns, and add a host that gave up.
        state.check_quorum().map_err(|error| error.to_string())?;
        // The Node first, then the learner: a member without a Node is a forgotten host
        // (see `members`), so the membership task must never see an admitted host that way.
        let node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": request.node_name, "labels": {
                "kubernetes.io/hostname": request.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": request.arch,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": request.arch,
            }},
            "spec": {"podCIDR": pod_cidr.to_string(), "podCIDRs": [pod_cidr.to_string()]},
        });
        let node_uid = uuid::Uuid::new_v4().to_string();
        state
            .propose(Command::create(node, node_uid.clone(), Timestamp::now()))
            .await
            .map_err(|error| format!("cannot create the Node object: {error}"))?;
        let member = Member {
            name: request.node_name.clone(),
            address: request.address.clone(),
        };
        let added = tokio::time::timeout(
            self.write_timeout(),
            state
                .raft()
                .add_learner(request.node_id, member.clone(), false),
        )
        .await;
        let failed = match added {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(format!("cannot add the host to the raft group: {error}")),
            Err(_) => Some("no quorum: the cluster could not commit the new member; try again when a majority of its hosts is up".to_string()),
        };
        if let Some(reason) = failed {
            self.remove_node(&request.node_name, node_uid).await;
            return Err(reason);
        }
        tracing::info!(node = %request.node_name, node_id = request.node_id, address = %request.address, %pod_cidr, "admitted a host as a learner");
        let members = state
            .membership()
            .nodes()
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        Ok(JoinAnswer::Admitted(Box::new(Admission {
            ca_cert: ca.cert_pem().to_string(),
            ca_key: ca.key_pem().map(str::to_string),
            node: node_cert,
            pod_cidr,
            cluster_cidr,
            members,
        })))
    }

    /// Deletes the Node of a host whose admission failed after it was created.
    async fn remove_node(&self, name: &str, uid: String) {
        let delete = Command::Delete {
            key: crate::state::ObjectKey::new("Node", "", name),
            precondition_uid: Some(uid),
            precondition_resource_version: None,
            grace_period_seconds: Some(0),
            propagation: Default::default(),
            now: Timestamp::now(),
        };
        if let Err(error) = self.state().propose(delete).await {
            tracing::error!(node = %name, %error, "could not delete the Node of a host whose join failed");
        }
    }
}

/// Creates a join token valid for `ttl` and stores its hashed record in the state.
pub async fn create_token(
    state: &State,
    ca_fingerprint: &str,
    ttl: Duration,
) -> Result<(JoinToken, i64), ProposeError> {
    crate::controllers::namespace::ensure(state, TOKEN_NAMESPACE).await?;
    let token = JoinToken::generate(ca_fingerprint);
    let expires = Timestamp::now().unix_seconds() + ttl.as_secs() as i64;
    let object = token.record(expires).to_object();
    state
        .propose(Command::create(
            object,
            uuid::Uuid::new_v4().to_string(),
            Timestamp::now(),
        ))
        .await?;
    Ok((token, expires))
}

/// The advertise address of this host: the configured IP or the one the routing table picks.
pub fn advertise_ip(configured: Option<IpAddr>) -> Option<IpAddr> {
    configured.or_else(|| crate::kubelet::node::host_ip().and_then(|ip| ip.parse().ok()))
}
