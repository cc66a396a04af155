//! The peer port: one HTTPS listener (default 0.0.0.0:7443) with mutual TLS against the
//! cluster CA.
//!
//! | path | who | what |
//! | --- | --- | --- |
//! | `GET /cluster/v1/ca` | anyone | the CA certificate (joiners check it against their token) |
//! | `POST /cluster/v1/join` | anyone with a valid token | [`Cluster::admit`] |
//! | `POST /peer/v1/raft/{append,vote,snapshot}` | node certificates | openraft RPCs |
//! | `POST /peer/v1/propose` | node certificates of members | a follower's write, committed here |
//! | `GET /peer/v1/membership` | node certificates | this host's view of the members ([`super::removal`]) |
//! | `/apis/cluster.berth.io/v1/...` | client certificates | tokens, kubeconfig, members |
//! | `/api/v1/namespaces/*/pods/*/{log,exec}` | client certificates | served here or forwarded to the pod's node ([`super::proxy`]) |
//! | everything else | client certificates | the Kubernetes-shaped API |
//!
//! Request bodies are limited: 64 MiB for raft RPCs (snapshots), 16 MiB for forwarded
//! writes, 64 KiB for joins, 4 MiB for the rest (the API applies its own, smaller limit).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use hyper_util::rt::TokioIo;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Cluster;
use super::join::{CA_PATH, CaAnswer, JOIN_PATH, JoinRequest};
use super::members::proposal_refusal;
use super::pki::{ADMIN_GROUP, NODES_GROUP, Subject, subject_of};
use super::removal::{MEMBERSHIP_PATH, MembershipView};
use crate::api::Api;
use crate::state::raft::{NodeId, TypeConfig, paths};
use crate::state::{Command, ForwardAnswer};

/// Who is on the other end of a peer-port connection: the subject of its verified client
/// certificate, if it presented one.
#[derive(Clone, Debug, Default)]
pub struct PeerIdentity(pub Option<Subject>);

const RAFT_BODY: usize = 64 << 20;
const PROPOSE_BODY: usize = 16 << 20;
const JOIN_BODY: usize = 64 << 10;
const OTHER_BODY: usize = 4 << 20;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Peer {
    cluster: Cluster,
}

/// The peer port's routes; `api` (set once the agent has started it) serves everything that
/// is not a peer or cluster route.
///
/// Every host serves one, so this also starts the host's removal watch ([`super::removal`]),
/// which ends when the cluster is dropped.
pub fn router(cluster: Cluster, api: Arc<std::sync::OnceLock<Api>>) -> axum::Router {
    let _ = cluster.inner.api.set(api.clone());
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(super::removal::watch(Arc::downgrade(&cluster.inner)));
    }
    let peer = Peer {
        cluster: cluster.clone(),
    };
    let raft = axum::Router::new()
        .route(paths::APPEND, post(append))
        .route(paths::VOTE, post(vote))
        .route(paths::SNAPSHOT, post(snapshot))
        .layer(DefaultBodyLimit::max(RAFT_BODY))
        .merge(
            axum::Router::new()
                .route(paths::PROPOSE, post(propose))
                .layer(DefaultBodyLimit::max(PROPOSE_BODY)),
        )
        .route(MEMBERSHIP_PATH, get(membership))
        .route_layer(middleware::from_fn(require_node))
        .with_state(peer.clone());
    let open = axum::Router::new()
        .route(CA_PATH, get(ca))
        .route(
            JOIN_PATH,
            post(join)
                .layer(DefaultBodyLimit::max(JOIN_BODY))
                .layer(middleware::from_fn(|request: Request, next: Next| {
                    declared_length_at_most(JOIN_BODY, request, next)
                })),
        )
        .with_state(peer);
    let clients = admin_routes(cluster)
        .fallback(move |request: Request| {
            let api = api.get().cloned();
            async move {
                match api {
                    Some(api) => crate::api::server::dispatch(State(api), request).await,
                    None => status(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailable",
                        "the agent is starting",
                    ),
                }
            }
        })
        .layer(middleware::from_fn(require_client));
    open.merge(raft)
        .merge(clients)
        .layer(DefaultBodyLimit::max(OTHER_BODY))
}

