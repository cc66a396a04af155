//! Logs and exec of a pod from any host: a request for `pods/{name}/log` or `pods/{name}/exec`
//! that reaches a host other than the pod's node is forwarded to that node's peer port over
//! mutual TLS with this host's node certificate, as the kube-apiserver proxies to the
//! kubelet. The answer streams back as it comes (`logs -f`); an exec's websocket upgrade is
//! passed through and the two upgraded connections are joined byte for byte.
//!
//! The caller was authenticated by the host it reached (root on the socket, or a client
//! certificate on the peer port); the pod's node trusts this host's node certificate. A
//! forwarded request carries [`FORWARDED_HEADER`] and is never forwarded again (a stale
//! replica cannot bounce it between hosts).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::Cluster;

/// Marks a request forwarded by another host; its value is that host's name.
pub const FORWARDED_HEADER: &str = "x-berth-forwarded-by";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a pod's logs and exec are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodRoute {
    /// By this host (its pod, or no pod, or already forwarded once).
    Local,
    /// By the pod's node, at its peer address.
    Remote {
        /// The pod's node.
        node: String,
        /// Its peer port, `ADDR:PORT`.
        address: String,
    },
    /// By a node that is not a member of the cluster (forgotten).
    NoMember {
        /// The pod's node.
        node: String,
    },
}

/// Decides where a pod's logs and exec are served. `pod_node` is the pod's `spec.nodeName`
/// (`None` when there is no such pod or it is not bound yet: the local API answers that),
/// `address_of` the peer address of a member by name.
pub fn pod_route(
    pod_node: Option<&str>,
    here: &str,
    forwarded: bool,
    address_of: impl Fn(&str) -> Option<String>,
) -> PodRoute {
    match pod_node {
        None | Some("") => PodRoute::Local,
        Some(node) if node == here || forwarded => PodRoute::Local,
        Some(node) => match address_of(node) {
            Some(address) => PodRoute::Remote {
                node: node.to_string(),
                address,
            },
            None => PodRoute::NoMember {
                node: node.to_string(),
            },
        },
    }
}

/// The pod log and exec routes (merged into the cluster routes served on the socket and the
/// peer port).
pub fn routes(cluster: Cluster) -> axum::Router {
    axum::Router::new()
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/log",
            get(pod_io),
        )
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            get(pod_io).post(pod_io),
        )
        .with_state(cluster)
}

async fn pod_io(
    State(cluster): State<Cluster>,
    axum::extract::Path((namespace, name)): axum::extract::Path<(String, String)>,
    request: Request,
) -> Response {
    let state = cluster.state();
    let pod = state.get("Pod", &namespace, &name);
    let pod_node = pod
        .as_deref()
        .and_then(|p| p.pointer("/spec/nodeName"))
        .and_then(Value::as_str);
    let forwarded = request.headers().contains_key(FORWARDED_HEADER);
    let membership = state.membership();
    let route = pod_route(pod_node, state.node_name(), forwarded, |node| {
        membership
            .nodes()
            .find(|(_, member)| member.name == node)
            .map(|(_, member)| member.address.clone())
    });
    match route {
        PodRoute::Local => match cluster.api() {
            Some(api) => crate::api::server::dispatch(State(api), request).await,
            None => failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "the agent is starting".to_string(),
            ),
        },
        PodRoute::NoMember { node } => failure(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!(
                "pod {name:?} is bound to node {node:?}, which is not a member of the cluster (forgotten?): its logs and exec are not reachable"
            ),
        ),
        PodRoute::Remote { node, address } => match forward(&cluster, &address, request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(pod = %name, %node, %address, error = %crate::kubelet::images::error_chain(&error), "forwarding a pod's logs or exec failed");
                failure(
                    StatusCode::BAD_GATEWAY,
                    "ServiceUnavailable",
                    format!(
                        "pod {name:?} runs on node {node:?}, which cannot be reached at {address}: {}",
                        crate::kubelet::images::error_chain(&error)
                    ),
                )
            }
        },
    }
}

