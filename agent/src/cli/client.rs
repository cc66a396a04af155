//! The CLI's client of the agent's Kubernetes-shaped API: HTTP/1.1 over the agent's unix
//! socket. Errors the server returns as `Status` objects come back as [`ClientError::Api`]
//! carrying the status, so that callers can print kubectl's words.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the berth agent at {} (is `berth agent` running, and are you root?)", .path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("request to the berth agent failed")]
    Http(#[source] hyper::Error),
    /// The server answered with a Kubernetes `Status` failure.
    #[error("{}", status_message(.status))]
    Api { code: u16, status: Value },
    #[error("the berth agent sent a response that is not valid JSON")]
    Decode(#[source] serde_json::Error),
}

fn status_message(status: &Value) -> String {
    status
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error")
        .to_string()
}

impl ClientError {
    /// The Status reason (NotFound, AlreadyExists, Conflict, Invalid, ...), when the server
    /// gave one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            ClientError::Api { status, .. } => status.get("reason").and_then(Value::as_str),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { code: 404, .. })
    }
}

/// A connection to the agent (unix socket or TLS).
pub trait Connection: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Connection for T {}

/// A client bound to one agent: its unix socket, or its peer port over HTTPS.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    https: Option<Https>,
}

#[derive(Clone)]
struct Https {
    authority: String,
    tls: std::sync::Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client {
            socket: socket.into(),
            https: None,
        }
    }

    /// A client of the agent at `authority` (`HOST:PORT`) over HTTPS with `tls` (the cluster
    /// CA and a client certificate).
    pub fn https(
        authority: impl Into<String>,
        tls: std::sync::Arc<rustls::ClientConfig>,
    ) -> Client {
        let authority = authority.into();
        Client {
            socket: PathBuf::from(format!("https://{authority}")),
            https: Some(Https { authority, tls }),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Opens a connection to the agent: its unix socket, or TLS to its peer port with the
    /// client certificate. HTTP (and websockets, for exec) run over it.
    pub async fn connect(&self) -> Result<Box<dyn Connection>, ClientError> {
        let connect = |source| ClientError::Connect {
            path: self.socket.clone(),
            source,
        };
        match &self.https {
            None => Ok(Box::new(
                UnixStream::connect(&self.socket).await.map_err(connect)?,
            )),
            Some(https) => {
                let host = https
                    .authority
                    .rsplit_once(':')
                    .map_or(https.authority.as_str(), |(host, _)| host);
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_matches(|c| c == '[' || c == ']').to_string(),
                )
                .map_err(|e| connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
                let tcp = tokio::net::TcpStream::connect(&https.authority)
                    .await
                    .map_err(connect)?;
                let stream = tokio_rustls::TlsConnector::from(https.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(connect)?;
                Ok(Box::new(stream))
            }
        }
    }

    /// Sends one request and returns the raw response (status and streaming body).
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let stream = self.connect().await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(ClientError::Http)?;
        tokio::spawn(async move {
            // The connection ends when the response body is dropped or finished.
            let _ = connection.with_upgrades().await;
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(hyper::header::HOST, "berth")
            .header(hyper::header::ACCEPT, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("berth/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(content_type) = content_type {
            builder = builder.header(hyper::header::CONTENT_TYPE, content_type);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("valid request parts");
        sender
            .send_request(request)
            .await
            .map_err(ClientError::Http)
    }

    /// Sends a request and decodes a JSON answer, turning failures into [`ClientError::Api`].
    pub async fn json(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON values serialise"));
        let response = self
            .send(
                method,
                path_and_query,
                content_type.or(Some("application/json")),
                body,
            )
            .await?;
        read_answer(response).await
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, path, None, None).await
    }

    /// A streaming GET (watch, follow logs): yields the body chunk by chunk. A failure status
    /// is turned into an error before any chunk is yielded.
    pub async fn stream(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, ClientError>> + use<>, ClientError> {
        let response = self.send(Method::GET, path, None, None).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(read_answer(response)
                .await
                .err()
                .unwrap_or(ClientError::Api {
                    code: status.as_u16(),
                    status: Value::Null,
                }));
        }
        let body = response.into_body();
        Ok(
            http_body_util::BodyStream::new(body).filter_map(|frame| async move {
                match frame {
                    Ok(frame) => frame.into_data().ok().map(Ok),
                    Err(e) => Some(Err(ClientError::Http(e))),
                }
            }),
        )
    }

    /// Watch events (`{"type": ..., "object": ...}`), one JSON document per line.
    pub async fn watch(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<Value, ClientError>> + use<>, ClientError> {
        let chunks = Box::pin(self.stream(path).await?);
        Ok(lines(chunks)
            .map(|line| line.and_then(|l| serde_json::from_slice(&l).map_err(ClientError::Decode))))
    }
}

/// Splits a stream of chunks into lines (without the newline).
pub fn lines(
    chunks: impl Stream<Item = Result<Bytes, ClientError>> + Unpin,
) -> impl Stream<Item = Result<Vec<u8>, ClientError>> + Unpin {
    Box::pin(futures_util::stream::unfold(
        (chunks, Vec::<u8>::new(), false),
        |(mut chunks, mut buf, done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).take(pos).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some((Ok(line), (chunks, buf, done)));
                }
                if done {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let line = std::mem::take(&mut buf);
                    return Some((Ok(line), (chunks, buf, true)));
                }
                match chunks.next().await {
                    Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                    Some(Err(e)) => return Some((Err(e), (chunks, buf, true))),
                    None => {
                        return if buf.iter().all(u8::is_ascii_whitespace) {
                            None
                        } else {
                            let line = std::mem::take(&mut buf);
                            Some((Ok(line), (chunks, buf, true)))
                        };
                    }
                }
            }
        },
    ))
}

/// Reads a whole answer and decodes it ([`decode_answer`]).
async fn read_answer(response: Response<Incoming>) -> Result<Value, ClientError> {
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Http)?
        .to_bytes();
    decode_answer(status, &bytes)
}

fn decode_answer(status: StatusCode, bytes: &[u8]) -> Result<Value, ClientError> {
    let value: Value = if bytes.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) if status.is_success() => return Err(ClientError::Decode(e)),
            // A failure whose body is not JSON: keep its text as the message.
            Err(_) => serde_json::json!({
                "kind": "Status",
                "status": "Failure",
                "message": String::from_utf8_lossy(bytes).trim().to_string(),
                "code": status.as_u16(),
            }),
        }
    };
    if status.is_success() {
        Ok(value)
    } else {
        let value = if value.is_null() {
            serde_json::json!({"kind": "Status", "status": "Failure", "code": status.as_u16(),
                "message": format!("the server answered {status}")})
        } else {
            value
        };
        Err(ClientError::Api {
            code: status.as_u16(),
            status: value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_across_chunk_boundaries() {
        let chunks = futures_util::stream::iter(
            ["{\"a\":", "1}\n{\"b\"", ":2}\n\n", "{\"c\":3}"]
                .map(|s| Ok(Bytes::from_static(s.as_bytes()))),
        );
        let got: Vec<String> = lines(chunks)
            .map(|l| String::from_utf8(l.unwrap()).unwrap())
            .collect()
            .await;
        assert_eq!(got, vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }

    #[test]
    fn a_status_failure_becomes_an_api_error_with_its_message() {
        let body = br#"{"kind":"Status","status":"Failure","message":"pods \"x\" not found","reason":"NotFound","code":404}"#;
        let err = decode_answer(StatusCode::NOT_FOUND, body).unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(err.reason(), Some("NotFound"));
        assert_eq!(err.to_string(), "pods \"x\" not found");
    }

    #[test]
    fn a_plain_text_failure_keeps_its_text() {
        let err = decode_answer(StatusCode::BAD_GATEWAY, b"upstream gone\n").unwrap_err();
        assert_eq!(err.to_string(), "upstream gone");
    }
}
