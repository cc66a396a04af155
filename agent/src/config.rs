//! The agent's configuration: command-line flags, each of which may also be set in a TOML
//! file given by `--config`. A flag given on the command line wins over the file; the file
//! wins over the built-in default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

/// Flags of `berth agent`. Every field is optional here so that the TOML file can fill what
/// the command line leaves out; [`AgentConfig::resolve`] applies the defaults.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentFlags {
    /// TOML file with any of the settings below (keys as the long flag names, with
    /// underscores or dashes).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Persistent data: state, images, claim volumes, logs [default: /var/lib/berth].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Runtime state on tmpfs: shims, namespaces, the API socket [default: /run/berth].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// The API's unix socket: the global `--socket` (or BERTH_SOCKET) [default:
    /// <run-dir>/berth.sock].
    #[arg(skip)]
    pub socket: Option<PathBuf>,
    /// This host's name in the cluster [default: the hostname].
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// The cluster's DNS domain [default: cluster.local].
    #[arg(long, value_name = "DOMAIN")]
    pub cluster_domain: Option<String>,
    /// Where the berth-shim binary is [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    pub shim_path: Option<PathBuf>,
    /// Parent cgroup for pods; two agents on one machine need different ones
    /// [default: berth].
    #[arg(long, value_name = "NAME")]
    pub cgroup_parent: Option<String>,
    /// Extra address for the DNS server, ADDR:PORT (repeatable).
    #[arg(long = "dns-listen", value_name = "ADDR:PORT")]
    pub dns_listen: Vec<SocketAddr>,
    /// Upstream resolver for names outside the cluster domain (repeatable) [default: read
    /// from the host's resolv.conf as kubelet does].
    #[arg(long = "dns-upstream", value_name = "ADDR[:PORT]")]
    pub dns_upstream: Vec<String>,
    /// TTL of the DNS answers for the cluster domain, in seconds [default: 5].
    #[arg(long, value_name = "SECONDS")]
    pub dns_ttl: Option<u32>,
    /// Log format: "plain" (journald-friendly lines) or "json" [default: plain].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// This node's pod network [default: 10.244.0.0/24].
    #[arg(long, value_name = "CIDR")]
    pub pod_cidr: Option<String>,
    /// The pods' bridge; berth's nft table is named after it [default: berth0].
    #[arg(long, value_name = "NAME")]
    pub bridge: Option<String>,
    /// Where the peer port listens: raft, joins and the HTTPS API [default: 0.0.0.0:7443].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// The address peers reach this host at [default: the host's address with the
    /// --listen port].
    #[arg(long, value_name = "ADDR")]
    pub advertise_address: Option<String>,
    /// Join the cluster of the host at HOST:PORT (first start only; needs --token).
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// The join token printed by `berth token create` on a cluster host.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "BERTH_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The network every node's pod CIDR (a /24) is taken from [default: 10.244.0.0/16].
    #[arg(long, value_name = "CIDR")]
    pub cluster_cidr: Option<String>,
    /// Silence after which a node is NotReady (Ready=Unknown, tainted) and after which a host
    /// that cannot post its heartbeat fences itself; at least 2s [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub node_monitor_grace_period: Option<String>,
}

/// The same settings as read from the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    #[serde(alias = "data_dir")]
    data_dir: Option<PathBuf>,
    #[serde(alias = "run_dir")]
    run_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    #[serde(alias = "node_name")]
    node_name: Option<String>,
    #[serde(alias = "cluster_domain")]
    cluster_domain: Option<String>,
    #[serde(alias = "shim_path")]
    shim_path: Option<PathBuf>,
    #[serde(alias = "cgroup_parent")]
    cgroup_parent: Option<String>,
    #[serde(alias = "dns_listen", default)]
    dns_listen: Vec<SocketAddr>,
    #[serde(alias = "dns_upstream", default)]
    dns_upstream: Vec<String>,
    #[serde(alias = "dns_ttl")]
    dns_ttl: Option<u32>,
    #[serde(alias = "log_format")]
    log_format: Option<String>,
    #[serde(alias = "pod_cidr")]
    pod_cidr: Option<String>,
    bridge: Option<String>,
    listen: Option<SocketAddr>,
    #[serde(alias = "advertise_address")]
    advertise_address: Option<String>,
    join: Option<String>,
    token: Option<String>,
    #[serde(alias = "cluster_cidr")]
    cluster_cidr: Option<String>,
    #[serde(alias = "node_monitor_grace_period")]
    node_monitor_grace_period: Option<String>,
}

