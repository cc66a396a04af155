//! The `/etc/resolv.conf` and `/etc/hosts` a Pod gets, rendered as kubelet renders them
//! (pkg/kubelet/network/dns and pkg/kubelet/kubelet_pods.go).

use std::net::IpAddr;

use crate::forward::ResolvConf;

/// kubelet's limit on nameservers (`validation.MaxDNSNameservers`).
pub const MAX_NAMESERVERS: usize = 3;
/// kubelet's limit on search domains (`MaxDNSSearchPaths`).
pub const MAX_SEARCH_DOMAINS: usize = 32;
/// kubelet's limit on the length of the search line (`MaxDNSSearchListChars`).
pub const MAX_SEARCH_CHARS: usize = 2048;

/// `spec.dnsPolicy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DnsPolicy {
    /// Cluster DNS first (the default); the host's resolver for host-network Pods.
    #[default]
    ClusterFirst,
    /// Cluster DNS even for host-network Pods.
    ClusterFirstWithHostNet,
    /// The node's resolver configuration.
    Default,
    /// Only `dnsConfig`.
    None,
}

/// One `spec.dnsConfig.options` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsOption {
    /// `name`.
    pub name: String,
    /// `value`.
    pub value: Option<String>,
}

/// `spec.dnsConfig`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodDnsConfig {
    /// `nameservers`.
    pub nameservers: Vec<String>,
    /// `searches`.
    pub searches: Vec<String>,
    /// `options`.
    pub options: Vec<DnsOption>,
}

/// What a Pod's resolv.conf is made from.
#[derive(Clone, Debug)]
pub struct ResolvConfInput<'a> {
    /// `spec.dnsPolicy`.
    pub policy: DnsPolicy,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// The Pod's namespace.
    pub namespace: &'a str,
    /// The cluster domain.
    pub cluster_domain: &'a str,
    /// The cluster DNS addresses (the node's DNS address).
    pub cluster_dns: &'a [IpAddr],
    /// The host's resolver configuration (as kubelet reads it, see
    /// [`crate::forward::host_resolv_conf`]).
    pub host: &'a ResolvConf,
    /// `spec.dnsConfig`.
    pub dns_config: Option<&'a PodDnsConfig>,
}

/// A rendered file and what kubelet would have reported as events while making it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The file's content.
    pub content: String,
    /// Limits that were applied (dropped nameservers or search domains), one sentence each.
    pub warnings: Vec<String>,
}

