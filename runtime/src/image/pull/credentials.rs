//! Registry credentials: the docker config format of `kubernetes.io/dockerconfigjson` and
//! `kubernetes.io/dockercfg` Secrets, and which of its entries apply to an image, by the
//! kubelet's rules (host with optional `*` labels, optional port, optional path prefix;
//! Docker Hub's historical names all mean `docker.io`).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::registries::{canonical_host, decode_auth};

/// A credential for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// HTTP basic authentication (also used to obtain a bearer token).
    Basic { username: String, password: String },
    /// A bearer (registry or identity) token, sent as is.
    Bearer(String),
}

impl Credential {
    /// From a docker `auth` field (base64 of `user:password`).
    pub fn from_auth_field(auth: &str) -> Option<Credential> {
        decode_auth(auth).map(|(username, password)| Credential::Basic { username, password })
    }

    /// Who the credential is for, without the secret (for messages and logs).
    pub fn describe(&self) -> String {
        match self {
            Credential::Basic { username, .. } => format!("user {username:?}"),
            Credential::Bearer(_) => "a bearer token".to_owned(),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

/// Why a docker config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("{source_name} is not a valid docker config")]
    Json {
        source_name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{source_name}: entry {key:?} has an auth field that is not base64 of user:password")]
    Auth { source_name: String, key: String },
}

/// Credentials keyed by the registry pattern they apply to, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    entries: Vec<KeyringEntry>,
}

#[derive(Debug, Clone)]
struct KeyringEntry {
    pattern: Pattern,
    credential: Credential,
    /// Where it came from (`secret default/regcred`), for logs.
    origin: String,
}

#[derive(Debug, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerAuth {
    username: Option<String>,
    password: Option<String>,
    auth: Option<String>,
    #[serde(rename = "identitytoken")]
    identity_token: Option<String>,
    #[serde(rename = "registrytoken")]
    registry_token: Option<String>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Adds the entries of a `.dockerconfigjson` document (`{"auths": {...}}`). `origin`
    /// names it in errors and logs.
    pub fn add_docker_config_json(
        &mut self,
        json: &[u8],
        origin: &str,
    ) -> Result<(), KeyringError> {
        let config: DockerConfigJson =
            serde_json::from_slice(json).map_err(|source| KeyringError::Json {
                source_name: origin.to_owned(),
                source,
            })?;
        self.add_auths(config.auths, origin)
    }

    /// Adds the entries of a legacy `.dockercfg` document (the `auths` map itself).
    pub fn add_dockercfg(&mut self, json: &[u8], origin: &str) -> Result<(), KeyringError> {
        let auths: BTreeMap<String, DockerAuth> =
            serde_json::from_slice(json).map_err(|source| KeyringError::Json {
                source_name: origin.to_owned(),
                source,
            })?;
        self.add_auths(auths, origin)
    }

    /// Adds one credential for `pattern` (a docker config key such as `registry.lab:5000`,
    /// `*.lab.example` or `https://index.docker.io/v1/`).
    pub fn add(&mut self, pattern: &str, credential: Credential, origin: &str) {
        self.entries.push(KeyringEntry {
            pattern: Pattern::parse(pattern),
            credential,
            origin: origin.to_owned(),
        });
    }

    fn add_auths(
        &mut self,
        auths: BTreeMap<String, DockerAuth>,
        origin: &str,
    ) -> Result<(), KeyringError> {
        for (key, auth) in auths {
            let credential = if let Some(token) = auth.registry_token.or(auth.identity_token) {
                Credential::Bearer(token)
            } else if let (Some(username), Some(password)) = (&auth.username, &auth.password)
                && !username.is_empty()
            {
                Credential::Basic {
                    username: username.clone(),
                    password: password.clone(),
                }
            } else if let Some(field) = auth.auth.as_deref().filter(|a| !a.is_empty()) {
                Credential::from_auth_field(field).ok_or_else(|| KeyringError::Auth {
                    source_name: origin.to_owned(),
                    key: key.clone(),
                })?
            } else {
                continue;
            };
            self.add(&key, credential, origin);
        }
        Ok(())
    }

    /// The credentials that apply to repository `repository` on registry `host`
    /// (`host[:port]`), best match first (longer path prefixes, then exact hosts), each with
    /// where it came from.
    pub fn matching(&self, host: &str, repository: &str) -> Vec<(&Credential, &str)> {
        let host = canonical_host(host);
        let mut found: Vec<(usize, usize, &KeyringEntry)> = self
            .entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.pattern.score(&host, repository).map(|s| (s, i, e)))
            .collect();
        // Best score first; equal scores keep their order.
        found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<(&Credential, &str)> = Vec::new();
        for (_, _, entry) in found {
            if !out.iter().any(|(c, _)| *c == &entry.credential) {
                out.push((&entry.credential, entry.origin.as_str()));
            }
        }
        out
    }

    /// Whether the keyring holds no credentials.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A docker config key: `[scheme://]host[:port][/path]`, host labels may be `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    host: String,
    port: Option<String>,
    path: String,
}

