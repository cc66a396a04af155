//! `berth exec`: Kubernetes' exec subresource over a websocket with the channel protocol
//! (`v5.channel.k8s.io`): binary frames whose first byte is the stream (0 stdin, 1 stdout,
//! 2 stderr, 3 the final Status, 255 close a stream). This is what kubectl speaks, so a stock
//! kubectl can exec through the same endpoint. It works over the unix socket and over
//! `--server https://HOST:PORT` alike, and from any host: the agent reached forwards the
//! exec to the pod's node (`cluster::proxy`).

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::args::ExecArgs;
use super::target::{encode, object_path};
use super::{CliError, Ctx, fail};
use crate::objects::Kind;

/// The channel protocols the client offers, newest first.
pub const PROTOCOLS: &str = "v5.channel.k8s.io, v4.channel.k8s.io";

pub async fn exec(ctx: &Ctx, a: ExecArgs) -> Result<(), CliError> {
    let namespace = a.ns.namespace.clone().unwrap_or_else(|| "default".into());
    let pod = a
        .target
        .strip_prefix("pod/")
        .or_else(|| a.target.strip_prefix("po/"))
        .unwrap_or(&a.target);
    let mut query: Vec<String> = a
        .command
        .iter()
        .map(|c| format!("command={}", encode(c)))
        .collect();
    if let Some(c) = &a.container {
        query.push(format!("container={}", encode(c)));
    }
    query.push(format!("stdin={}", a.stdin));
    query.push("stdout=true".into());
    query.push("stderr=true".into());
    query.push("tty=false".into());
    let path = format!(
        "{}/exec?{}",
        object_path(Kind::Pod, &namespace, pod),
        query.join("&")
    );

    // The unix socket or TLS to the peer port (`--server`), with the same credentials as
    // every other command; the websocket runs over it.
    let stream = ctx.client.connect().await?;
    let mut request = format!("ws://localhost{path}")
        .into_client_request()
        .map_err(|e| fail(format!("exec: bad request: {e}")))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        PROTOCOLS.parse().expect("valid header"),
    );
    let (ws, _response) = match tokio_tungstenite::client_async(request, stream).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            // The server refused the upgrade with a Status body (NotFound, BadRequest...).
            let body = response.body().clone().unwrap_or_default();
            let status: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|_| serde_json::json!({"message": String::from_utf8_lossy(&body)}));
            return Err(CliError::Client(super::client::ClientError::Api {
                code: response.status().as_u16(),
                status,
            }));
        }
        Err(e) => return Err(fail(format!("exec: websocket handshake failed: {e}"))),
    };
    let (mut sink, mut source) = ws.split();

    if a.stdin {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        // v5: close the stdin stream so the command sees EOF.
                        let _ = sink.send(Message::Binary(vec![255, 0].into())).await;
                        break;
                    }
                    Ok(n) => {
                        let mut frame = Vec::with_capacity(n + 1);
                        frame.push(0);
                        frame.extend_from_slice(&buf[..n]);
                        if sink.send(Message::Binary(frame.into())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }

    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut status: Option<Value> = None;
    while let Some(message) = source.next().await {
        let message = message.map_err(|e| fail(format!("exec: connection lost: {e}")))?;
        let data = match message {
            Message::Binary(d) => d.to_vec(),
            Message::Text(t) => t.as_bytes().to_vec(),
            Message::Close(_) => break,
            _ => continue,
        };
        let Some((&channel, payload)) = data.split_first() else {
            continue;
        };
        match channel {
            1 => {
                let _ = stdout.write_all(payload).await;
                let _ = stdout.flush().await;
            }
            2 => {
                let _ = stderr.write_all(payload).await;
                let _ = stderr.flush().await;
            }
            3 => status = serde_json::from_slice(payload).ok(),
            _ => {}
        }
    }
    match status {
        Some(s) if s["status"] == "Success" => Ok(()),
        Some(s) => {
            if s["reason"] == "NonZeroExitCode" {
                let code = s
                    .pointer("/details/causes")
                    .and_then(Value::as_array)
                    .and_then(|causes| causes.iter().find(|c| c["reason"] == "ExitCode"))
                    .and_then(|c| c["message"].as_str())
                    .and_then(|m| m.parse::<i32>().ok())
                    .unwrap_or(1);
                Err(CliError::ExitCode(code))
            } else {
                Err(CliError::Client(super::client::ClientError::Api {
                    code: s["code"].as_u64().unwrap_or(500) as u16,
                    status: s,
                }))
            }
        }
        None => Err(fail(
            "exec: the connection closed before the command's status arrived",
        )),
    }
}
