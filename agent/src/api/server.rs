//! The HTTP layer: serves [`Api`] on the agent's unix socket. It only translates: HTTP
//! request to [`Request`], [`Response`] to HTTP (JSON, watch lines, log bytes, or a websocket
//! for exec with Kubernetes' channel protocol).
//!
//! Access: the socket is created mode 0600 and owned by root, and every connection's peer
//! credentials are checked: only uid 0 is served.

use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::handler::{Api, ExecSession, Response};
use super::request::{self, ExecOptions, HttpParts, Request};
use super::status::ApiError;

/// Binds the API socket: removes a stale socket file, binds, and restricts it to root.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Bind with a restrictive umask so the socket is never reachable by others, not even for
    // the instant between bind and chmod.
    // SAFETY: umask only changes this process's file-creation mask; it is restored at once.
    let old = unsafe { libc::umask(0o177) };
    let listener = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = listener?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// A unix listener that only hands out connections from root.
pub struct RootOnly {
    listener: UnixListener,
    path: PathBuf,
}

impl RootOnly {
    pub fn new(listener: UnixListener, path: PathBuf) -> RootOnly {
        RootOnly { listener, path }
    }
}

impl axum::serve::Listener for RootOnly {
    type Io = UnixStream;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => match stream.peer_cred() {
                    Ok(cred) if cred.uid() == 0 => return (stream, addr),
                    Ok(cred) => {
                        tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), socket = %self.path.display(), "refused an API connection from a non-root user");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refused an API connection whose peer is unknown")
                    }
                },
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an API connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// Serves the API until `shutdown` resolves; `extra` routes (cluster administration) are
/// matched first.
pub async fn serve(
    listener: RootOnly,
    api: Api,
    extra: Option<axum::Router>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = axum::Router::new().fallback(dispatch).with_state(api);
    let app = match extra {
        Some(extra) => extra.merge(app),
        None => app,
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Translates one HTTP request into an [`Api`] call and its answer back (also used by the
/// peer port's TLS server).
pub async fn dispatch(
    State(api): State<Api>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (mut parts, body) = request.into_parts();
    let ws = WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .ok();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // A body declared too large is refused before any of it is read (a client waiting for
    // `100 Continue` then sends none of it); one of undeclared length is cut off at the limit.
    if let Some(length) = declared_length(&parts.headers)
        && length > request::MAX_BODY_BYTES as u64
    {
        return error_response(&ApiError::too_large(format!(
            "the request body ({length} bytes) is larger than {} bytes",
            request::MAX_BODY_BYTES
        )));
    }
    let body = match axum::body::to_bytes(body, request::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return error_response(&ApiError::too_large(format!(
                "the request body is larger than {} bytes",
                request::MAX_BODY_BYTES
            )));
        }
    };
    if method == "GET" && path == "/openapi/v2" {
        // kubectl asks for protocol buffers; anything else gets the JSON form.
        let wants_protobuf = accept
            .as_deref()
            .is_some_and(|a| a.contains(super::discovery::OPENAPI_V2_PROTOBUF));
        return if wants_protobuf {
            // The reply's type is octet-stream, as kube-apiserver sends it: Go's media type
            // parser rejects the `@` in the requested type, and kubectl would fail on it.
            (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )],
                super::discovery::openapi_v2_protobuf(),
            )
                .into_response()
        } else {
            json_response(200, &super::discovery::openapi_v2(), &[])
        };
    }
    if method == "GET" && (path == "/openapi/v3" || path.starts_with("/openapi/v3/")) {
        let doc = if path == "/openapi/v3" {
            Ok(super::discovery::openapi_index())
        } else {
            super::discovery::openapi_group(&path)
        };
        return match doc {
            Ok(v) => json_response(200, &v, &[]),
            Err(e) => error_response(&e),
        };
    }
    if path.starts_with("/apis/node.berth.io/") {
        let value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return error_response(&ApiError::bad_request(format!(
                        "invalid JSON body: {e}"
                    )));
                }
            }
        };
        return match api.node().node_request(&method, &path, value).await {
            Ok(v) => json_response(200, &v, &[]),
            Err(e) => error_response(&e),
        };
    }
    let decoded = request::decode(&HttpParts {
        method: &method,
        path: &path,
        query: &query,
        content_type: content_type.as_deref(),
        body: &body,
    });
    let request = match decoded {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    // kubectl asks for Tables and prints the server's columns.
    let table_kind = match &request {
        Request::Get {
            kind,
            subresource: None,
            ..
        }
        | Request::List { kind, .. }
        | Request::Watch { kind, .. }
            if super::table::wants_table(accept.as_deref()) =>
        {
            Some(*kind)
        }
        _ => None,
    };
    let started = std::time::Instant::now();
    let result = api.handle(request).await;
    tracing::debug!(%method, %path, elapsed_us = started.elapsed().as_micros() as u64, "api request");
    match result {
        Err(e) => error_response(&e),
        Ok(Response::Json {
            code,
            body,
            warnings,
        }) => match table_kind {
            Some(kind) if code == 200 => {
                json_response(code, &super::table::to_table(kind, &body), &warnings)
            }
            _ => json_response(code, &body, &warnings),
        },
        Ok(Response::Watch(stream)) => {
            let lines = stream.map(move |mut event| {
                if let (Some(kind), Some(object)) = (table_kind, event.get("object").cloned()) {
                    if event["type"] != "ERROR" {
                        event["object"] = super::table::to_table(kind, &object);
                    }
                }
                let mut line = serde_json::to_vec(&event).expect("JSON values serialise");
                line.push(b'\n');
                Ok::<_, Infallible>(Bytes::from(line))
            });
            streaming_response("application/json", Body::from_stream(lines))
        }
        Ok(Response::Bytes(stream)) => streaming_response("text/plain", Body::from_stream(stream)),
        Ok(Response::Exec { pod, options }) => match ws {
            None => error_response(&ApiError::bad_request(
                "exec needs a websocket upgrade with the v5.channel.k8s.io or v4.channel.k8s.io protocol",
            )),
            Some(ws) => {
                let node = api.node().clone();
                ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
                    .on_upgrade(move |socket| async move {
                        let v5 = socket.protocol().and_then(|p| p.to_str().ok())
                            == Some("v5.channel.k8s.io");
                        let session = node.exec(pod, options.clone()).await;
                        run_exec(socket, session, &options, v5).await;
                    })
            }
        },
    }
}