/// How the agent logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Plain,
    Json,
}

/// The agent's resolved configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub socket: PathBuf,
    pub node_name: String,
    pub cluster_domain: String,
    pub shim_path: PathBuf,
    pub cgroup_parent: String,
    pub dns_listen: Vec<SocketAddr>,
    pub dns_upstream: Vec<String>,
    pub dns_ttl: u32,
    pub log_format: LogFormat,
    pub pod_cidr: ipnet::Ipv4Net,
    /// Whether --pod-cidr was given (a joining host's pod CIDR otherwise comes from the leader).
    pub pod_cidr_given: bool,
    pub bridge: String,
    /// The peer port's listen address.
    pub listen: SocketAddr,
    /// The IP peers reach this host at; `None`: found at start from the routing table.
    pub advertise_address: Option<std::net::IpAddr>,
    /// `HOST:PORT` of a cluster host to join, with the token.
    pub join: Option<(String, String)>,
    /// The cluster CIDR pod CIDRs are taken from.
    pub cluster_cidr: ipnet::Ipv4Net,
    /// `--node-monitor-grace-period`.
    pub node_monitor_grace: std::time::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is invalid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl AgentConfig {
    /// Merges flags over the config file over the defaults, and checks the result.
    pub fn resolve(flags: AgentFlags) -> Result<AgentConfig, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        let data_dir = flags
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("/var/lib/berth"));
        let run_dir = flags
            .run_dir
            .or(file.run_dir)
            .unwrap_or_else(|| PathBuf::from("/run/berth"));
        let socket = flags
            .socket
            .or(file.socket)
            .unwrap_or_else(|| run_dir.join("berth.sock"));
        let node_name = match flags.node_name.or(file.node_name) {
            Some(name) => name,
            None => hostname()?,
        };
        let cluster_domain = flags
            .cluster_domain
            .or(file.cluster_domain)
            .unwrap_or_else(|| "cluster.local".to_string());
        let shim_path = match flags.shim_path.or(file.shim_path) {
            Some(path) => path,
            None => default_shim_path(),
        };
        let cgroup_parent = flags
            .cgroup_parent
            .or(file.cgroup_parent)
            .unwrap_or_else(|| "berth".to_string());
        let dns_listen = if flags.dns_listen.is_empty() {
            file.dns_listen
        } else {
            flags.dns_listen
        };
        let dns_upstream = if flags.dns_upstream.is_empty() {
            file.dns_upstream
        } else {
            flags.dns_upstream
        };
        let dns_ttl = flags.dns_ttl.or(file.dns_ttl).unwrap_or(5);
        let log_format = match flags.log_format.or(file.log_format).as_deref() {
            None | Some("plain") => LogFormat::Plain,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    field: "log-format",
                    message: format!(
                        "unsupported value {other:?}: supported values: \"plain\", \"json\""
                    ),
                });
            }
        };
        let pod_cidr_given = flags.pod_cidr.is_some() || file.pod_cidr.is_some();
        let pod_cidr_text = flags
            .pod_cidr
            .or(file.pod_cidr)
            .unwrap_or_else(|| "10.244.0.0/24".to_string());
        let pod_cidr: ipnet::Ipv4Net = pod_cidr_text.parse().map_err(|_| ConfigError::Invalid {
            field: "pod-cidr",
            message: format!("{pod_cidr_text:?} is not an IPv4 network (like 10.244.0.0/24)"),
        })?;
        let bridge = flags
            .bridge
            .or(file.bridge)
            .unwrap_or_else(|| "berth0".to_string());
        let listen = flags
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 7443)));
        let advertise_address = match flags.advertise_address.or(file.advertise_address) {
            None => None,
            Some(text) => Some(text.parse().map_err(|_| ConfigError::Invalid {
                field: "advertise-address",
                message: format!("{text:?} is not an IP address"),
            })?),
        };
        let join = match (flags.join.or(file.join), flags.token.or(file.token)) {
            (None, None) => None,
            (Some(host), Some(token)) => {
                if !host.contains(':') {
                    return Err(ConfigError::Invalid {
                        field: "join",
                        message: format!("{host:?} must be HOST:PORT (like 192.168.1.10:7443)"),
                    });
                }
                Some((host, token))
            }
            (Some(_), None) => {
                return Err(ConfigError::Invalid {
                    field: "token",
                    message: "--join needs --token (from `berth token create` on a cluster host)"
                        .into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Invalid {
                    field: "join",
                    message: "--token is only used with --join HOST:PORT".into(),
                });
            }
        };
        let cluster_cidr_text = flags
            .cluster_cidr
            .or(file.cluster_cidr)
            .unwrap_or_else(|| "10.244.0.0/16".to_string());
        let cluster_cidr: ipnet::Ipv4Net =
            cluster_cidr_text
                .parse()
                .map_err(|_| ConfigError::Invalid {
                    field: "cluster-cidr",
                    message: format!(
                        "{cluster_cidr_text:?} is not an IPv4 network (like 10.244.0.0/16)"
                    ),
                })?;
        if cluster_cidr.prefix_len() > 24 || cluster_cidr.network() != cluster_cidr.addr() {
            return Err(ConfigError::Invalid {
                field: "cluster-cidr",
                message: format!(
                    "{cluster_cidr_text} must be a network address with a prefix of /24 or shorter"
                ),
            });
        }
        let grace_text = flags
            .node_monitor_grace_period
            .or(file.node_monitor_grace_period)
            .unwrap_or_else(|| "10s".to_string());
        let node_monitor_grace = match crate::cluster::token::parse_ttl(&grace_text) {
            Some(d) if d >= std::time::Duration::from_secs(2) => d,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    field: "node-monitor-grace-period",
                    message: format!("{grace_text} is shorter than the minimum of 2s"),
                });
            }
            None => {
                return Err(ConfigError::Invalid {
                    field: "node-monitor-grace-period",
                    message: format!("{grace_text:?} is not a duration (like 10s or 1m)"),
                });
            }
        };
        let config = AgentConfig {
            data_dir,
            run_dir,
            socket,
            node_name,
            cluster_domain,
            shim_path,
            cgroup_parent,
            dns_listen,
            dns_upstream,
            dns_ttl,
            log_format,
            pod_cidr,
            pod_cidr_given,
            bridge,
            listen,
            advertise_address,
            join,
            cluster_cidr,
            node_monitor_grace,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        for (field, path) in [
            ("data-dir", &self.data_dir),
            ("run-dir", &self.run_dir),
            ("socket", &self.socket),
        ] {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("{} must be an absolute path", path.display()),
                });
            }
        }
        if !is_dns_subdomain(&self.node_name) {
            return Err(ConfigError::Invalid {
                field: "node-name",
                message: format!(
                    "{:?} must be a lowercase RFC 1123 subdomain (lowercase letters, digits, '-' and '.')",
                    self.node_name
                ),
            });
        }
        if !is_dns_subdomain(&self.cluster_domain) {
            return Err(ConfigError::Invalid {
                field: "cluster-domain",
                message: format!("{:?} must be a lowercase DNS domain", self.cluster_domain),
            });
        }
        if self.bridge.is_empty()
            || self.bridge.len() > 15
            || !self
                .bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::Invalid {
                field: "bridge",
                message: format!(
                    "{:?} must be an interface name of at most 15 letters, digits, '-', '_' or '.'",
                    self.bridge
                ),
            });
        }
        if self.pod_cidr.prefix_len() > 30 {
            return Err(ConfigError::Invalid {
                field: "pod-cidr",
                message: format!(
                    "{} holds no pod addresses: use a /30 or larger network",
                    self.pod_cidr
                ),
            });
        }
        if self.cgroup_parent.is_empty()
            || !self
                .cgroup_parent
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ConfigError::Invalid {
                field: "cgroup-parent",
                message: format!(
                    "{:?} must be a single cgroup name of letters, digits, '-', '_' and '.'",
                    self.cgroup_parent
                ),
            });
        }
        Ok(())
    }
}

