//! Probes: startup, readiness and liveness, each a task per container run that applies the
//! probe's timing and thresholds and reports only transitions to the pod worker. The first
//! probe runs as soon as the container starts when `initialDelaySeconds` is 0, so a pod whose
//! probe passes at once is Ready within milliseconds. HTTP and TCP probes connect from inside
//! the pod's network namespace, so they work whatever the pod's addressing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use berth_runtime::{ContainerId, ExecRequest, Runtime};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::events::{EventType, InvolvedObject, Recorder};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

impl ProbeKind {
    fn label(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Liveness => "Liveness",
        }
    }
}

/// A probe's verdict after its thresholds: sent to the pod worker on change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub container: String,
    /// The run (attempt) the probe belongs to; results of older runs are ignored.
    pub attempt: u32,
    pub kind: ProbeKind,
    /// Ok, or the failure message.
    pub outcome: Result<(), String>,
}

/// Where and how to probe one container run.
#[derive(Clone)]
pub struct ProbeTarget {
    pub runtime: Runtime,
    pub container_id: ContainerId,
    pub container: Container,
    pub attempt: u32,
    /// The pod's network namespace (`None`: the host's).
    pub netns: Option<PathBuf>,
    pub pod_ip: Option<IpAddr>,
    pub involved: InvolvedObject,
    pub events: Recorder,
}

/// Starts the container's probe tasks. Readiness and liveness wait until the startup probe
/// has succeeded. Abort the handles when the run ends.
pub fn start(
    target: ProbeTarget,
    tx: mpsc::Sender<ProbeResult>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let c = &target.container;
    let (started_tx, started_rx) = watch::channel(c.startup_probe.is_none());
    let mut handles = Vec::new();
    if let Some(p) = c.startup_probe.clone() {
        let (t, tx) = (target.clone(), tx.clone());
        handles.push(tokio::spawn(async move {
            let ok = probe_loop(ProbeKind::Startup, p, t, tx, None).await;
            if ok {
                let _ = started_tx.send(true);
                // Keep the sender alive so waiting probes see the value.
                std::future::pending::<()>().await;
            }
        }));
    } else {
        drop(started_tx);
    }
    for (kind, probe) in [
        (ProbeKind::Readiness, c.readiness_probe.clone()),
        (ProbeKind::Liveness, c.liveness_probe.clone()),
    ] {
        if let Some(p) = probe {
            let (t, tx, rx) = (target.clone(), tx.clone(), started_rx.clone());
            handles.push(tokio::spawn(async move {
                probe_loop(kind, p, t, tx, Some(rx)).await;
            }));
        }
    }
    handles
}

