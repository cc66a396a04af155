//! Logs and exec for pods on this node, and the node-level image API: the kubelet's side of
//! [`crate::api::NodeIo`].

use std::sync::Arc;
use std::time::Duration;

use berth_runtime::ExecRequest;
use berth_runtime::logs::{LogFollower, LogLine, read_log};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;

use super::NodeContext;
use crate::api::request::{ExecOptions, LogOptions};
use crate::api::{ApiError, ByteStream, ExecSession, NodeIo};

/// The kubelet's [`NodeIo`].
pub struct KubeletIo {
    pub node: Arc<NodeContext>,
}

fn s<'a>(pod: &'a Value, pointer: &str) -> &'a str {
    pod.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Picks the container: the one named, or the only one; several without a name is an error,
/// as the API server words it.
fn pick_container(pod: &Value, named: Option<&str>) -> Result<String, ApiError> {
    if let Some(n) = named {
        return Ok(n.to_string());
    }
    let names: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match names.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {}, choose one of: [{}]",
            s(pod, "/metadata/name"),
            names.join(" ")
        ))),
    }
}

fn format_line(line: &LogLine, timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.content.len() + 40);
    if timestamps {
        out.extend_from_slice(line.timestamp.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&line.content);
    out.push(b'\n');
    out
}

impl NodeIo for KubeletIo {
    fn logs(
        &self,
        pod: Arc<Value>,
        options: LogOptions,
    ) -> BoxFuture<'static, Result<ByteStream, ApiError>> {
        let node = self.node.clone();
        Box::pin(async move {
            let container = pick_container(&pod, options.container.as_deref())?;
            let uid = s(&pod, "/metadata/uid").to_string();
            let pod_name = s(&pod, "/metadata/name").to_string();
            let ns = s(&pod, "/metadata/namespace").to_string();
            // Runs from the kubelet's registry, else from the log files on disk.
            let mut runs = node.runs_of(&uid, &container);
            if runs.is_empty() {
                let dir = node.pod_log_dir(&ns, &pod_name, &uid).join(&container);
                let mut attempts: Vec<u32> = std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_suffix(".log"))
                            .and_then(|a| a.parse().ok())
                    })
                    .collect();
                attempts.sort();
                runs = attempts
                    .into_iter()
                    .filter_map(|a| {
                        berth_runtime::ContainerId::new(format!("{uid}-{container}-{a}"))
                            .ok()
                            .map(|id| super::RunRef {
                                id,
                                attempt: a,
                                running: false,
                                log_path: node.log_path(&ns, &pod_name, &uid, &container, a),
                            })
                    })
                    .collect();
            }
            let run = if options.previous {
                runs.len().checked_sub(2).map(|i| runs[i].clone()).ok_or_else(|| {
                    ApiError::bad_request(format!("previous terminated container {container:?} in pod {pod_name:?} not found"))
                })?
            } else {
                runs.last().cloned().ok_or_else(|| {
                    ApiError::bad_request(format!("container {container:?} in pod {pod_name:?} is waiting to start: ContainerCreating"))
                })?
            };
            let timestamps = options.timestamps;
            let limit = options.limit_bytes;
            if !options.follow || options.previous {
                let path = run.log_path.clone();
                let tail = options.tail_lines;
                let lines = tokio::task::spawn_blocking(move || read_log(&path, tail))
                    .await
                    .map_err(|e| ApiError::internal(e.to_string()))?
                    .map_err(|e| {
                        ApiError::internal(format!("reading {}: {e}", run.log_path.display()))
                    })?;
                let mut body: Vec<u8> = lines
                    .iter()
                    .flat_map(|l| format_line(l, timestamps))
                    .collect();
                if let Some(limit) = limit {
                    body.truncate(limit as usize);
                }
                let stream: ByteStream =
                    Box::pin(futures_util::stream::once(
                        async move { Ok(Bytes::from(body)) },
                    ));
                return Ok(stream);
            }
            let mut follower = LogFollower::open(run.log_path.clone(), options.tail_lines)
                .map_err(|e| {
                    ApiError::internal(format!("reading {}: {e}", run.log_path.display()))
                })?;
            let id = run.id.clone();
            // Follow until the container run ends and its last lines are out.
            let stream = async_stream_follow(
                move |tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>| async move {
                    let mut sent: u64 = 0;
                    loop {
                        let running = node.is_running(&uid, &id);
                        let next =
                            tokio::time::timeout(Duration::from_millis(500), follower.next_line())
                                .await;
                        match next {
                            Ok(Ok(line)) => {
                                let bytes = format_line(&line, timestamps);
                                sent += bytes.len() as u64;
                                if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                                    return;
                                }
                                if limit.is_some_and(|l| sent >= l) {
                                    return;
                                }
                            }
                            Ok(Err(e)) => {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                            Err(_) if !running => {
                                // Drain what is left, then end.
                                if let Ok(rest) = follower.available() {
                                    for line in rest {
                                        let _ = tx
                                            .send(Ok(Bytes::from(format_line(&line, timestamps))))
                                            .await;
                                    }
                                }
                                return;
                            }
                            Err(_) => {}
                        }
                    }
                },
            );
            Ok(stream)
        })
    }

    fn exec(
        &self,
        pod: Arc<Value>,
        options: ExecOptions,
    ) -> BoxFuture<'static, Result<ExecSession, ApiError>> {
        let node = self.node.clone();
        Box::pin(async move {
            let container = match options.container.clone() {
                Some(c) => c,
                None => pod
                    .pointer("/spec/containers/0/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            };
            let uid = s(&pod, "/metadata/uid").to_string();
            let run = node
                .runs_of(&uid, &container)
                .into_iter()
                .rev()
                .find(|r| r.running)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "unable to upgrade connection: container not found ({container:?})"
                    ))
                })?;
            let request = ExecRequest {
                command: options.command.clone(),
                env: vec![],
                working_dir: None,
                stdin: options.stdin,
            };
            let mut process = node
                .runtime
                .exec(&run.id, &request)
                .map_err(|e| ApiError::bad_request(super::images::error_chain(&e)))?;
            let stdin = process
                .child
                .stdin
                .take()
                .map(|w| Box::pin(w) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>);
            let stdout = process
                .child
                .stdout
                .take()
                .map(|r| Box::pin(r) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>);
            let stderr = process
                .child
                .stderr
                .take()
                .map(|r| Box::pin(r) as std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>);
            let exit = Box::pin(async move {
                match process.wait().await {
                    Ok(exit) => Ok(exit.exit_code),
                    // The command could not be started in the container (not found, ...).
                    Err(e) => Err(ApiError::internal(super::images::error_chain(&e))),
                }
            });
            Ok(ExecSession {
                stdin,
                stdout,
                stderr,
                exit,
            })
        })
    }

    fn node_request(
        &self,
        method: &str,
        path: &str,
        body: Value,
    ) -> BoxFuture<'static, Result<Value, ApiError>> {
        let images = self.node.images.clone();
        let (method, path) = (method.to_string(), path.to_string());
        Box::pin(async move {
            if path.starts_with("/apis/node.berth.io/v1/images") {
                images.node_request(&method, &path, body).await
            } else {
                Err(ApiError::not_found_path(&path))
            }
        })
    }
}

/// A stream fed by a task writing into a channel.
fn async_stream_follow<F, Fut>(f: F) -> ByteStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
