//! A container's environment as kubelet builds it: `envFrom` first, then `env` in order
//! (`value` with `$(VAR)` expansion, `valueFrom` ConfigMap/Secret keys, downward API fields and
//! resource fields). Pure: the ConfigMaps and Secrets are looked up through a closure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;

use crate::objects::quantity;

/// Why an environment cannot be built: shown as `CreateContainerConfigError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("unsupported fieldPath {0:?}")]
    FieldPath(String),
    #[error("unsupported resource {0:?} in resourceFieldRef")]
    Resource(String),
}

/// Looks up a ConfigMap or Secret by kind ("ConfigMap"/"Secret") and name in the pod's namespace.
pub type Lookup<'a> = &'a dyn Fn(&str, &str) -> Option<std::sync::Arc<Value>>;

/// Facts about the pod that only the node knows (for the downward API).
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    pub node_name: String,
}

/// Builds the environment of `container` (order kept; a later name replaces an earlier one).
pub fn environment(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    lookup: Lookup<'_>,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, name: String, value: String| {
        if let Some(existing) = env.iter_mut().find(|(n, _)| *n == name) {
            existing.1 = value;
        } else {
            env.push((name, value));
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(cm) = &from.config_map_ref {
            match lookup("ConfigMap", &cm.name) {
                Some(obj) => {
                    for (k, v) in string_map(&obj, "data") {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if cm.optional == Some(true) => {}
                None => return Err(EnvError::ConfigMapNotFound(cm.name.clone())),
            }
        }
        if let Some(s) = &from.secret_ref {
            match lookup("Secret", &s.name) {
                Some(obj) => {
                    for (k, v) in secret_map(&obj) {
                        set(&mut env, format!("{prefix}{k}"), v);
                    }
                }
                None if s.optional == Some(true) => {}
                None => return Err(EnvError::SecretNotFound(s.name.clone())),
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(from) = &var.value_from {
            if let Some(r) = &from.config_map_key_ref {
                match lookup("ConfigMap", &r.name) {
                    Some(obj) => match string_map(&obj, "data").get(&r.key) {
                        Some(v) => v.clone(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(EnvError::ConfigMapKey {
                                namespace: ns.clone(),
                                name: r.name.clone(),
                                key: r.key.clone(),
                            });
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                }
            } else if let Some(r) = &from.secret_key_ref {
                match lookup("Secret", &r.name) {
                    Some(obj) => match secret_map(&obj).get(&r.key) {
                        Some(v) => v.clone(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(EnvError::SecretKey {
                                namespace: ns.clone(),
                                name: r.name.clone(),
                                key: r.key.clone(),
                            });
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(EnvError::SecretNotFound(r.name.clone())),
                }
            } else if let Some(f) = &from.field_ref {
                field_value(pod, facts, &f.field_path)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = r.container_name.as_deref().map_or(Some(container), |name| {
                    pod.spec
                        .as_ref()
                        .and_then(|s| s.containers.iter().find(|c| c.name == name))
                });
                resource_value(
                    target.unwrap_or(container),
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?
            } else {
                String::new()
            }
        } else {
            expand(var.value.as_deref().unwrap_or(""), &env)
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// A downward API field.
pub fn field_value(pod: &Pod, facts: &PodFacts, path: &str) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let map_entry = |map: Option<&BTreeMap<String, String>>, rest: &str| -> Option<String> {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| facts.node_name.clone()),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => facts.pod_ip.clone().unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        other => {
            if let Some(rest) = other.strip_prefix("metadata.labels") {
                map_entry(meta.labels.as_ref(), rest)
                    .ok_or_else(|| EnvError::FieldPath(other.into()))?
            } else if let Some(rest) = other.strip_prefix("metadata.annotations") {
                map_entry(meta.annotations.as_ref(), rest)
                    .ok_or_else(|| EnvError::FieldPath(other.into()))?
            } else {
                return Err(EnvError::FieldPath(other.into()));
            }
        }
    };
    Ok(value)
}

fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.map(|m| {
        m.iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join("\n")
    })
    .unwrap_or_default()
}

/// `limits.cpu`, `requests.memory`... divided by the divisor and rounded up, as kubelet does.
/// Without a limit, the node's allocatable is not known here: the request is used, else 0.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
) -> Result<String, EnvError> {
    let r = container.resources.as_ref();
    let (section, name) = resource
        .split_once('.')
        .ok_or_else(|| EnvError::Resource(resource.into()))?;
    let get = |sec: &str| {
        r.and_then(|r| {
            if sec == "limits" {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        })
        .and_then(|m| m.get(name))
        .map(|q| q.0.clone())
    };
    let raw = get(section)
        .or_else(|| get("requests"))
        .unwrap_or_else(|| "0".into());
    match name {
        "cpu" => {
            let millis =
                quantity::cpu_millis(&raw).map_err(|_| EnvError::Resource(resource.into()))?;
            let div = quantity::cpu_millis(divisor.unwrap_or("1"))
                .map_err(|_| EnvError::Resource(resource.into()))?
                .max(1);
            Ok(((millis + div - 1) / div).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = quantity::bytes(&raw).map_err(|_| EnvError::Resource(resource.into()))?;
            let div = quantity::bytes(divisor.unwrap_or("1"))
                .map_err(|_| EnvError::Resource(resource.into()))?
                .max(1);
            Ok(((bytes + div - 1) / div).to_string())
        }
        _ => Err(EnvError::Resource(resource.into())),
    }
}

fn string_map(obj: &Value, field: &str) -> BTreeMap<String, String> {
    obj.get(field)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A Secret's `data` (base64) decoded to strings.
pub fn secret_map(obj: &Value) -> BTreeMap<String, String> {
    secret_bytes(obj)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

/// A Secret's `data` (base64) decoded.
pub fn secret_bytes(obj: &Value) -> BTreeMap<String, Vec<u8>> {
    use base64::Engine;
    obj.get("data")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let text = v.as_str()?;
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()
                        .map(|b| (k.clone(), b))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the value of an earlier variable,
/// `$$(NAME)` is the literal `$(NAME)`, unknown references stay as written.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            if bytes[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if bytes[i + 1] == b'(' {
                if let Some(close) = input[i + 2..].find(')') {
                    let name = &input[i + 2..i + 2 + close];
                    match env.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&input[i..i + 3 + close]),
                    }
                    i += 3 + close;
                    continue;
                }
            }
        }
        let ch = input[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn pod(container: Value) -> (Pod, Container) {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "db", "uid": "u1", "labels": {"app": "web"},
                "annotations": {"batch.kubernetes.io/job-completion-index": "3"}},
            "spec": {"nodeName": "n1", "containers": [container]}
        }))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    fn lookup(kind: &str, name: &str) -> Option<Arc<Value>> {
        match (kind, name) {
            ("ConfigMap", "cfg") => Some(Arc::new(json!({"data": {"MODE": "fast", "LEVEL": "3"}}))),
            ("Secret", "pw") => Some(Arc::new(json!({"data": {"PASSWORD": "czNjcjN0"}}))),
            _ => None,
        }
    }

    #[test]
    fn env_is_built_as_kubelet_builds_it() {
        let (p, c) = pod(json!({"name": "c", "image": "x",
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$(CFG_MODE)-$$(A)-$(NOPE)"},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "PASSWORD"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "IDX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "A", "value": "2"}
        ]}));
        let facts = PodFacts {
            pod_ip: Some("10.244.0.9".into()),
            host_ip: None,
            node_name: "n1".into(),
        };
        let env = environment(&p, &c, &facts, &lookup).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_MODE"), Some("fast"));
        assert_eq!(get("B"), Some("1-fast-$(A)-$(NOPE)"));
        assert_eq!(get("PW"), Some("s3cr3t"));
        assert_eq!(get("POD"), Some("web-0"));
        assert_eq!(get("IP"), Some("10.244.0.9"));
        assert_eq!(get("IDX"), Some("3"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(
            get("A"),
            Some("2"),
            "a later definition replaces an earlier one"
        );
        assert_eq!(env.iter().filter(|(n, _)| n == "A").count(), 1);
    }

    #[test]
    fn missing_references_are_config_errors_unless_optional() {
        let cases = [
            (
                json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}),
                Some("configmap \"nope\" not found"),
            ),
            (
                json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}),
                Some("couldn't find key k in ConfigMap db/cfg"),
            ),
            (
                json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}),
                Some("secret \"nope\" not found"),
            ),
            (
                json!({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}}),
                None,
            ),
            (
                json!({"name": "X", "valueFrom": {"secretKeyRef": {"name": "pw", "key": "k", "optional": true}}}),
                None,
            ),
        ];
        for (var, want) in cases {
            let (p, c) = pod(json!({"name": "c", "image": "x", "env": [var.clone()]}));
            let got = environment(&p, &c, &PodFacts::default(), &lookup);
            match want {
                Some(msg) => assert_eq!(got.unwrap_err().to_string(), msg, "{var}"),
                None => assert!(got.unwrap().is_empty(), "{var}"),
            }
        }
    }

    #[test]
    fn resource_fields_divide_and_round_up() {
        let (p, c) = pod(
            json!({"name": "c", "image": "x", "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}},
            "env": [
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}
            ]}),
        );
        let env = environment(&p, &c, &PodFacts::default(), &lookup).unwrap();
        assert_eq!(
            env,
            vec![("CPU".into(), "2".into()), ("MEM".into(), "1024".into())]
        );
    }

    #[test]
    fn expansion_matches_kubernetes() {
        let env = vec![("A".to_string(), "x".to_string())];
        assert_eq!(expand("$(A)", &env), "x");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("a$b$(A", &env), "a$b$(A");
        assert_eq!(expand("é$(A)é", &env), "éxé");
    }
}