/// The request's `Content-Length`, when it declares one.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn json_response(code: u16, body: &Value, warnings: &[String]) -> axum::response::Response {
    let mut response = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        serde_json::to_vec(body).expect("JSON values serialise"),
    )
        .into_response();
    for warning in warnings {
        // RFC 7234 warning, as the API server sends them: `299 - "text"`.
        let text = format!(
            "299 - {}",
            serde_json::to_string(warning).expect("strings serialise")
        );
        if let Ok(value) = HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

fn streaming_response(content_type: &'static str, body: Body) -> axum::response::Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

fn error_response(e: &ApiError) -> axum::response::Response {
    json_response(e.code, &e.to_status(), &[])
}

/// Pumps an exec session over the websocket with Kubernetes' channel protocol.
async fn run_exec(
    socket: WebSocket,
    session: Result<ExecSession, ApiError>,
    options: &ExecOptions,
    v5: bool,
) {
    let (mut sink, mut source) = socket.split();
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            let _ = sink
                .send(Message::Binary(channel_frame(
                    3,
                    &serde_json::to_vec(&e.to_status()).unwrap_or_default(),
                )))
                .await;
            let _ = sink.send(normal_close()).await;
            return;
        }
    };
    let ExecSession {
        stdin,
        stdout,
        stderr,
        exit,
    } = session;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);

    let pump = |channel: u8,
                reader: Option<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>>,
                tx: tokio::sync::mpsc::Sender<Vec<u8>>| {
        tokio::spawn(async move {
            let Some(mut reader) = reader else { return };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .send(channel_frame(channel, &buf[..n]).to_vec())
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        })
    };
    let out_task = pump(1, stdout, tx.clone());
    let err_task = pump(2, stderr, tx.clone());
    drop(tx);

    // Client -> stdin.
    let stdin_task = tokio::spawn(async move {
        let mut stdin = stdin;
        while let Some(Ok(message)) = source.next().await {
            let data = match message {
                Message::Binary(d) => d.to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            match data.split_first() {
                Some((0, payload)) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(payload).await.is_err() {
                            stdin = None;
                        } else {
                            let _ = w.flush().await;
                        }
                    }
                }
                // v5: close a stream; closing stdin gives the command EOF.
                Some((255, [0])) if v5 => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    });

    while let Some(frame) = rx.recv().await {
        if sink.send(Message::Binary(frame.into())).await.is_err() {
            break;
        }
    }
    let _ = out_task.await;
    let _ = err_task.await;
    let status = match exit.await {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {:?}, exit code {code}", options.command),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => e.to_status(),
    };
    let _ = sink
        .send(Message::Binary(channel_frame(
            3,
            &serde_json::to_vec(&status).unwrap_or_default(),
        )))
        .await;
    // A close with code 1000: kubectl (gorilla websocket) takes a close without a code for an
    // error ("close 1005 (no status)").
    let _ = sink.send(normal_close()).await;
    stdin_task.abort();
}

fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }))
}

fn channel_frame(channel: u8, payload: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(payload.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}
