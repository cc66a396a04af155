//! A pod's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`, rendered as kubelet renders
//! them (by the dns crate) and kept under the run dir for the pod's containers to bind-mount.

use std::net::IpAddr;
use std::path::PathBuf;

use berth_dns::podfiles::{
    DnsOption, DnsPolicy, HostAlias, HostsInput, PodDnsConfig, ResolvConfInput, hosts_file,
    pod_hostname, resolv_conf,
};
use berth_runtime::spec::EtcFiles;
use k8s_openapi::api::core::v1::Pod;

use super::NodeContext;

fn dir(node: &NodeContext, uid: &str) -> PathBuf {
    node.run_dir.join("kubelet").join("pods").join(uid)
}

/// The files to bind-mount into the pod's containers.
pub fn etc_files(node: &NodeContext, uid: &str, _pod: &Pod) -> EtcFiles {
    let d = dir(node, uid);
    EtcFiles {
        hostname: Some(d.join("hostname")),
        hosts: Some(d.join("hosts")),
        resolv_conf: Some(d.join("resolv.conf")),
    }
}

/// Writes the pod's files (replacing them atomically).
pub fn write(
    node: &NodeContext,
    pod: &Pod,
    uid: &str,
    pod_ip: Option<&str>,
) -> std::io::Result<()> {
    let spec = pod.spec.as_ref();
    let d = dir(node, uid);
    std::fs::create_dir_all(&d)?;
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let hostname = if host_network {
        node.host_name.clone()
    } else {
        pod_hostname(name, spec.and_then(|s| s.hostname.as_deref()))
    };

    let policy = match spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst")
    {
        "Default" => DnsPolicy::Default,
        "None" => DnsPolicy::None,
        "ClusterFirstWithHostNet" => DnsPolicy::ClusterFirstWithHostNet,
        _ => DnsPolicy::ClusterFirst,
    };
    let dns_config = spec
        .and_then(|s| s.dns_config.as_ref())
        .map(|c| PodDnsConfig {
            nameservers: c.nameservers.clone().unwrap_or_default(),
            searches: c.searches.clone().unwrap_or_default(),
            options: c
                .options
                .iter()
                .flatten()
                .map(|o| DnsOption {
                    name: o.name.clone().unwrap_or_default(),
                    value: o.value.clone(),
                })
                .collect(),
        });
    let cluster_dns = node.cluster_dns();
    let rendered = resolv_conf(&ResolvConfInput {
        policy,
        host_network,
        namespace: ns,
        cluster_domain: &node.cluster_domain,
        cluster_dns: &cluster_dns,
        host: &node.host_resolv,
        dns_config: dns_config.as_ref(),
    });
    for warning in &rendered.warnings {
        tracing::debug!(pod = %name, %warning, "pod resolv.conf");
    }

    let ips: Vec<IpAddr> = pod_ip.and_then(|ip| ip.parse().ok()).into_iter().collect();
    let aliases: Vec<HostAlias> = spec
        .and_then(|s| s.host_aliases.as_ref())
        .into_iter()
        .flatten()
        .map(|a| HostAlias {
            ip: a.ip.clone(),
            hostnames: a.hostnames.clone().unwrap_or_default(),
        })
        .collect();
    let node_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let hosts = hosts_file(&HostsInput {
        pod_name: name,
        hostname: spec.and_then(|s| s.hostname.as_deref()),
        subdomain: spec.and_then(|s| s.subdomain.as_deref()),
        namespace: ns,
        cluster_domain: &node.cluster_domain,
        pod_ips: &ips,
        host_aliases: &aliases,
        host_network,
        node_hosts: &node_hosts,
    });
    replace(&d.join("resolv.conf"), rendered.content.as_bytes())?;
    replace(&d.join("hosts"), hosts.as_bytes())?;
    replace(&d.join("hostname"), format!("{hostname}\n").as_bytes())?;
    Ok(())
}

fn replace(path: &std::path::Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

/// Removes the pod's files.
pub fn remove(node: &NodeContext, uid: &str) {
    let _ = std::fs::remove_dir_all(dir(node, uid));
}
