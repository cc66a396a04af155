//! `berth kubeconfig`: a kubeconfig for kubectl (and `berth --kubeconfig`) with the
//! server, the CA and a client certificate.

use base64::Engine as _;

use super::pki::CertifiedKey;

/// Renders a kubeconfig (YAML) for `server` (`https://HOST:PORT`).
pub fn render(server: &str, ca_pem: &str, client: &CertifiedKey, user: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: berth\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\ncontexts:\n- name: berth\n  context:\n    cluster: berth\n    user: {user}\ncurrent-context: berth\n",
        ca = b64(ca_pem),
        cert = b64(&client.cert_pem),
        key = b64(&client.key_pem),
    )
}

/// What a kubeconfig gives the CLI: the server and the TLS material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeconfigEntry {
    /// `https://HOST:PORT`.
    pub server: String,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The client certificate and key, PEM.
    pub client: CertifiedKey,
}

/// Why a kubeconfig could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// Not YAML of the expected shape.
    #[error("the kubeconfig is invalid: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
}

/// Reads the current context's server, CA and client certificate from a kubeconfig.
pub fn parse(text: &str) -> Result<KubeconfigEntry, KubeconfigError> {
    let invalid = |reason: &str| KubeconfigError::Invalid {
        reason: reason.to_string(),
    };
    let docs = crate::objects::parse::parse_text(
        crate::objects::Origin::Inline("kubeconfig".into()),
        text,
    )
    .map_err(|e| invalid(&e.to_string()))?;
    let doc = docs
        .into_iter()
        .next()
        .ok_or_else(|| invalid("it is empty"))?
        .value;
    let current = doc
        .get("current-context")
        .and_then(|v| v.as_str())
        .ok_or_else(|| invalid("current-context is missing"))?;
    let named = |list: &str, name: &str| {
        doc.get(list)?
            .as_array()?
            .iter()
            .find(|e| e.get("name").and_then(|n| n.as_str()) == Some(name))
            .cloned()
    };
    let context = named("contexts", current)
        .ok_or_else(|| invalid(&format!("context {current:?} is not defined")))?;
    let cluster_name = context
        .pointer("/context/cluster")
        .and_then(|v| v.as_str())
        .ok_or_else(|| invalid("the context names no cluster"))?;
    let user_name = context
        .pointer("/context/user")
        .and_then(|v| v.as_str())
        .ok_or_else(|| invalid("the context names no user"))?;
    let cluster = named("clusters", cluster_name)
        .ok_or_else(|| invalid(&format!("cluster {cluster_name:?} is not defined")))?;
    let user = named("users", user_name)
        .ok_or_else(|| invalid(&format!("user {user_name:?} is not defined")))?;
    let data = |value: &serde_json::Value, pointer: &str| -> Result<String, KubeconfigError> {
        let text = value
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                invalid(&format!(
                    "{} is missing",
                    pointer.trim_start_matches('/').replace('/', ".")
                ))
            })?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| invalid(&format!("{pointer} is not base64")))?;
        String::from_utf8(bytes).map_err(|_| invalid(&format!("{pointer} is not PEM text")))
    };
    Ok(KubeconfigEntry {
        server: cluster
            .pointer("/cluster/server")
            .and_then(|v| v.as_str())
            .ok_or_else(|| invalid("cluster.server is missing"))?
            .to_string(),
        ca_pem: data(&cluster, "/cluster/certificate-authority-data")?,
        client: CertifiedKey {
            cert_pem: data(&user, "/user/client-certificate-data")?,
            key_pem: data(&user, "/user/client-key-data")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_kubeconfig_parses_back() {
        let client = CertifiedKey {
            cert_pem: "CERT".into(),
            key_pem: "KEY".into(),
        };
        let text = render("https://10.0.0.1:7443", "CA", &client, "admin");
        let entry = parse(&text).unwrap();
        assert_eq!(
            entry,
            KubeconfigEntry {
                server: "https://10.0.0.1:7443".into(),
                ca_pem: "CA".into(),
                client
            }
        );
    }

    #[test]
    fn a_kubeconfig_without_its_context_is_an_error_naming_it() {
        let error = parse("apiVersion: v1\nkind: Config\ncurrent-context: lab\ncontexts: []\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("context \"lab\" is not defined"), "{error}");
    }
}