/// Cluster administration for root on the socket and for admin certificates on the peer
/// port: `POST tokens`, `GET kubeconfig`, `GET members`; and pods' logs and exec, forwarded
/// to the pod's node when it is another host ([`super::proxy`]).
pub fn admin_routes(cluster: Cluster) -> axum::Router {
    axum::Router::new()
        .route("/apis/cluster.berth.io/v1/tokens", post(create_token))
        .route("/apis/cluster.berth.io/v1/kubeconfig", get(kubeconfig))
        .route("/apis/cluster.berth.io/v1/members", get(members))
        .with_state(Peer {
            cluster: cluster.clone(),
        })
        .merge(super::proxy::routes(cluster))
}

/// Refuses a request whose declared length (`Content-Length`) is over `limit` before any of
/// its body is read: the client gets its 413 at once, and one that waits for `100 Continue`
/// before sending a large body (curl, Go's client) sends none of it. A body of undeclared
/// length is still cut off at the limit while it is read.
async fn declared_length_at_most(limit: usize, request: Request, next: Next) -> Response {
    match crate::api::server::declared_length(request.headers()) {
        Some(length) if length > limit as u64 => status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the request body ({length} bytes) is larger than {limit} bytes"),
        ),
        _ => next.run(request).await,
    }
}

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message.into(), "reason": reason, "code": code.as_u16()});
    (code, Json(body)).into_response()
}

fn identity(request: &Request) -> Option<Subject> {
    request
        .extensions()
        .get::<PeerIdentity>()
        .and_then(|identity| identity.0.clone())
}

async fn require_node(request: Request, next: Next) -> Response {
    match identity(&request) {
        Some(subject) if subject.groups.iter().any(|g| g == NODES_GROUP) => next.run(request).await,
        Some(subject) => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{:?} is not a cluster node", subject.common_name),
        ),
        None => status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "peer endpoints need a node certificate from the cluster CA",
        ),
    }
}

async fn require_client(request: Request, next: Next) -> Response {
    // Requests on the unix socket carry no identity extension: root was checked there.
    let on_socket = request.extensions().get::<PeerIdentity>().is_none();
    match identity(&request) {
        _ if on_socket => next.run(request).await,
        Some(subject)
            if subject
                .groups
                .iter()
                .any(|g| g == NODES_GROUP || g == ADMIN_GROUP) =>
        {
            next.run(request).await
        }
        Some(subject) => status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{:?} may not use the API", subject.common_name),
        ),
        None => status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the API needs a client certificate from the cluster CA (see `berth kubeconfig`)",
        ),
    }
}

async fn ca(State(peer): State<Peer>) -> Json<CaAnswer> {
    Json(CaAnswer {
        ca_cert: peer.cluster.identity().ca.cert_pem().to_string(),
    })
}

async fn join(
    State(peer): State<Peer>,
    Json(request): Json<JoinRequest>,
) -> Json<super::join::JoinAnswer> {
    Json(peer.cluster.admit(request).await)
}

async fn append(
    State(peer): State<Peer>,
    Json(request): Json<AppendEntriesRequest<TypeConfig>>,
) -> Json<Result<openraft::raft::AppendEntriesResponse<NodeId>, RaftError<NodeId>>> {
    Json(peer.cluster.state().raft().append_entries(request).await)
}

async fn vote(
    State(peer): State<Peer>,
    Json(request): Json<VoteRequest<NodeId>>,
) -> Json<Result<openraft::raft::VoteResponse<NodeId>, RaftError<NodeId>>> {
    Json(peer.cluster.state().raft().vote(request).await)
}

async fn snapshot(
    State(peer): State<Peer>,
    Json(request): Json<InstallSnapshotRequest<TypeConfig>>,
) -> Json<
    Result<
        openraft::raft::InstallSnapshotResponse<NodeId>,
        RaftError<NodeId, InstallSnapshotError>,
    >,
> {
    Json(peer.cluster.state().raft().install_snapshot(request).await)
}

