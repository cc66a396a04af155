//! A pod's container as the runtime's [`ContainerConfig`] and mounts: command and args with
//! `$(VAR)` expansion, security context (pod merged with container), resources, the OOM
//! score from the QoS class, volume mounts with subPath(Expr). Pure.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_runtime::VolumeMount;
use berth_runtime::spec::{ContainerConfig, Resources, SeccompProfile, SecurityContext};
use k8s_openapi::api::core::v1::{Container, Pod};

use super::env::expand;
use crate::objects::quantity;

/// A container that cannot be configured: `CreateContainerConfigError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
    )]
    RunsAsRoot { pod: String, container: String },
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
    )]
    NonNumericUser {
        pod: String,
        container: String,
        user: String,
    },
    #[error("volumeMount {0:?} names no volume of the pod")]
    NoVolume(String),
    #[error("{field}: invalid quantity {value:?}")]
    Quantity { field: String, value: String },
}

/// Builds the container's runtime configuration.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    env: Vec<(String, String)>,
    image_user: Option<&str>,
    node_memory: u64,
) -> Result<ContainerConfig, ConfigError> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group));
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|s| s.run_as_non_root))
        == Some(true);
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    if non_root {
        match run_as_user {
            Some(0) => {
                return Err(ConfigError::RunsAsRoot {
                    pod: pod_name,
                    container: container.name.clone(),
                });
            }
            Some(_) => {}
            None => {
                let user = image_user.unwrap_or("").split(':').next().unwrap_or("");
                match user.parse::<u32>() {
                    Ok(0) => {
                        return Err(ConfigError::RunsAsRoot {
                            pod: pod_name,
                            container: container.name.clone(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) if user.is_empty() || user == "root" => {
                        return Err(ConfigError::RunsAsRoot {
                            pod: pod_name,
                            container: container.name.clone(),
                        });
                    }
                    Err(_) => {
                        return Err(ConfigError::NonNumericUser {
                            pod: pod_name,
                            container: container.name.clone(),
                            user: user.to_string(),
                        });
                    }
                }
            }
        }
    }
    let seccomp = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod_sc.and_then(|s| s.seccomp_profile.as_ref()))
        .map(|p| {
            if p.type_ == "Unconfined" {
                SeccompProfile::Unconfined
            } else {
                SeccompProfile::RuntimeDefault
            }
        })
        .unwrap_or_default();
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let security = SecurityContext {
        run_as_user: run_as_user.map(|u| u as u32),
        run_as_group: run_as_group.map(|g| g as u32),
        supplemental_groups: pod_sc
            .and_then(|s| s.supplemental_groups.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|g| g as u32)
            .collect(),
        fs_group: pod_sc.and_then(|s| s.fs_group).map(|g| g as u32),
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        read_only_root_filesystem: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        allow_privilege_escalation: sc.and_then(|s| s.allow_privilege_escalation),
        capabilities_add: caps
            .and_then(|c| c.add.clone())
            .unwrap_or_default()
            .into_iter()
            .map(cap_name)
            .collect(),
        capabilities_drop: caps
            .and_then(|c| c.drop.clone())
            .unwrap_or_default()
            .into_iter()
            .map(cap_name)
            .collect(),
        seccomp,
    };
    let resources = resources(container)?;
    let command = container
        .command
        .iter()
        .flatten()
        .map(|c| expand(c, &env))
        .collect();
    let args = container
        .args
        .iter()
        .flatten()
        .map(|a| expand(a, &env))
        .collect();
    Ok(ContainerConfig {
        command,
        args,
        working_dir: container.working_dir.clone().filter(|w| !w.is_empty()),
        security,
        resources,
        oom_score_adj: Some(oom_score_adj(pod, container, node_memory)),
        env,
    })
}

/// `CAP_NET_ADMIN` from Kubernetes' `NET_ADMIN` (both spellings accepted).
fn cap_name(c: String) -> String {
    let upper = c.to_ascii_uppercase();
    if upper.starts_with("CAP_") || upper == "ALL" {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

fn resources(container: &Container) -> Result<Resources, ConfigError> {
    let r = container.resources.as_ref();
    let get = |section: &str, name: &str| {
        r.and_then(|r| {
            if section == "limits" {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        })
        .and_then(|m| m.get(name))
        .map(|q| q.0.clone())
    };
    let cpu = |section: &str| -> Result<Option<u64>, ConfigError> {
        get(section, "cpu")
            .map(|v| {
                quantity::cpu_millis(&v)
                    .map(|m| m.clamp(0, u64::MAX as i128) as u64)
                    .map_err(|_| ConfigError::Quantity {
                        field: format!("resources.{section}.cpu"),
                        value: v,
                    })
            })
            .transpose()
    };
    let memory = get("limits", "memory")
        .map(|v| {
            quantity::bytes(&v)
                .map(|b| b.clamp(0, u64::MAX as i128) as u64)
                .map_err(|_| ConfigError::Quantity {
                    field: "resources.limits.memory".into(),
                    value: v,
                })
        })
        .transpose()?;
    Ok(Resources {
        cpu_limit_millis: cpu("limits")?,
        cpu_request_millis: cpu("requests")?,
        memory_limit_bytes: memory,
        pids_limit: None,
    })
}

/// kubelet's oom_score_adj by QoS class: Guaranteed -997, BestEffort 1000, Burstable
/// `1000 - 1000 * memoryRequest / nodeMemory`, clamped to [2, 999].
pub fn oom_score_adj(pod: &Pod, container: &Container, node_memory: u64) -> i32 {
    match super::status::qos_class(pod) {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let request = container
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get("memory"))
                .and_then(|q| quantity::bytes(&q.0).ok())
                .unwrap_or(0)
                .max(0) as u128;
            if node_memory == 0 {
                return 999;
            }
            let adj = 1000i128 - (1000u128 * request / node_memory as u128) as i128;
            adj.clamp(2, 999) as i32
        }
    }
}

/// The container's volume mounts, given the host path of each prepared pod volume.
pub fn mounts(
    container: &Container,
    volume_paths: &BTreeMap<String, PathBuf>,
    env: &[(String, String)],
) -> Result<Vec<VolumeMount>, ConfigError> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let path = volume_paths
            .get(&m.name)
            .ok_or_else(|| ConfigError::NoVolume(m.name.clone()))?;
        let sub_path = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(e)) if !e.is_empty() => Some(expand(e, env)),
            _ => None,
        };
        out.push(VolumeMount {
            volume_path: path.clone(),
            mount_path: m.mount_path.clone(),
            sub_path,
            read_only: m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(pod_sc: Value, container: Value) -> (Pod, Container) {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"securityContext": pod_sc, "containers": [container]}}))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    #[test]
    fn security_context_merges_pod_and_container() {
        let (p, c) = pod(
            json!({"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000, "supplementalGroups": [3000]}),
            json!({"name": "c", "image": "x", "securityContext": {"runAsUser": 1001, "readOnlyRootFilesystem": true,
                "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}, "seccompProfile": {"type": "Unconfined"}}}),
        );
        let cfg = container_config(&p, &c, vec![], None, 1 << 30).unwrap();
        assert_eq!(cfg.security.run_as_user, Some(1001));
        assert_eq!(cfg.security.run_as_group, Some(1000));
        assert_eq!(cfg.security.fs_group, Some(2000));
        assert_eq!(cfg.security.supplemental_groups, vec![3000]);
        assert!(cfg.security.read_only_root_filesystem);
        assert_eq!(cfg.security.capabilities_add, vec!["CAP_NET_ADMIN"]);
        assert_eq!(cfg.security.capabilities_drop, vec!["ALL"]);
        assert_eq!(cfg.security.seccomp, SeccompProfile::Unconfined);
    }

    #[test]
    fn run_as_non_root_is_checked_against_the_image_user() {
        let cases = [
            (json!({"runAsNonRoot": true}), None, Some("RunsAsRoot")),
            (json!({"runAsNonRoot": true}), Some("0"), Some("RunsAsRoot")),
            (
                json!({"runAsNonRoot": true}),
                Some("postgres"),
                Some("NonNumericUser"),
            ),
            (json!({"runAsNonRoot": true}), Some("999:999"), None),
            (json!({"runAsNonRoot": true, "runAsUser": 1000}), None, None),
            (
                json!({"runAsNonRoot": true, "runAsUser": 0}),
                Some("999"),
                Some("RunsAsRoot"),
            ),
            (json!({}), None, None),
        ];
        for (sc, user, want) in cases {
            let (p, c) = pod(sc.clone(), json!({"name": "c", "image": "x"}));
            let got = container_config(&p, &c, vec![], user, 1 << 30);
            let kind = got.err().map(|e| match e {
                ConfigError::RunsAsRoot { .. } => "RunsAsRoot",
                ConfigError::NonNumericUser { .. } => "NonNumericUser",
                _ => "other",
            });
            assert_eq!(kind, want, "{sc} {user:?}");
        }
    }

    #[test]
    fn command_and_args_expand_env_and_resources_convert() {
        let (p, c) = pod(
            json!({}),
            json!({"name": "c", "image": "x", "command": ["sh", "-c"], "args": ["echo $(GREETING)"],
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}}),
        );
        let cfg = container_config(
            &p,
            &c,
            vec![("GREETING".into(), "hi".into())],
            None,
            1 << 30,
        )
        .unwrap();
        assert_eq!(cfg.args, vec!["echo hi"]);
        assert_eq!(cfg.resources.cpu_limit_millis, Some(500));
        assert_eq!(cfg.resources.cpu_request_millis, Some(250));
        assert_eq!(cfg.resources.memory_limit_bytes, Some(64 << 20));
        assert_eq!(
            cfg.oom_score_adj,
            Some(999),
            "burstable without a memory request"
        );
    }

    #[test]
    fn mounts_resolve_volumes_and_sub_path_expr() {
        let (_, c) = pod(
            json!({}),
            json!({"name": "c", "image": "x", "volumeMounts": [
                {"name": "data", "mountPath": "/data", "subPathExpr": "$(POD)"},
                {"name": "cfg", "mountPath": "/etc/app", "readOnly": true}
            ]}),
        );
        let paths = BTreeMap::from([
            ("data".to_string(), PathBuf::from("/v/data")),
            ("cfg".to_string(), PathBuf::from("/v/cfg")),
        ]);
        let m = mounts(&c, &paths, &[("POD".into(), "web-0".into())]).unwrap();
        assert_eq!(m[0].sub_path.as_deref(), Some("web-0"));
        assert!(m[1].read_only);
        let missing = BTreeMap::new();
        assert_eq!(
            mounts(&c, &missing, &[]).unwrap_err(),
            ConfigError::NoVolume("data".into())
        );
    }
}
