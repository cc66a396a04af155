//! The agent's DNS: a [`berth_dns::Authority`] fed from the state (pods and services, live,
//! through watches) and a [`berth_dns::DnsServer`] on the configured addresses.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use berth_dns::model::{
    Change, ContainerPort, ObjectKey, Pod, PodPhase, Protocol, Service, ServicePort, Snapshot,
    TargetPort,
};
use berth_dns::{Authority, DnsServer, ServerConfig, ZoneConfig};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::state::{EventType, State};

/// The running DNS authority and server.
pub struct Dns {
    pub authority: Arc<Authority>,
    server: Option<DnsServer>,
}

impl Dns {
    /// Addresses pods can use as their nameserver (not loopback: pods have their own).
    pub fn pod_addresses(&self) -> Vec<IpAddr> {
        self.server
            .as_ref()
            .map(|s| {
                s.local_addrs()
                    .iter()
                    .map(SocketAddr::ip)
                    .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        self.server
            .as_ref()
            .map(|s| s.local_addrs().to_vec())
            .unwrap_or_default()
    }

    pub async fn shutdown(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }
}

/// Where the server listens and whom it serves.
pub struct Listen {
    /// The pods' gateway, port 53.
    pub gateway: SocketAddr,
    /// Clients allowed to recurse (forwarded names): loopback, this node, the pod network.
    pub allowed: Vec<ipnet::IpNet>,
    /// The pod networks whose reverse zones are served.
    pub pod_networks: Vec<ipnet::IpNet>,
}

/// Starts the authority's feed and the server on the gateway plus any `--dns-listen`.
pub async fn start(
    config: &AgentConfig,
    state: State,
    listen: Listen,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Dns> {
    let zone = ZoneConfig {
        cluster_domain: config.cluster_domain.clone(),
        ttl: config.dns_ttl,
        pod_networks: listen.pod_networks.clone(),
        nameserver_ips: vec![listen.gateway.ip()],
    };
    let authority = Arc::new(Authority::new(zone)?);
    tokio::spawn(feed(state, authority.clone(), shutdown));
    let upstreams = config
        .dns_upstream
        .iter()
        .map(|u| parse_upstream(u))
        .collect::<Result<Vec<_>, _>>()?;
    let mut addrs = vec![listen.gateway];
    addrs.extend(config.dns_listen.iter().copied());
    let server_config = ServerConfig {
        listen: addrs,
        upstreams,
        allowed_networks: listen.allowed,
        ..ServerConfig::default()
    };
    let server = DnsServer::start(server_config, authority.clone()).await?;
    tracing::info!(listen = ?server.local_addrs(), upstreams = ?server.upstreams(), "DNS serving");
    Ok(Dns {
        authority,
        server: Some(server),
    })
}

fn parse_upstream(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip: IpAddr = s.parse().map_err(|_| {
        anyhow::anyhow!("--dns-upstream {s:?} is not an address (ADDR or ADDR:PORT)")
    })?;
    Ok(SocketAddr::new(ip, 53))
}

/// Keeps the authority equal to the state: a full snapshot first, then each change as it is
/// applied (readiness changes are visible in answers as soon as the state has them).
async fn feed(state: State, authority: Arc<Authority>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (pods, revision) = state.list("Pod", None);
        let (services, _) = state.list("Service", None);
        let snapshot = Snapshot {
            pods: pods.iter().map(|p| dns_pod(p)).collect(),
            services: services.iter().map(|s| dns_service(s)).collect(),
        };
        let authority_for_replace = authority.clone();
        let _ = tokio::task::spawn_blocking(move || authority_for_replace.replace(snapshot)).await;
        let (Ok(pod_events), Ok(service_events)) = (
            state.watch(Some("Pod"), None, Some(revision)),
            state.watch(Some("Service"), None, Some(revision)),
        ) else {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        };
        let mut events = futures_util::stream::select(pod_events, service_events);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(e)) => {
                        let kind = e.object.get("kind").and_then(Value::as_str).unwrap_or("");
                        let key = key_of(&e.object);
                        let change = match (kind, e.type_) {
                            ("Pod", EventType::Deleted) => Change::DeletePod(key),
                            ("Pod", _) => Change::UpsertPod(dns_pod(&e.object)),
                            ("Service", EventType::Deleted) => Change::DeleteService(key),
                            ("Service", _) => Change::UpsertService(dns_service(&e.object)),
                            _ => continue,
                        };
                        authority.apply([change]);
                    }
                    // Fell behind, or the stream ended: start over from a snapshot.
                    Some(Err(_)) | None => break,
                },
                _ = shutdown.changed() => if *shutdown.borrow() { return },
            }
        }
    }
}

fn key_of(o: &Value) -> ObjectKey {
    let s = |p: &str| {
        o.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    ObjectKey::new(s("/metadata/namespace"), s("/metadata/name"))
}

fn protocol(p: Option<&str>) -> Protocol {
    match p {
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        _ => Protocol::Tcp,
    }
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A Service as the DNS model sees it.
pub fn dns_service(o: &Value) -> Service {
    let spec = o.get("spec");
    let ports = spec
        .and_then(|s| s.get("ports"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| ServicePort {
            name: p
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            protocol: protocol(p.get("protocol").and_then(Value::as_str)),
            port: p.get("port").and_then(Value::as_u64).unwrap_or(0) as u16,
            target_port: match p.get("targetPort") {
                Some(Value::Number(n)) => n.as_u64().map(|n| TargetPort::Number(n as u16)),
                Some(Value::String(s)) => Some(
                    s.parse::<u16>()
                        .map(TargetPort::Number)
                        .unwrap_or_else(|_| TargetPort::Name(s.clone())),
                ),
                _ => None,
            },
        })
        .collect();
    Service {
        key: key_of(o),
        headless: spec
            .and_then(|s| s.get("clusterIP"))
            .and_then(Value::as_str)
            == Some("None"),
        selector: spec
            .and_then(|s| s.get("selector"))
            .filter(|v| v.is_object())
            .map(|v| string_map(Some(v))),
        publish_not_ready_addresses: spec
            .and_then(|s| s.get("publishNotReadyAddresses"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ports,
    }
}

/// A Pod as the DNS model sees it.
pub fn dns_pod(o: &Value) -> Pod {
    let status = o.get("status");
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.get("podIPs"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| {
            ip.get("ip")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
        })
        .collect();
    if ips.is_empty() {
        if let Some(ip) = status
            .and_then(|s| s.get("podIP"))
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
        {
            ips.push(ip);
        }
    }
    let ready = status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    let phase = match status.and_then(|s| s.get("phase")).and_then(Value::as_str) {
        Some("Running") => PodPhase::Running,
        Some("Succeeded") => PodPhase::Succeeded,
        Some("Failed") => PodPhase::Failed,
        Some("Unknown") => PodPhase::Unknown,
        _ => PodPhase::Pending,
    };
    let container_ports = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|p| ContainerPort {
            name: p.get("name").and_then(Value::as_str).map(str::to_string),
            protocol: protocol(p.get("protocol").and_then(Value::as_str)),
            container_port: p.get("containerPort").and_then(Value::as_u64).unwrap_or(0) as u16,
        })
        .collect();
    Pod {
        key: key_of(o),
        labels: string_map(o.pointer("/metadata/labels")),
        hostname: o
            .pointer("/spec/hostname")
            .and_then(Value::as_str)
            .map(str::to_string),
        subdomain: o
            .pointer("/spec/subdomain")
            .and_then(Value::as_str)
            .map(str::to_string),
        ips,
        ready,
        terminating: o
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null()),
        phase,
        container_ports,
    }
}