async fn propose(
    State(peer): State<Peer>,
    Extension(identity): Extension<PeerIdentity>,
    Json(command): Json<Command>,
) -> Json<ForwardAnswer> {
    let state = peer.cluster.state();
    let sender = identity.0.map(|s| s.common_name).unwrap_or_default();
    let is_member = state
        .membership()
        .nodes()
        .any(|(_, member)| member.name == sender);
    let own_node = state.get("Node", "", &sender).is_some();
    if let Some(refusal) = proposal_refusal(&sender, is_member, own_node, &command) {
        tracing::warn!(host = %sender, "refused a write forwarded by a host that was removed or forgotten");
        return Json(ForwardAnswer::Failed(refusal));
    }
    Json(ForwardAnswer::of(state.propose_local(command).await))
}

async fn membership(State(peer): State<Peer>) -> Json<MembershipView> {
    let state = peer.cluster.state();
    let metrics = state.raft().metrics().borrow().clone();
    Json(MembershipView {
        leading: metrics.current_leader == Some(state.node_id()),
        members: metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect(),
    })
}

/// The body of `POST /apis/cluster.berth.io/v1/tokens`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// How long the token is valid, in seconds.
    pub ttl_seconds: u64,
}

async fn create_token(State(peer): State<Peer>, Json(request): Json<TokenRequest>) -> Response {
    if request.ttl_seconds == 0 {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "ttlSeconds: must be greater than 0",
        );
    }
    let fingerprint = peer.cluster.identity().ca.fingerprint();
    match super::join::create_token(
        peer.cluster.state(),
        &fingerprint,
        Duration::from_secs(request.ttl_seconds),
    )
    .await
    {
        Ok((token, expires)) => {
            let expires = chrono::DateTime::from_timestamp(expires, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            Json(json!({"token": token.to_string(), "id": token.id, "expires": expires}))
                .into_response()
        }
        Err(error) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            error.to_string(),
        ),
    }
}

#[derive(Debug, Deserialize)]
struct KubeconfigQuery {
    server: Option<String>,
    user: Option<String>,
}

async fn kubeconfig(State(peer): State<Peer>, Query(query): Query<KubeconfigQuery>) -> Response {
    let identity = peer.cluster.identity();
    let user = query.user.unwrap_or_else(|| "admin".to_string());
    let client = match identity.ca.sign_client(&user, ADMIN_GROUP) {
        Ok(client) => client,
        Err(error) => {
            return status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                format!("cannot sign a client certificate: {error}"),
            );
        }
    };
    let server = query.server.unwrap_or_else(|| {
        let metrics = peer.cluster.state().raft().metrics().borrow().clone();
        let address = metrics
            .membership_config
            .membership()
            .get_node(&peer.cluster.state().node_id())
            .map(|m| m.address.clone())
            .unwrap_or_default();
        format!(
            "https://{}",
            if address.is_empty() {
                "127.0.0.1:7443".to_string()
            } else {
                address
            }
        )
    });
    Json(json!({"kubeconfig": super::kubeconfig::render(&server, identity.ca.cert_pem(), &client, &user)})).into_response()
}

async fn members(State(peer): State<Peer>) -> Json<serde_json::Value> {
    let metrics = peer.cluster.state().raft().metrics().borrow().clone();
    let membership = metrics.membership_config.membership();
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let items: Vec<_> = membership
        .nodes()
        .map(|(id, member)| {
            json!({"id": id.to_string(), "name": member.name, "address": member.address,
                   "role": if Some(*id) == metrics.current_leader { "leader" } else if voters.contains(id) { "voter" } else { "learner" }})
        })
        .collect();
    Json(
        json!({"leader": metrics.current_leader.map(|id| id.to_string()), "term": metrics.current_term, "members": items}),
    )
}

/// Serves `router` on `listener` with TLS until `shutdown` turns true. Each connection's
/// verified client certificate becomes a [`PeerIdentity`] request extension.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a peer connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => if *shutdown.borrow() { return } else { continue },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        let mut connection_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake on the peer port failed");
                    return;
                }
                Err(_) => return,
            };
            let subject = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| subject_of(cert));
            let identity = PeerIdentity(subject);
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(identity.clone());
                    let mut router = router.clone();
                    async move {
                        tower_service::Service::call(
                            &mut router,
                            request.map(axum::body::Body::new),
                        )
                        .await
                    }
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            let stopping = async move {
                let _ = connection_shutdown.wait_for(|stop| *stop).await;
            };
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stopping => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), connection).await;
        });
    }
}
