//! The node's registries file (`/etc/berth/registries.toml`): per registry host, mirrors to
//! try first, whether it speaks plain HTTP, TLS trust, and credentials. In the spirit of
//! containerd's `hosts.toml` and k3s's `registries.yaml`; docs/registries.md is the user's
//! page.
//!
//! ```toml
//! [registry."docker.io"]
//! mirrors = ["http://10.0.0.5:5000", "mirror.lab.example"]
//!
//! [registry."registry.lab:5000"]
//! plain_http = true
//! username = "ci"
//! password_file = "/etc/berth/registry.lab.password"
//!
//! [registry."*"]                   # every registry without an entry of its own
//! mirrors = ["mirror.lab.example"]
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use super::credentials::Credential;

/// Where the agent reads the registries file unless told otherwise.
pub const DEFAULT_PATH: &str = "/etc/berth/registries.toml";

/// Why the registries file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistriesError {
    #[error("cannot read registries file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("registries file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("registries file {path}: registry.{host:?}: {problem}")]
    Invalid {
        path: PathBuf,
        host: String,
        problem: String,
    },
    #[error("registries file {path}: registry.{host:?}: cannot read {field} {file}")]
    ReadFile {
        path: PathBuf,
        host: String,
        field: &'static str,
        file: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    registry: BTreeMap<String, HostEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    #[serde(default)]
    mirrors: Vec<String>,
    upstream: Option<bool>,
    plain_http: Option<bool>,
    #[serde(default)]
    insecure_skip_verify: bool,
    ca_file: Option<PathBuf>,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    auth: Option<String>,
    token: Option<String>,
}

/// TLS settings for one registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// PEM certificates trusted in addition to the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any certificate (a lab with self-signed certificates; not for production).
    pub insecure_skip_verify: bool,
}

/// Settings of one registry host, as the file gives them.
#[derive(Debug, Clone, Default)]
pub struct Host {
    /// Mirror endpoints tried before the registry itself, in order.
    pub mirrors: Vec<MirrorUrl>,
    /// Whether the registry itself is tried after its mirrors (default true).
    pub upstream: bool,
    /// `Some(true)`: speak plain HTTP; `Some(false)`: HTTPS; `None`: HTTPS, except for
    /// loopback hosts (`localhost`, `127.0.0.0/8`, `::1`), as docker does.
    pub plain_http: Option<bool>,
    /// TLS trust for this host.
    pub tls: Tls,
    /// The node's credential for this host.
    pub credential: Option<Credential>,
}

/// A mirror as written: `host[:port]`, optionally with an `http://` or `https://` scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorUrl {
    /// `host[:port]`.
    pub host: String,
    /// The scheme, if written.
    pub plain_http: Option<bool>,
}

/// One place to pull from: a mirror or the registry itself, with everything needed to talk
/// to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to connect to.
    pub host: String,
    /// Plain HTTP rather than HTTPS.
    pub plain_http: bool,
    /// Whether this is a mirror of the image's registry (not the registry itself).
    pub mirror: bool,
    /// TLS trust for `host`.
    pub tls: Tls,
    /// The node's credential for `host`, from the registries file.
    pub credential: Option<Credential>,
}

impl Endpoint {
    /// `http://host` or `https://host`, for messages.
    pub fn url(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{}", self.host)
    }
}

/// The parsed registries file. The default is an empty file: every registry is pulled from
/// directly, over HTTPS (plain HTTP for loopback hosts), anonymously.
#[derive(Debug, Clone, Default)]
pub struct Registries {
    hosts: BTreeMap<String, Host>,
}