/// Why forwarding to a pod's node failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// This host's node certificate is unusable.
    #[error("this host's node certificate is unusable")]
    Identity(#[source] super::identity::IdentityError),
    /// The address is not `HOST:PORT` with a usable host.
    #[error("the peer address {address:?} is not HOST:PORT")]
    Address {
        /// The address.
        address: String,
    },
    /// Connecting (TCP or TLS) failed or took too long.
    #[error("cannot connect to {address}")]
    Connect {
        /// The address.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("the request to {address} failed")]
    Http {
        /// The address.
        address: String,
        /// The cause.
        #[source]
        source: hyper::Error,
    },
}

async fn forward(
    cluster: &Cluster,
    address: &str,
    request: Request,
) -> Result<Response, ForwardError> {
    let tls = cluster
        .identity()
        .peer_client_config()
        .map_err(ForwardError::Identity)?;
    let bad_address = || ForwardError::Address {
        address: address.to_string(),
    };
    let (host, _) = address.rsplit_once(':').ok_or_else(bad_address)?;
    let server_name = rustls::pki_types::ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|_| bad_address())?;
    let connect_error = |source| ForwardError::Connect {
        address: address.to_string(),
        source,
    };
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| connect_error(timed_out()))?
        .map_err(connect_error)?;
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_rustls::TlsConnector::from(tls).connect(server_name, tcp),
    )
    .await
    .map_err(|_| connect_error(timed_out()))?
    .map_err(connect_error)?;
    let http_error = |source| ForwardError::Http {
        address: address.to_string(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });

    let (mut parts, body) = request.into_parts();
    let downstream = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let mut upstream_request = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone());
    for (name, value) in &parts.headers {
        if name != hyper::header::HOST {
            upstream_request = upstream_request.header(name, value);
        }
    }
    let here = HeaderValue::from_str(cluster.state().node_name())
        .unwrap_or(HeaderValue::from_static("unknown"));
    let upstream_request = upstream_request
        .header(hyper::header::HOST, address)
        .header(FORWARDED_HEADER, here)
        .body(body)
        .expect("parts of a valid request");
    let mut response = sender
        .send_request(upstream_request)
        .await
        .map_err(http_error)?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut response);
        match downstream {
            Some(downstream) => {
                tokio::spawn(splice(upstream, downstream));
            }
            None => {
                return Ok(failure(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the connection cannot be upgraded".to_string(),
                ));
            }
        }
        let (parts, _) = response.into_parts();
        return Ok(Response::from_parts(parts, axum::body::Body::empty()));
    }
    Ok(response.map(axum::body::Body::new))
}

/// Joins the caller's upgraded connection to the pod node's, until either side closes.
async fn splice(upstream: hyper::upgrade::OnUpgrade, downstream: hyper::upgrade::OnUpgrade) {
    let (upstream, downstream) = match tokio::try_join!(upstream, downstream) {
        Ok(both) => both,
        Err(error) => {
            tracing::debug!(%error, "a forwarded exec could not be upgraded");
            return;
        }
    };
    let mut upstream = TokioIo::new(upstream);
    let mut downstream = TokioIo::new(downstream);
    if let Err(error) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(%error, "a forwarded exec connection ended");
    }
}

fn failure(code: StatusCode, reason: &str, message: String) -> Response {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_is_served_where_it_runs_and_forwarded_at_most_once() {
        let address_of = |node: &str| (node == "h3").then(|| "10.0.0.3:7443".to_string());
        let remote = PodRoute::Remote {
            node: "h3".into(),
            address: "10.0.0.3:7443".into(),
        };
        let table: &[(&str, Option<&str>, bool, PodRoute)] = &[
            (
                "no such pod: the local API says so",
                None,
                false,
                PodRoute::Local,
            ),
            ("a pod not bound yet", Some(""), false, PodRoute::Local),
            ("a pod on this host", Some("h1"), false, PodRoute::Local),
            ("a pod on another member", Some("h3"), false, remote),
            (
                "a request forwarded once is served here",
                Some("h3"),
                true,
                PodRoute::Local,
            ),
            (
                "a pod on a forgotten node",
                Some("h9"),
                false,
                PodRoute::NoMember { node: "h9".into() },
            ),
        ];
        for (name, pod_node, forwarded, want) in table {
            assert_eq!(
                &pod_route(*pod_node, "h1", *forwarded, address_of),
                want,
                "{name}"
            );
        }
    }
}