impl Pattern {
    fn parse(key: &str) -> Pattern {
        let key = key.trim();
        let rest = key
            .strip_prefix("https://")
            .or_else(|| key.strip_prefix("http://"))
            .unwrap_or(key);
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let authority = canonical_host(authority);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.to_owned(), Some(p.to_owned()))
            }
            _ => (authority.clone(), None),
        };
        let host = canonical_host(&host);
        // `https://index.docker.io/v1/` is how docker writes Docker Hub; the path is the API
        // version, not a repository prefix.
        let path = if host == "docker.io" && path.trim_end_matches('/') == "v1" {
            String::new()
        } else {
            path.trim_end_matches('/').to_owned()
        };
        Pattern { host, port, path }
    }

    /// How well the pattern matches (higher is more specific), or `None`.
    fn score(&self, host: &str, repository: &str) -> Option<usize> {
        let (name, port) = match host.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, Some(p)),
            _ => (host, None),
        };
        if self.port.as_deref() != port {
            return None;
        }
        let pattern_labels: Vec<&str> = self.host.split('.').collect();
        let host_labels: Vec<&str> = name.split('.').collect();
        if pattern_labels.len() != host_labels.len() {
            return None;
        }
        let mut wildcards = 0;
        for (p, h) in pattern_labels.iter().zip(&host_labels) {
            if *p == "*" {
                wildcards += 1;
            } else if !glob_label(p, h) {
                return None;
            }
        }
        if !self.path.is_empty()
            && repository != self.path
            && !repository.starts_with(&format!("{}/", self.path))
        {
            return None;
        }
        Some(self.path.len() * 4 + if wildcards == 0 { 2 } else { 0 })
    }
}

/// A label pattern with `*` standing for any run of characters (as Go's path.Match does for
/// kubelet keys such as `*.lab` or `reg*.lab`).
fn glob_label(pattern: &str, label: &str) -> bool {
    fn glob(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
        }
    }
    glob(pattern.as_bytes(), label.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str) -> Credential {
        Credential::Basic {
            username: user.into(),
            password: "pw".into(),
        }
    }

    #[test]
    fn docker_config_entries_match_as_the_kubelet_matches_them() {
        let mut keyring = Keyring::new();
        for (pattern, user) in [
            ("https://index.docker.io/v1/", "hub"),
            ("registry.lab:5000", "lab5000"),
            ("registry.lab", "lab"),
            ("*.corp.example", "corp"),
            ("registry.lab/team", "team"),
            ("http://plain.lab:80", "plain"),
        ] {
            keyring.add(pattern, basic(user), "test");
        }
        let table: &[(&str, &str, &[&str])] = &[
            ("docker.io", "library/busybox", &["hub"]),
            ("registry.lab:5000", "x", &["lab5000"]),
            ("registry.lab", "team/app", &["team", "lab"]),
            ("registry.lab", "teamwork/app", &["lab"]),
            ("registry.lab", "other", &["lab"]),
            ("a.corp.example", "x", &["corp"]),
            ("a.b.corp.example", "x", &[]),
            ("corp.example", "x", &[]),
            ("registry.lab:6000", "x", &[]),
            ("plain.lab:80", "x", &["plain"]),
            ("quay.io", "x", &[]),
        ];
        for (host, repository, want) in table {
            let got: Vec<String> = keyring
                .matching(host, repository)
                .into_iter()
                .map(|(c, _)| match c {
                    Credential::Basic { username, .. } => username.clone(),
                    Credential::Bearer(t) => t.clone(),
                })
                .collect();
            assert_eq!(got, *want, "{host}/{repository}");
        }
    }

    #[test]
    fn dockerconfigjson_accepts_auth_username_password_and_tokens() {
        let json = br#"{"auths": {
            "a.lab": {"auth": "YWxpY2U6c2VjcmV0"},
            "b.lab": {"username": "bob", "password": "pw"},
            "c.lab": {"identitytoken": "tok"},
            "d.lab": {"email": "nobody@example.com"}
        }}"#;
        let mut keyring = Keyring::new();
        keyring
            .add_docker_config_json(json, "secret default/regcred")
            .unwrap();
        assert_eq!(
            keyring.matching("a.lab", "x")[0],
            (
                &Credential::Basic {
                    username: "alice".into(),
                    password: "secret".into()
                },
                "secret default/regcred"
            )
        );
        assert_eq!(keyring.matching("b.lab", "x")[0].0, &basic("bob"));
        assert_eq!(
            keyring.matching("c.lab", "x")[0].0,
            &Credential::Bearer("tok".into())
        );
        assert!(keyring.matching("d.lab", "x").is_empty());
    }

    #[test]
    fn malformed_docker_configs_are_errors_naming_their_source() {
        let mut keyring = Keyring::new();
        let error = keyring
            .add_docker_config_json(b"{not json", "secret ns/x")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "secret ns/x is not a valid docker config"
        );
        let error = keyring
            .add_docker_config_json(br#"{"auths": {"a.lab": {"auth": "???"}}}"#, "secret ns/y")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "secret ns/y: entry \"a.lab\" has an auth field that is not base64 of user:password"
        );
    }

    #[test]
    fn credentials_never_show_their_secret_in_debug_output() {
        let text = format!("{:?} {:?}", basic("u"), Credential::Bearer("tok".into()));
        assert!(!text.contains("pw") && !text.contains("tok"), "{text}");
    }

    #[test]
    fn label_globs_follow_path_match() {
        assert!(glob_label("reg*", "registry"));
        assert!(glob_label("*try", "registry"));
        assert!(glob_label("r*g*y", "registry"));
        assert!(!glob_label("r*x", "registry"));
        assert!(glob_label("*", ""));
    }
}