impl Registries {
    /// Reads the registries file at `path`; a missing file is an empty one. Files it names
    /// (`password_file`, `ca_file`) are read now, so errors show at start.
    pub fn load(path: &Path) -> Result<Registries, RegistriesError> {
        match fs::read_to_string(path) {
            Ok(text) => Registries::parse(&text, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Registries::default()),
            Err(source) => Err(RegistriesError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses registries file text; `path` is for messages and resolving relative file names.
    pub fn parse(text: &str, path: &Path) -> Result<Registries, RegistriesError> {
        let file: File = toml::from_str(text).map_err(|source| RegistriesError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let mut hosts = BTreeMap::new();
        for (key, entry) in file.registry {
            let invalid = |problem: String| RegistriesError::Invalid {
                path: path.to_owned(),
                host: key.clone(),
                problem,
            };
            let host = if key == "*" {
                key.clone()
            } else {
                normalize_host(&key).map_err(invalid)?
            };
            if hosts.contains_key(&host) {
                return Err(invalid(format!("{host} is configured twice")));
            }
            let parsed = parse_entry(&key, entry, path)?;
            if key == "*" && (parsed.credential.is_some() || parsed.plain_http.is_some()) {
                return Err(invalid(
                    "the \"*\" entry may only set mirrors and upstream".to_owned(),
                ));
            }
            hosts.insert(host, parsed);
        }
        Ok(Registries { hosts })
    }

    /// The entry for `registry` (`docker.io`, `registry.lab:5000`), if the file has one.
    pub fn host(&self, registry: &str) -> Option<&Host> {
        self.hosts.get(&canonical_host(registry))
    }

    /// Where to pull images of `registry` from, in order: its mirrors (or those of the `*`
    /// entry), then the registry itself unless `upstream = false`.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let registry = canonical_host(registry);
        let own = self.hosts.get(&registry);
        let wildcard = self.hosts.get("*");
        let mirrors_from = own
            .filter(|h| !h.mirrors.is_empty())
            .or(wildcard.filter(|h| !h.mirrors.is_empty()));
        let mut endpoints = Vec::new();
        let mut upstream = true;
        if let Some(from) = mirrors_from {
            upstream = from.upstream;
            for mirror in &from.mirrors {
                if mirror.host == registry {
                    continue;
                }
                endpoints.push(self.endpoint(&mirror.host, mirror.plain_http, true));
            }
        }
        if let Some(own) = own
            && !own.upstream
        {
            upstream = false;
        }
        if upstream || endpoints.is_empty() {
            endpoints.push(self.endpoint(&registry, None, false));
        }
        endpoints
    }

    fn endpoint(&self, host: &str, scheme: Option<bool>, mirror: bool) -> Endpoint {
        let entry = self.hosts.get(host);
        let plain_http = scheme
            .or(entry.and_then(|e| e.plain_http))
            .unwrap_or_else(|| is_loopback(host));
        Endpoint {
            host: host.to_owned(),
            plain_http,
            mirror,
            tls: entry.map(|e| e.tls.clone()).unwrap_or_default(),
            credential: entry.and_then(|e| e.credential.clone()),
        }
    }
}

fn parse_entry(key: &str, entry: HostEntry, path: &Path) -> Result<Host, RegistriesError> {
    let invalid = |problem: String| RegistriesError::Invalid {
        path: path.to_owned(),
        host: key.to_owned(),
        problem,
    };
    let read = |field: &'static str, file: &Path| {
        let file = path.parent().unwrap_or(Path::new("/")).join(file);
        fs::read(&file).map_err(|source| RegistriesError::ReadFile {
            path: path.to_owned(),
            host: key.to_owned(),
            field,
            file,
            source,
        })
    };
    let mut mirrors = Vec::new();
    for (i, mirror) in entry.mirrors.iter().enumerate() {
        let parsed =
            parse_mirror(mirror).map_err(|p| invalid(format!("mirrors[{i}] {mirror:?}: {p}")))?;
        mirrors.push(parsed);
    }
    let password = match (&entry.password, &entry.password_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "set password or password_file, not both".to_owned(),
            ));
        }
        (Some(p), None) => Some(p.clone()),
        (None, Some(file)) => {
            let bytes = read("password_file", file)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| invalid("password_file is not UTF-8".to_owned()))?;
            Some(text.trim_end_matches(['\r', '\n']).to_owned())
        }
        (None, None) => None,
    };
    let credential = match (entry.username, password, entry.auth, entry.token) {
        (None, None, None, None) => None,
        (Some(username), Some(password), None, None) => {
            Some(Credential::Basic { username, password })
        }
        (None, None, Some(auth), None) => Some(
            Credential::from_auth_field(&auth)
                .ok_or_else(|| invalid("auth is not base64 of user:password".to_owned()))?,
        ),
        (None, None, None, Some(token)) => Some(Credential::Bearer(token)),
        (Some(_), None, None, None) => {
            return Err(invalid(
                "username needs password or password_file".to_owned(),
            ));
        }
        (None, Some(_), None, None) => {
            return Err(invalid("password needs username".to_owned()));
        }
        _ => {
            return Err(invalid(
                "give one of username+password, auth or token".to_owned(),
            ));
        }
    };
    let ca_pem = match &entry.ca_file {
        Some(file) => {
            let pem = read("ca_file", file)?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(invalid(format!(
                    "ca_file {} holds no PEM certificate",
                    file.display()
                )));
            }
            Some(pem)
        }
        None => None,
    };
    if entry.plain_http == Some(true) && (ca_pem.is_some() || entry.insecure_skip_verify) {
        return Err(invalid(
            "plain_http cannot be combined with ca_file or insecure_skip_verify".to_owned(),
        ));
    }
    if entry.upstream == Some(false) && mirrors.is_empty() {
        return Err(invalid(
            "upstream = false needs at least one mirror".to_owned(),
        ));
    }
    Ok(Host {
        mirrors,
        upstream: entry.upstream.unwrap_or(true),
        plain_http: entry.plain_http,
        tls: Tls {
            ca_pem,
            insecure_skip_verify: entry.insecure_skip_verify,
        },
        credential,
    })
}