/// Renders a Pod's `/etc/resolv.conf`.
pub fn resolv_conf(input: &ResolvConfInput<'_>) -> Rendered {
    let mut warnings = Vec::new();
    let cluster = match input.policy {
        DnsPolicy::None => None,
        DnsPolicy::ClusterFirstWithHostNet => Some(true),
        DnsPolicy::ClusterFirst => Some(!input.host_network),
        DnsPolicy::Default => Some(false),
    };
    let cluster = match cluster {
        Some(true) if input.cluster_dns.is_empty() => {
            warnings.push(
                "no cluster dns address is configured: the pod uses the host's resolver (dnsPolicy Default)"
                    .to_string(),
            );
            Some(false)
        }
        other => other,
    };
    let (mut nameservers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match cluster {
            None => (Vec::new(), Vec::new(), Vec::new()),
            Some(true) => {
                let domain = input.cluster_domain.trim_end_matches('.');
                let mut searches = Vec::new();
                if !domain.is_empty() {
                    searches.push(format!("{}.svc.{domain}", input.namespace));
                    searches.push(format!("svc.{domain}"));
                    searches.push(domain.to_string());
                }
                searches.extend(input.host.search.iter().cloned());
                (
                    input.cluster_dns.iter().map(IpAddr::to_string).collect(),
                    searches,
                    vec!["ndots:5".to_string()],
                )
            }
            Some(false) => (
                input
                    .host
                    .nameservers
                    .iter()
                    .map(IpAddr::to_string)
                    .collect(),
                input.host.search.clone(),
                input.host.options.clone(),
            ),
        };
    if let Some(config) = input.dns_config {
        nameservers.extend(config.nameservers.iter().cloned());
        searches.extend(config.searches.iter().cloned());
        options = merge_options(&options, &config.options);
    }
    let mut nameservers = dedup(nameservers);
    let mut searches = dedup(
        searches
            .into_iter()
            .map(|s| s.trim_end_matches('.').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    );
    if nameservers.len() > MAX_NAMESERVERS {
        warnings.push(format!(
            "nameserver limits were exceeded: kept {}, dropped {}",
            nameservers[..MAX_NAMESERVERS].join(" "),
            nameservers[MAX_NAMESERVERS..].join(" ")
        ));
        nameservers.truncate(MAX_NAMESERVERS);
    }
    if searches.len() > MAX_SEARCH_DOMAINS {
        warnings.push(format!(
            "search domain limit of {MAX_SEARCH_DOMAINS} was exceeded: dropped {}",
            searches[MAX_SEARCH_DOMAINS..].join(" ")
        ));
        searches.truncate(MAX_SEARCH_DOMAINS);
    }
    while searches.join(" ").len() > MAX_SEARCH_CHARS {
        let dropped = searches.pop().unwrap_or_default();
        warnings.push(format!(
            "search line longer than {MAX_SEARCH_CHARS} characters: dropped {dropped}"
        ));
    }
    let mut content = String::new();
    for nameserver in &nameservers {
        content.push_str(&format!("nameserver {nameserver}\n"));
    }
    if !searches.is_empty() {
        content.push_str(&format!("search {}\n", searches.join(" ")));
    }
    if !options.is_empty() {
        content.push_str(&format!("options {}\n", options.join(" ")));
    }
    Rendered { content, warnings }
}

/// kubelet's `mergeDNSOptions`: a `dnsConfig` option replaces an existing one of the
/// same name; order of first appearance is kept (kubelet's order is a Go map's).
fn merge_options(existing: &[String], extra: &[DnsOption]) -> Vec<String> {
    let mut merged: Vec<(String, Option<String>)> = Vec::new();
    let mut set = |name: &str, value: Option<String>| {
        let value = value.filter(|v| !v.is_empty());
        match merged.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => merged.push((name.to_string(), value)),
        }
    };
    for option in existing {
        match option.split_once(':') {
            Some((name, value)) => set(name, Some(value.to_string())),
            None => set(option, None),
        }
    }
    for option in extra {
        set(&option.name, option.value.clone());
    }
    merged
        .into_iter()
        .map(|(name, value)| match value {
            Some(value) => format!("{name}:{value}"),
            None => name,
        })
        .collect()
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// `spec.hostAliases[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAlias {
    /// `ip`.
    pub ip: String,
    /// `hostnames`.
    pub hostnames: Vec<String>,
}

/// What a Pod's hosts file is made from.
#[derive(Clone, Debug)]
pub struct HostsInput<'a> {
    /// The Pod's name.
    pub pod_name: &'a str,
    /// `spec.hostname`.
    pub hostname: Option<&'a str>,
    /// `spec.subdomain`.
    pub subdomain: Option<&'a str>,
    /// The Pod's namespace.
    pub namespace: &'a str,
    /// The cluster domain.
    pub cluster_domain: &'a str,
    /// The Pod's addresses.
    pub pod_ips: &'a [IpAddr],
    /// `spec.hostAliases`.
    pub host_aliases: &'a [HostAlias],
    /// `spec.hostNetwork`; such a Pod gets the node's hosts file (`node_hosts`).
    pub host_network: bool,
    /// The node's `/etc/hosts`, for host-network Pods.
    pub node_hosts: &'a str,
}

/// The hostname kubelet gives a Pod: `spec.hostname`, else the Pod name cut to 63 bytes
/// (without a trailing `-` or `.`).
pub fn pod_hostname(pod_name: &str, hostname: Option<&str>) -> String {
    match hostname {
        Some(hostname) if !hostname.is_empty() => hostname.to_string(),
        _ => {
            let cut = if pod_name.len() > 63 {
                &pod_name[..63]
            } else {
                pod_name
            };
            cut.trim_end_matches(['-', '.']).to_string()
        }
    }
}