fn read_file_config(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn hostname() -> Result<String, ConfigError> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|source| {
        ConfigError::Read {
            path: PathBuf::from("/proc/sys/kernel/hostname"),
            source,
        }
    })?;
    Ok(raw.trim().to_ascii_lowercase())
}

/// `berth-shim` lives next to the `berth` executable, as `cargo build` and the install both
/// place it.
fn default_shim_path() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("berth-shim")))
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/berth-shim"))
}

/// A lowercase RFC 1123 subdomain, as Kubernetes requires of node names.
pub fn is_dns_subdomain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(data_dir: &str) -> AgentFlags {
        AgentFlags {
            data_dir: Some(data_dir.into()),
            node_name: Some("node-a".into()),
            ..AgentFlags::default()
        }
    }

    #[test]
    fn defaults_fill_what_flags_leave_out() {
        let config = AgentConfig::resolve(flags("/srv/berth")).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/srv/berth"));
        assert_eq!(config.run_dir, PathBuf::from("/run/berth"));
        assert_eq!(config.socket, PathBuf::from("/run/berth/berth.sock"));
        assert_eq!(config.cluster_domain, "cluster.local");
        assert_eq!(config.cgroup_parent, "berth");
        assert_eq!(config.dns_ttl, 5);
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "run-dir = \"/run/berth-b\"\ncluster_domain = \"lab.internal\"\ndata-dir = \"/from/file\"\n",
        )
        .unwrap();
        let mut f = flags("/from/flag");
        f.config = Some(path);
        let config = AgentConfig::resolve(f).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.run_dir, PathBuf::from("/run/berth-b"));
        assert_eq!(config.socket, PathBuf::from("/run/berth-b/berth.sock"));
        assert_eq!(config.cluster_domain, "lab.internal");
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(&path, "data-dri = \"/x\"\n").unwrap();
        let mut f = flags("/x");
        f.config = Some(path);
        let err = AgentConfig::resolve(f).unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("data-dri"), "{chain}");
    }

    #[test]
    fn bad_values_are_rejected_with_the_field_name() {
        let cases: &[(&str, fn(&mut AgentFlags))] = &[
            ("data-dir", |f| f.data_dir = Some("relative/dir".into())),
            ("node-name", |f| f.node_name = Some("Node_A".into())),
            ("cluster-domain", |f| f.cluster_domain = Some("-bad".into())),
            ("cgroup-parent", |f| f.cgroup_parent = Some("a/b".into())),
            ("log-format", |f| f.log_format = Some("xml".into())),
            ("pod-cidr", |f| f.pod_cidr = Some("10.244.0.0/33".into())),
            ("pod-cidr", |f| f.pod_cidr = Some("10.244.0.1/31".into())),
            ("bridge", |f| {
                f.bridge = Some("a-very-long-bridge-name".into())
            }),
            ("advertise-address", |f| {
                f.advertise_address = Some("host-a".into())
            }),
            ("token", |f| f.join = Some("10.0.0.1:7443".into())),
            ("join", |f| f.token = Some("K10".into())),
            ("join", |f| {
                f.join = Some("10.0.0.1".into());
                f.token = Some("K10".into())
            }),
            ("cluster-cidr", |f| {
                f.cluster_cidr = Some("10.244.0.0/25".into())
            }),
            ("cluster-cidr", |f| {
                f.cluster_cidr = Some("10.244.1.0/16".into())
            }),
            ("node-monitor-grace-period", |f| {
                f.node_monitor_grace_period = Some("1s".into())
            }),
            ("node-monitor-grace-period", |f| {
                f.node_monitor_grace_period = Some("ten".into())
            }),
        ];
        for (field, mutate) in cases {
            let mut f = flags("/x");
            mutate(&mut f);
            let err = AgentConfig::resolve(f).unwrap_err().to_string();
            assert!(err.starts_with(field), "{field}: {err}");
        }
    }
}