/// `docker.io` for Docker Hub's other names; everything else as given, lowercased host.
pub fn canonical_host(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    match lower.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_owned()
        }
        _ => lower,
    }
}

/// Checks a `host[:port]` (no scheme, no path) and canonicalises it.
fn normalize_host(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("empty host".to_owned());
    }
    if text.contains("://") {
        return Err("a registry is named by host[:port], without a scheme".to_owned());
    }
    if text.contains('/') {
        return Err("a registry is named by host[:port], without a path".to_owned());
    }
    let (host, port) = split_port(text);
    if let Some(port) = port
        && port.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err(format!("invalid port {port:?}"));
    }
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let valid = if bracketed {
        host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    } else {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    };
    if !valid {
        return Err(format!("{host:?} is not a valid host name"));
    }
    Ok(canonical_host(text))
}

/// `host` and `port` of `host[:port]` (IPv6 in brackets).
fn split_port(text: &str) -> (&str, Option<&str>) {
    if text.starts_with('[') {
        return match text.find(']') {
            Some(end) if text[end + 1..].starts_with(':') => {
                (&text[..=end], Some(&text[end + 2..]))
            }
            _ => (text, None),
        };
    }
    match text.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    }
}

fn parse_mirror(text: &str) -> Result<MirrorUrl, String> {
    let (plain_http, rest) = if let Some(rest) = text.strip_prefix("http://") {
        (Some(true), rest)
    } else if let Some(rest) = text.strip_prefix("https://") {
        (Some(false), rest)
    } else {
        (None, text)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let rest = rest.strip_suffix("/v2").unwrap_or(rest);
    if rest.contains('/') {
        return Err(
            "mirror endpoints with a path are not supported; give scheme://host[:port]".to_owned(),
        );
    }
    Ok(MirrorUrl {
        host: normalize_host(rest)?,
        plain_http,
    })
}

/// `localhost`, `127.0.0.0/8` and `::1`, with or without a port.
pub fn is_loopback(host: &str) -> bool {
    let (name, _) = split_port(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Decodes a docker `auth` field (base64 of `user:password`).
pub(crate) fn decode_auth(auth: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Registries, String> {
        Registries::parse(text, Path::new("/etc/berth/registries.toml")).map_err(|e| {
            let mut message = e.to_string();
            if let Some(source) = std::error::Error::source(&e) {
                message.push_str(&format!(": {source}"));
            }
            message
        })
    }

    fn urls(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints
            .iter()
            .map(|e| format!("{}{}", e.url(), if e.mirror { " (mirror)" } else { "" }))
            .collect()
    }

    #[test]
    fn an_empty_file_pulls_directly_over_https_except_for_loopback_hosts() {
        let registries = parse("").unwrap();
        let table: &[(&str, &str)] = &[
            ("docker.io", "https://docker.io"),
            ("registry.lab:5000", "https://registry.lab:5000"),
            ("127.0.0.1:5555", "http://127.0.0.1:5555"),
            ("localhost:5000", "http://localhost:5000"),
            ("[::1]:5000", "http://[::1]:5000"),
            ("index.docker.io", "https://docker.io"),
        ];
        for (registry, want) in table {
            assert_eq!(urls(&registries.endpoints(registry)), [*want], "{registry}");
        }
    }

    #[test]
    fn mirrors_come_before_the_registry_and_follow_their_own_settings() {
        let registries = parse(
            r#"
            [registry."docker.io"]
            mirrors = ["http://10.0.0.5:5000", "mirror.lab", "https://secure.lab:5443/v2/"]
            [registry."mirror.lab"]
            plain_http = true
            username = "m"
            password = "p"
            [registry."registry.lab:5000"]
            mirrors = ["127.0.0.1:5001"]
            upstream = false
            [registry."*"]
            mirrors = ["catch.all:5000"]
            "#,
        )
        .unwrap();
        assert_eq!(
            urls(&registries.endpoints("docker.io")),
            [
                "http://10.0.0.5:5000 (mirror)",
                "http://mirror.lab (mirror)",
                "https://secure.lab:5443 (mirror)",
                "https://docker.io",
            ]
        );
        let mirror = &registries.endpoints("docker.io")[1];
        assert_eq!(
            mirror.credential,
            Some(Credential::Basic {
                username: "m".into(),
                password: "p".into()
            })
        );
        assert_eq!(
            urls(&registries.endpoints("registry.lab:5000")),
            ["http://127.0.0.1:5001 (mirror)"]
        );
        assert_eq!(
            urls(&registries.endpoints("quay.io")),
            ["https://catch.all:5000 (mirror)", "https://quay.io"]
        );
    }

    #[test]
    fn credentials_come_from_the_entry_of_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("pw");
        fs::write(&password_file, "s3cret\n").unwrap();
        let text = format!(
            r#"
            [registry."a.lab"]
            username = "alice"
            password_file = "{}"
            [registry."b.lab"]
            auth = "Ym9iOmh1bnRlcjI="
            [registry."c.lab"]
            token = "abc"
            "#,
            password_file.display()
        );
        let registries = parse(&text).unwrap();
        let credential = |host: &str| registries.endpoints(host)[0].credential.clone();
        assert_eq!(
            credential("a.lab"),
            Some(Credential::Basic {
                username: "alice".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(
            credential("b.lab"),
            Some(Credential::Basic {
                username: "bob".into(),
                password: "hunter2".into()
            })
        );
        assert_eq!(credential("c.lab"), Some(Credential::Bearer("abc".into())));
        assert_eq!(credential("d.lab"), None);
    }

    #[test]
    fn bad_entries_are_rejected_naming_the_host_and_the_problem() {
        let table: &[(&str, &str)] = &[
            (
                "[registry.\"https://x.lab\"]",
                "registry.\"https://x.lab\": a registry is named by host[:port], without a scheme",
            ),
            ("[registry.\"x.lab/path\"]", "without a path"),
            ("[registry.\"x.lab:99999\"]", "invalid port \"99999\""),
            ("[registry.\"bad host\"]", "is not a valid host name"),
            (
                "[registry.\"x.lab\"]\nusername = \"u\"",
                "username needs password",
            ),
            (
                "[registry.\"x.lab\"]\npassword = \"p\"",
                "password needs username",
            ),
            ("[registry.\"x.lab\"]\nauth = \"!!!\"", "auth is not base64"),
            (
                "[registry.\"x.lab\"]\nusername = \"u\"\npassword = \"p\"\ntoken = \"t\"",
                "give one of",
            ),
            (
                "[registry.\"x.lab\"]\nmirrors = [\"http://m/prefix\"]",
                "mirrors[0] \"http://m/prefix\": mirror endpoints with a path",
            ),
            (
                "[registry.\"x.lab\"]\nupstream = false",
                "upstream = false needs at least one mirror",
            ),
            (
                "[registry.\"x.lab\"]\nplain_http = true\ninsecure_skip_verify = true",
                "plain_http cannot be combined",
            ),
            (
                "[registry.\"x.lab\"]\npassword_file = \"/nonexistent/berth-pw\"\nusername = \"u\"",
                "cannot read password_file /nonexistent/berth-pw",
            ),
            (
                "[registry.\"*\"]\nusername = \"u\"\npassword = \"p\"",
                "may only set mirrors and upstream",
            ),
            (
                "[registry.\"x.lab\"]\nmirrror = []",
                "unknown field `mirrror`",
            ),
            (
                "[registry.\"docker.io\"]\n[registry.\"index.docker.io\"]",
                "docker.io is configured twice",
            ),
        ];
        for (text, want) in table {
            let error = parse(text).expect_err(text);
            assert!(error.contains(want), "{text:?}: {error}");
            assert!(
                error.starts_with("registries file /etc/berth/registries.toml"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_an_empty_configuration() {
        let registries = Registries::load(Path::new("/nonexistent/berth/registries.toml")).unwrap();
        assert_eq!(
            urls(&registries.endpoints("docker.io")),
            ["https://docker.io"]
        );
    }
}