/// Renders a Pod's `/etc/hosts` as kubelet's `managedHostsFileContent`.
pub fn hosts_file(input: &HostsInput<'_>) -> String {
    let mut content = String::new();
    if input.host_network {
        content.push_str(input.node_hosts);
        if !content.is_empty() && !content.ends_with('\n') {
            content.push('\n');
        }
    } else {
        content.push_str("# Kubernetes-managed hosts file.\n");
        content.push_str("127.0.0.1\tlocalhost\n");
        content.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
        content.push_str("fe00::0\tip6-localnet\n");
        content.push_str("fe00::0\tip6-mcastprefix\n");
        content.push_str("fe00::1\tip6-allnodes\n");
        content.push_str("fe00::2\tip6-allrouters\n");
        let hostname = pod_hostname(input.pod_name, input.hostname);
        let domain = input.subdomain.filter(|s| !s.is_empty()).map(|sub| {
            format!(
                "{sub}.{}.svc.{}",
                input.namespace,
                input.cluster_domain.trim_end_matches('.')
            )
        });
        for ip in input.pod_ips {
            match &domain {
                Some(domain) => {
                    content.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"))
                }
                None => content.push_str(&format!("{ip}\t{hostname}\n")),
            }
        }
    }
    if !input.host_aliases.is_empty() {
        content.push_str("\n# Entries added by HostAliases.\n");
        for alias in input.host_aliases {
            content.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
        }
    }
    content
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::parse_resolv_conf;

    fn host() -> ResolvConf {
        parse_resolv_conf("nameserver 192.0.2.53\nsearch lab.example\noptions edns0 ndots:2\n")
    }

    #[test]
    fn resolv_conf_follows_the_dns_policy() {
        let cluster_dns: Vec<IpAddr> = vec!["10.244.0.1".parse().unwrap()];
        let host = host();
        let cluster = "nameserver 10.244.0.1\n\
                       search db.svc.cluster.local svc.cluster.local cluster.local lab.example\n\
                       options ndots:5\n";
        let from_host = "nameserver 192.0.2.53\nsearch lab.example\noptions edns0 ndots:2\n";
        let cases: &[(&str, DnsPolicy, bool, &str)] = &[
            ("cluster first", DnsPolicy::ClusterFirst, false, cluster),
            (
                "cluster first on the host network uses the host",
                DnsPolicy::ClusterFirst,
                true,
                from_host,
            ),
            (
                "cluster first with host net",
                DnsPolicy::ClusterFirstWithHostNet,
                true,
                cluster,
            ),
            ("default", DnsPolicy::Default, false, from_host),
            (
                "none without dnsConfig is empty",
                DnsPolicy::None,
                false,
                "",
            ),
        ];
        for (name, policy, host_network, want) in cases {
            let rendered = resolv_conf(&ResolvConfInput {
                policy: *policy,
                host_network: *host_network,
                namespace: "db",
                cluster_domain: "cluster.local",
                cluster_dns: &cluster_dns,
                host: &host,
                dns_config: None,
            });
            assert_eq!(rendered.content, *want, "{name}");
            assert!(rendered.warnings.is_empty(), "{name}");
        }
    }

    #[test]
    fn dns_config_merges_as_kubelet_merges_it() {
        let cluster_dns: Vec<IpAddr> = vec!["10.244.0.1".parse().unwrap()];
        let host = host();
        let config = PodDnsConfig {
            nameservers: vec!["10.244.0.1".into(), "192.0.2.10".into()],
            searches: vec!["extra.example".into(), "svc.cluster.local".into()],
            options: vec![
                DnsOption {
                    name: "ndots".into(),
                    value: Some("2".into()),
                },
                DnsOption {
                    name: "edns0".into(),
                    value: None,
                },
            ],
        };
        let rendered = resolv_conf(&ResolvConfInput {
            policy: DnsPolicy::ClusterFirst,
            host_network: false,
            namespace: "db",
            cluster_domain: "cluster.local",
            cluster_dns: &cluster_dns,
            host: &host,
            dns_config: Some(&config),
        });
        assert_eq!(
            rendered.content,
            "nameserver 10.244.0.1\nnameserver 192.0.2.10\n\
             search db.svc.cluster.local svc.cluster.local cluster.local lab.example extra.example\n\
             options ndots:2 edns0\n"
        );
    }

    #[test]
    fn limits_drop_extra_nameservers_and_search_domains_with_a_warning() {
        let host = ResolvConf::default();
        let config = PodDnsConfig {
            nameservers: (1..=5).map(|i| format!("192.0.2.{i}")).collect(),
            searches: (0..40).map(|i| format!("d{i}.example")).collect(),
            options: vec![],
        };
        let rendered = resolv_conf(&ResolvConfInput {
            policy: DnsPolicy::None,
            host_network: false,
            namespace: "db",
            cluster_domain: "cluster.local",
            cluster_dns: &[],
            host: &host,
            dns_config: Some(&config),
        });
        let nameservers = rendered
            .content
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .count();
        assert_eq!(nameservers, MAX_NAMESERVERS);
        let search = rendered
            .content
            .lines()
            .find(|l| l.starts_with("search"))
            .unwrap();
        assert_eq!(search.split_whitespace().count() - 1, MAX_SEARCH_DOMAINS);
        assert_eq!(rendered.warnings.len(), 2, "{:?}", rendered.warnings);
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_the_host() {
        let host = host();
        let rendered = resolv_conf(&ResolvConfInput {
            policy: DnsPolicy::ClusterFirst,
            host_network: false,
            namespace: "db",
            cluster_domain: "cluster.local",
            cluster_dns: &[],
            host: &host,
            dns_config: None,
        });
        assert!(rendered.content.starts_with("nameserver 192.0.2.53\n"));
        assert_eq!(rendered.warnings.len(), 1);
    }

    #[test]
    fn hosts_file_matches_kubelet() {
        let ips: Vec<IpAddr> = vec!["10.244.1.5".parse().unwrap(), "fd00::5".parse().unwrap()];
        let aliases = vec![HostAlias {
            ip: "192.0.2.9".into(),
            hostnames: vec!["foo.local".into(), "bar.local".into()],
        }];
        let header = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n\
                      ::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
                      fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n";
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            &'a [HostAlias],
            String,
        );
        let cases: Vec<Case> = vec![
            (
                "with subdomain: fqdn and short name",
                Some("pg-0"),
                Some("pg"),
                &[],
                format!(
                    "{header}10.244.1.5\tpg-0.pg.db.svc.cluster.local\tpg-0\n\
                     fd00::5\tpg-0.pg.db.svc.cluster.local\tpg-0\n"
                ),
            ),
            (
                "without subdomain: short name only, from the pod name",
                None,
                None,
                &[],
                format!("{header}10.244.1.5\tpg-0\nfd00::5\tpg-0\n"),
            ),
            (
                "host aliases appended",
                None,
                None,
                &aliases,
                format!(
                    "{header}10.244.1.5\tpg-0\nfd00::5\tpg-0\n\n# Entries added by HostAliases.\n\
                     192.0.2.9\tfoo.local\tbar.local\n"
                ),
            ),
        ];
        for (name, hostname, subdomain, host_aliases, want) in cases {
            let got = hosts_file(&HostsInput {
                pod_name: "pg-0",
                hostname,
                subdomain,
                namespace: "db",
                cluster_domain: "cluster.local",
                pod_ips: &ips,
                host_aliases,
                host_network: false,
                node_hosts: "",
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn host_network_pods_get_the_node_hosts_file_plus_aliases() {
        let aliases = vec![HostAlias {
            ip: "192.0.2.9".into(),
            hostnames: vec!["foo".into()],
        }];
        let got = hosts_file(&HostsInput {
            pod_name: "agent",
            hostname: None,
            subdomain: None,
            namespace: "kube-system",
            cluster_domain: "cluster.local",
            pod_ips: &[],
            host_aliases: &aliases,
            host_network: true,
            node_hosts: "127.0.0.1 localhost\n192.0.2.1 node1",
        });
        assert_eq!(
            got,
            "127.0.0.1 localhost\n192.0.2.1 node1\n\n# Entries added by HostAliases.\n192.0.2.9\tfoo\n"
        );
    }

    #[test]
    fn long_pod_names_are_cut_to_a_valid_hostname() {
        let name = format!("{}-{}", "a".repeat(62), "b");
        assert_eq!(pod_hostname(&name, None), "a".repeat(62));
        assert_eq!(pod_hostname("x", Some("y")), "y");
    }
}