fn seconds(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

/// Runs one probe until it settles for good (startup succeeded, liveness failed) or the task
/// is aborted. Returns whether it ended in success.
async fn probe_loop(
    kind: ProbeKind,
    probe: Probe,
    target: ProbeTarget,
    tx: mpsc::Sender<ProbeResult>,
    started: Option<watch::Receiver<bool>>,
) -> bool {
    if let Some(mut started) = started {
        if started.wait_for(|s| *s).await.is_err() {
            return false;
        }
    }
    tokio::time::sleep(seconds(probe.initial_delay_seconds, 0)).await;
    let period = seconds(probe.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = probe.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = probe.failure_threshold.unwrap_or(3).max(1);
    let (mut successes, mut failures) = (0, 0);
    let mut reported: Option<bool> = None;
    loop {
        let outcome = match tokio::time::timeout(
            timeout + Duration::from_millis(200),
            run_once(&target, &probe, timeout),
        )
        .await
        {
            Ok(o) => o,
            Err(_) => Err(format!(
                "timeout: probe did not answer within {}s",
                timeout.as_secs()
            )),
        };
        match &outcome {
            Ok(()) => {
                successes += 1;
                failures = 0;
                if successes >= success_threshold && reported != Some(true) {
                    reported = Some(true);
                    send(&tx, &target, kind, Ok(())).await;
                }
            }
            Err(message) => {
                failures += 1;
                successes = 0;
                target.events.record(
                    target
                        .involved
                        .clone()
                        .with_field_path(format!("spec.containers{{{}}}", target.container.name)),
                    EventType::Warning,
                    "Unhealthy",
                    format!("{} probe failed: {message}", kind.label()),
                    "kubelet",
                );
                if failures >= failure_threshold && reported != Some(false) {
                    reported = Some(false);
                    send(
                        &tx,
                        &target,
                        kind,
                        Err(format!("{} probe failed: {message}", kind.label())),
                    )
                    .await;
                }
            }
        }
        match (kind, reported) {
            (ProbeKind::Startup, Some(true)) => return true,
            (ProbeKind::Startup | ProbeKind::Liveness, Some(false)) => return false,
            _ => {}
        }
        tokio::time::sleep(period).await;
    }
}

async fn send(
    tx: &mpsc::Sender<ProbeResult>,
    target: &ProbeTarget,
    kind: ProbeKind,
    outcome: Result<(), String>,
) {
    let _ = tx
        .send(ProbeResult {
            container: target.container.name.clone(),
            attempt: target.attempt,
            kind,
            outcome,
        })
        .await;
}

/// One probe attempt.
pub async fn run_once(
    target: &ProbeTarget,
    probe: &Probe,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let output = target
            .runtime
            .exec_output(&target.container_id, &ExecRequest::new(command), timeout)
            .await
            .map_err(|e| crate::kubelet::images::error_chain(&e))?;
        if output.exit.exit_code == 0 {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if !err.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&err);
        }
        return Err(if text.is_empty() {
            format!("command exited with code {}", output.exit.exit_code)
        } else {
            text
        });
    }
    if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, &target.container)?;
        let host = http.host.as_deref().filter(|h| !h.is_empty());
        let ip = match host {
            Some(h) => h
                .parse::<IpAddr>()
                .map_err(|_| format!("host {h:?} is not an IP address"))?,
            None => target.pod_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        };
        if http.scheme.as_deref() == Some("HTTPS") {
            return Err("HTTPS probes are not supported by berth yet".into());
        }
        let path = http
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return http_get(
            target.netns.clone(),
            SocketAddr::new(ip, port),
            &path,
            &headers,
            timeout,
        )
        .await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, &target.container)?;
        let ip = match tcp.host.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => h
                .parse::<IpAddr>()
                .map_err(|_| format!("host {h:?} is not an IP address"))?,
            None => target.pod_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        };
        let addr = SocketAddr::new(ip, port);
        return connect_in_netns(target.netns.clone(), addr, timeout)
            .await
            .map(drop)
            .map_err(|e| format!("dial tcp {addr}: connect: {e}"));
    }
    Err("the probe has no handler".into())
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("port {p} is out of range")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| {
                format!(
                    "port {name:?} is not a named port of container {}",
                    container.name
                )
            }),
    }
}

/// Connects to `addr` from inside a network namespace: a short-lived thread joins the namespace
/// (setns affects only that thread), creates the socket there (a socket stays in the namespace it
/// was created in) and hands it back.
pub async fn connect_in_netns(
    netns: Option<PathBuf>,
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("netns-connect".into())
        .spawn(move || {
            let result = (|| -> std::io::Result<std::net::TcpStream> {
                if let Some(ns) = netns {
                    let file = std::fs::File::open(&ns)?;
                    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                }
                let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                stream.set_nonblocking(true)?;
                Ok(stream)
            })();
            let _ = tx.send(result);
        })?;
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the connecting thread ended"))??;
    tokio::net::TcpStream::from_std(stream)
}

/// An HTTP/1.1 GET as kubelet's prober sends it; 200-399 is success.
async fn http_get(
    netns: Option<PathBuf>,
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), String> {
    let url = format!("http://{addr}{path}");
    let mut stream = connect_in_netns(netns, addr, timeout)
        .await
        .map_err(|e| format!("Get \"{url}\": dial tcp {addr}: connect: {e}"))?;
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.34\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("Get \"{url}\": {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < 4096 {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("Get \"{url}\": {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {code}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_probes_read_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for code in [200, 302, 500] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap();
                assert!(
                    String::from_utf8_lossy(&buf[..n]).starts_with("GET /healthz HTTP/1.1\r\n")
                );
                s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
            }
        });
        let t = Duration::from_secs(1);
        assert_eq!(http_get(None, addr, "/healthz", &[], t).await, Ok(()));
        assert_eq!(http_get(None, addr, "/healthz", &[], t).await, Ok(()));
        assert_eq!(
            http_get(None, addr, "/healthz", &[], t).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
    }

    #[tokio::test]
    async fn a_refused_connection_fails_with_the_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = connect_in_netns(None, addr, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c: Container = serde_json::from_value(
            serde_json::json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .unwrap();
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert!(resolve_port(&IntOrString::String("nope".into()), &c).is_err());
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
    }
}
