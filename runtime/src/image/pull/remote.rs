//! Talking to one registry endpoint through oci-client: manifests by tag or digest, blobs as
//! byte streams from an offset, and registry errors turned into [`RemoteError`]s a user can
//! act on.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::credentials::Credential;
use super::registries::Endpoint;

/// Media types asked for when fetching a manifest.
pub(crate) const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// What went wrong talking to a registry endpoint.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{what} not found: the registry answered {message:?}")]
    NotFound { what: String, message: String },
    #[error("unauthorized: the registry refused {}", who(.credential))]
    Unauthorized { credential: Option<String> },
    #[error("denied: {message}")]
    Denied { message: String },
    #[error("too many requests: {message}")]
    TooManyRequests { message: String },
    #[error("the registry answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("the registry answered with error {code}: {message}")]
    Registry { code: String, message: String },
    #[error("cannot reach the registry")]
    Unreachable {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the registry broke the distribution protocol")]
    Protocol {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn who(credential: &Option<String>) -> String {
    match credential {
        Some(c) => format!("the credentials of {c}"),
        None => "anonymous access (authentication required)".to_owned(),
    }
}

impl RemoteError {
    /// Whether trying again (the same endpoint, a little later) might succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable { .. }
                | RemoteError::TooManyRequests { .. }
                | RemoteError::Status { status: 500.., .. }
        )
    }
}

/// A blob body: the stream and whether it starts at the offset asked for (`206 Partial
/// Content`) or at zero (the registry ignored the range).
pub(crate) struct BlobBody {
    pub(crate) stream: BoxStream<'static, Result<Bytes, std::io::Error>>,
    pub(crate) from_offset: bool,
}

/// One endpoint with one set of credentials.
pub(crate) struct Remote {
    client: Client,
    reference: Reference,
    auth: RegistryAuth,
    credential_label: Option<String>,
    label: String,
}

impl Remote {
    /// A client for `endpoint` pulling `reference` (canonical, its registry being the
    /// image's; a mirror endpoint is asked with `?ns=<registry>` as containerd does).
    pub(crate) fn new(
        endpoint: &Endpoint,
        reference: &Reference,
        credential: Option<(&Credential, &str)>,
    ) -> Result<Remote, RemoteError> {
        let mut config = ClientConfig {
            protocol: if endpoint.plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            accept_invalid_certificates: endpoint.tls.insecure_skip_verify,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        if let Some(pem) = &endpoint.tls.ca_pem {
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data: pem.clone(),
            });
        }
        let client = Client::try_from(config).map_err(|e| RemoteError::Protocol {
            source: Box::new(e),
        })?;
        let mut reference = reference.clone();
        if endpoint.mirror || endpoint.host != reference.registry() {
            reference.set_mirror_registry(endpoint.host.clone());
        }
        let (auth, credential_label) = match credential {
            None => (RegistryAuth::Anonymous, None),
            Some((Credential::Basic { username, password }, origin)) => (
                RegistryAuth::Basic(username.clone(), password.clone()),
                Some(format!("user {username:?} (from {origin})")),
            ),
            Some((Credential::Bearer(token), origin)) => (
                RegistryAuth::Bearer(token.clone()),
                Some(format!("a bearer token (from {origin})")),
            ),
        };
        Ok(Remote {
            client,
            reference,
            auth,
            credential_label,
            label: endpoint.url(),
        })
    }

    /// The endpoint's URL (`http://127.0.0.1:5000`), for messages.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Who the requests are made as, for messages: `user "x" (from ...)` or anonymous.
    pub(crate) fn credential_label(&self) -> Option<&str> {
        self.credential_label.as_deref()
    }

    /// Fetches the manifest `tag_or_digest` names (the reference's own when `None`): its
    /// bytes, and its digest (checked against the digest asked for, if any).
    pub(crate) async fn manifest(
        &self,
        digest: Option<&str>,
    ) -> Result<(Bytes, String), RemoteError> {
        let reference = match digest {
            Some(d) => self.reference.clone_with_digest(d.to_owned()),
            None => self.reference.clone(),
        };
        let what = format!("manifest {}", tag_or_digest(&reference));
        self.client
            .pull_manifest_raw(&reference, &self.auth, MANIFEST_TYPES)
            .await
            .map_err(|e| self.classify(e, &what))
    }

    /// Starts fetching blob `digest` from byte `offset`.
    pub(crate) async fn blob(&self, digest: &str, offset: u64) -> Result<BlobBody, RemoteError> {
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
        let what = format!("blob {digest}");
        // Always a range request, `bytes=0-` for a whole blob: a `206 Partial Content` body
        // comes unverified from oci-client, which would otherwise hash a whole body a second
        // time; the download hashes every byte itself and checks size and digest at the end.
        // A registry that ignores ranges answers `200` with the whole blob, which oci-client
        // verifies as well.
        match self
            .client
            .pull_blob_stream_partial(&self.reference, digest, offset, None)
            .await
            .map_err(|e| self.classify(e, &what))?
        {
            oci_client::client::BlobResponse::Partial(s) => Ok(BlobBody {
                stream: s.stream,
                from_offset: true,
            }),
            oci_client::client::BlobResponse::Full(s) => Ok(BlobBody {
                stream: s.stream,
                from_offset: false,
            }),
        }
    }

    fn classify(&self, error: OciDistributionError, what: &str) -> RemoteError {
        match error {
            OciDistributionError::RegistryError { envelope, .. } => {
                let Some(first) = envelope.errors.into_iter().next() else {
                    return RemoteError::Status {
                        status: 400,
                        message: "an empty error list".to_owned(),
                    };
                };
                let message = if first.message.is_empty() {
                    format!("{:?}", first.code)
                } else {
                    first.message
                };
                match first.code {
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound => RemoteError::NotFound {
                        what: what.to_owned(),
                        message,
                    },
                    OciErrorCode::Unauthorized => RemoteError::Unauthorized {
                        credential: self.credential_label.clone(),
                    },
                    OciErrorCode::Denied => RemoteError::Denied { message },
                    OciErrorCode::Toomanyrequests => RemoteError::TooManyRequests { message },
                    code => RemoteError::Registry {
                        code: format!("{code:?}"),
                        message,
                    },
                }
            }
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => RemoteError::Unauthorized {
                credential: self.credential_label.clone(),
            },
            OciDistributionError::ImageManifestNotFoundError(message) => RemoteError::NotFound {
                what: what.to_owned(),
                message,
            },
            OciDistributionError::ServerError {
                code: 404, message, ..
            } => RemoteError::NotFound {
                what: what.to_owned(),
                message: first_line(&message),
            },
            OciDistributionError::ServerError { code, message, .. } => RemoteError::Status {
                status: code,
                message: first_line(&message),
            },
            OciDistributionError::RequestError(e)
                if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() =>
            {
                RemoteError::Unreachable {
                    source: Box::new(e),
                }
            }
            OciDistributionError::IoError(e) => RemoteError::Unreachable {
                source: Box::new(e),
            },
            other => RemoteError::Protocol {
                source: Box::new(other),
            },
        }
    }
}

fn tag_or_digest(reference: &Reference) -> String {
    reference
        .digest()
        .or(reference.tag())
        .unwrap_or("latest")
        .to_owned()
}

fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        "(no message)".to_owned()
    } else {
        line.chars().take(200).collect()
    }
}
