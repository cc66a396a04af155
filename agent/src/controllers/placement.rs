//! Where a pod runs: a pure function of the pod, the nodes and the pods already placed
//! (kube-scheduler's filters and a simple score), with kube-scheduler's words when no node
//! fits (`0/3 nodes are available: ...`).
//!
//! Filters: node Ready and schedulable (not cordoned), `spec.nodeName` if set, nodeSelector,
//! required node affinity, NoSchedule/NoExecute taints tolerated, cpu/memory requests and pod
//! count against allocatable, host ports free, pod anti-affinity and `DoNotSchedule` topology
//! spread on `kubernetes.io/hostname`, and a claim that lives on one node (the pod goes
//! where its data is). Score: fewest pods of the same owner (spreading a set's replicas), then
//! fewest pods, then name (deterministic).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use serde_json::Value;

use crate::objects::quantity;

/// The label every node carries with its name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// A node as placement sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    /// Allocatable cpu in millicores, memory in bytes, pod slots.
    pub cpu_milli: i64,
    pub memory: i64,
    pub pods: i64,
}

impl NodeInfo {
    /// Reads a Node object.
    pub fn from_node(node: &Node) -> NodeInfo {
        let status = node.status.as_ref();
        let alloc = status.and_then(|s| s.allocatable.as_ref());
        let get = |name: &str| alloc.and_then(|a| a.get(name)).map(|q| q.0.clone());
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default(),
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            ready,
            cpu_milli: get("cpu")
                .and_then(|q| quantity::cpu_millis(&q).ok().map(clamp))
                .unwrap_or(i64::MAX),
            memory: get("memory")
                .and_then(|q| quantity::bytes(&q).ok().map(clamp))
                .unwrap_or(i64::MAX),
            pods: get("pods").and_then(|q| q.parse().ok()).unwrap_or(110),
        }
    }
}

/// Why a node was filtered out, worded as kube-scheduler words it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    NotReady,
    Unschedulable,
    NodeName,
    Affinity,
    Taint(String),
    Cpu,
    Memory,
    TooManyPods,
    HostPort,
    AntiAffinity,
    Spread,
    Claim(String),
}

impl Misfit {
    fn text(&self) -> String {
        match self {
            Misfit::NotReady => {
                "node(s) had untolerated taint {node.kubernetes.io/not-ready: }".into()
            }
            Misfit::Unschedulable => "node(s) were unschedulable".into(),
            Misfit::NodeName => "node(s) didn't match the requested node name".into(),
            Misfit::Affinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Misfit::Taint(t) => format!("node(s) had untolerated taint {{{t}}}"),
            Misfit::Cpu => "Insufficient cpu".into(),
            Misfit::Memory => "Insufficient memory".into(),
            Misfit::TooManyPods => "Too many pods".into(),
            Misfit::HostPort => "node(s) didn't have free ports for the requested pod ports".into(),
            Misfit::AntiAffinity => "node(s) didn't match pod anti-affinity rules".into(),
            Misfit::Spread => "node(s) didn't match pod topology spread constraints".into(),
            Misfit::Claim(c) => format!("node(s) did not have the local volume of claim {c:?}"),
        }
    }
}

/// No node fits; the message kube-scheduler would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub message: String,
}

/// What else placement needs to know: where claims live.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// `namespace/claim` -> the node that holds its directory.
    pub node_of: BTreeMap<String, String>,
}

/// Picks a node for `pod` among `nodes`, given the pods already bound to nodes.
pub fn place(
    pod: &Pod,
    nodes: &[NodeInfo],
    placed: &[Pod],
    claims: &Claims,
) -> Result<String, Unschedulable> {
    let mut misfits: BTreeMap<Misfit, usize> = BTreeMap::new();
    let mut fits: Vec<&NodeInfo> = Vec::new();
    for node in nodes {
        match filter(pod, node, nodes, placed, claims) {
            Ok(()) => fits.push(node),
            Err(m) => *misfits.entry(m).or_default() += 1,
        }
    }
    if fits.is_empty() {
        let mut parts: Vec<String> = misfits
            .iter()
            .map(|(m, n)| format!("{n} {}", m.text()))
            .collect();
        parts.sort();
        let message = if nodes.is_empty() {
            "0/0 nodes are available: no nodes available to schedule pods.".to_string()
        } else {
            format!(
                "0/{} nodes are available: {}.",
                nodes.len(),
                parts.join(", ")
            )
        };
        return Err(Unschedulable { message });
    }
    let owner = controller_uid(pod);
    let score = |n: &&NodeInfo| {
        let on_node: Vec<&Pod> = placed
            .iter()
            .filter(|p| node_name(p) == Some(n.name.as_str()))
            .collect();
        let siblings = owner.as_ref().map_or(0, |o| {
            on_node
                .iter()
                .filter(|p| controller_uid(p).as_ref() == Some(o))
                .count()
        });
        (siblings, on_node.len(), n.name.clone())
    };
    Ok(fits
        .into_iter()
        .min_by_key(score)
        .expect("non-empty")
        .name
        .clone())
}

fn clamp(v: i128) -> i64 {
    v.clamp(0, i64::MAX as i128) as i64
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn controller_uid(pod: &Pod) -> Option<String> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

fn filter(
    pod: &Pod,
    node: &NodeInfo,
    nodes: &[NodeInfo],
    placed: &[Pod],
    claims: &Claims,
) -> Result<(), Misfit> {
    let spec = pod.spec.as_ref().ok_or(Misfit::Affinity)?;
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    if let Some(claim) = claim_node_misfit(pod, node, claims) {
        return Err(claim);
    }
    if !node.ready
        && !tolerates(
            tolerations,
            "node.kubernetes.io/not-ready",
            "",
            "NoSchedule",
        )
    {
        return Err(Misfit::NotReady);
    }
    if node.unschedulable
        && !tolerates(
            tolerations,
            "node.kubernetes.io/unschedulable",
            "",
            "NoSchedule",
        )
    {
        return Err(Misfit::Unschedulable);
    }
    if let Some(selector) = &spec.node_selector {
        if selector.iter().any(|(k, v)| node.labels.get(k) != Some(v)) {
            return Err(Misfit::Affinity);
        }
    }
    if let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    {
        if !required
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node))
        {
            return Err(Misfit::Affinity);
        }
    }
    for taint in &node.taints {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerates(
                tolerations,
                &taint.key,
                taint.value.as_deref().unwrap_or(""),
                &taint.effect,
            )
        {
            return Err(Misfit::Taint(format!(
                "{}: {}",
                taint.key,
                taint.value.as_deref().unwrap_or("")
            )));
        }
    }
    let on_node: Vec<&Pod> = placed
        .iter()
        .filter(|p| node_name(p) == Some(node.name.as_str()))
        .collect();
    let (cpu, memory) = requests(pod);
    let (used_cpu, used_memory) = on_node.iter().fold((0i64, 0i64), |(c, m), p| {
        let (pc, pm) = requests(p);
        (c + pc, m + pm)
    });
    if cpu > 0 && used_cpu + cpu > node.cpu_milli {
        return Err(Misfit::Cpu);
    }
    if memory > 0 && used_memory + memory > node.memory {
        return Err(Misfit::Memory);
    }
    if on_node.len() as i64 + 1 > node.pods {
        return Err(Misfit::TooManyPods);
    }
    let ports = host_ports(pod);
    if !ports.is_empty()
        && on_node
            .iter()
            .any(|p| host_ports(p).iter().any(|hp| ports.contains(hp)))
    {
        return Err(Misfit::HostPort);
    }
    if anti_affinity_violated(pod, &on_node) {
        return Err(Misfit::AntiAffinity);
    }
    if spread_violated(pod, node, nodes, placed) {
        return Err(Misfit::Spread);
    }
    Ok(())
}

/// A pod whose claim's directory is on another node cannot run here.
fn claim_node_misfit(pod: &Pod, node: &NodeInfo, claims: &Claims) -> Option<Misfit> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for v in pod.spec.as_ref()?.volumes.iter().flatten() {
        if let Some(pvc) = &v.persistent_volume_claim {
            if let Some(holder) = claims.node_of.get(&format!("{ns}/{}", pvc.claim_name)) {
                if holder != &node.name {
                    return Some(Misfit::Claim(pvc.claim_name.clone()));
                }
            }
        }
    }
    None
}

/// Kubernetes' toleration matching (`Exists` or `Equal`, empty key with Exists tolerates all).
pub fn tolerates(tolerations: &[Toleration], key: &str, value: &str, effect: &str) -> bool {
    tolerations.iter().any(|t| {
        let effect_ok = t
            .effect
            .as_deref()
            .is_none_or(|e| e.is_empty() || e == effect);
        let op = t.operator.as_deref().unwrap_or("Equal");
        let key_ok = match t.key.as_deref() {
            None | Some("") => op == "Exists",
            Some(k) => k == key,
        };
        let value_ok = op == "Exists" || t.value.as_deref().unwrap_or("") == value;
        effect_ok && key_ok && value_ok
    })
}

fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs_ok = term
        .match_expressions
        .iter()
        .flatten()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)));
    let fields_ok = term.match_fields.iter().flatten().all(|r| {
        let value = if r.key == "metadata.name" {
            Some(node.name.as_str())
        } else {
            None
        };
        requirement_matches(r, value)
    });
    let empty = term.match_expressions.as_ref().is_none_or(Vec::is_empty)
        && term.match_fields.as_ref().is_none_or(Vec::is_empty);
    !empty && exprs_ok && fields_ok
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values: Vec<&str> = r.values.iter().flatten().map(String::as_str).collect();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// The pod's effective requests: the sum over app containers, or the largest init container's,
/// whichever is larger (Kubernetes' rule).
pub fn requests(pod: &Pod) -> (i64, i64) {
    let Some(spec) = pod.spec.as_ref() else {
        return (0, 0);
    };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref();
        let get = |name: &str| {
            r.and_then(|r| {
                r.requests
                    .as_ref()
                    .and_then(|q| q.get(name))
                    .or_else(|| r.limits.as_ref().and_then(|l| l.get(name)))
            })
            .map(|q| q.0.clone())
        };
        (
            get("cpu")
                .and_then(|q| quantity::cpu_millis(&q).ok().map(clamp))
                .unwrap_or(0),
            get("memory")
                .and_then(|q| quantity::bytes(&q).ok().map(clamp))
                .unwrap_or(0),
        )
    };
    let apps = spec
        .containers
        .iter()
        .map(of)
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(of)
        .fold((0, 0), |(a, b), (c, d)| (a.max(c), b.max(d)));
    (apps.0.max(init.0), apps.1.max(init.1))
}

fn host_ports(pod: &Pod) -> Vec<(i32, String)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            p.host_port
                .filter(|hp| *hp > 0)
                .map(|hp| (hp, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
        })
        .collect()
}

fn labels_match(
    selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    pod: &Pod,
) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    match crate::objects::selector::Selector::from_label_selector(Some(selector)) {
        Ok(s) => s.matches(&labels),
        Err(_) => false,
    }
}

/// Required pod anti-affinity on the hostname topology: no pod on this node may match.
fn anti_affinity_violated(pod: &Pod, on_node: &[&Pod]) -> bool {
    let Some(terms) = pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return false;
    };
    terms
        .iter()
        .filter(|t| t.topology_key == HOSTNAME_LABEL)
        .any(|t| {
            on_node
                .iter()
                .any(|p| labels_match(t.label_selector.as_ref(), p))
        })
}

/// `topologySpreadConstraints` on hostname with `DoNotSchedule`: placing here must not make
/// this node's count exceed the smallest count by more than maxSkew.
fn spread_violated(pod: &Pod, node: &NodeInfo, nodes: &[NodeInfo], placed: &[Pod]) -> bool {
    let Some(constraints) = pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_ref())
    else {
        return false;
    };
    for c in constraints {
        if c.topology_key != HOSTNAME_LABEL || c.when_unsatisfiable != "DoNotSchedule" {
            continue;
        }
        let count_on = |name: &str| {
            placed
                .iter()
                .filter(|p| {
                    node_name(p) == Some(name) && labels_match(c.label_selector.as_ref(), p)
                })
                .count() as i32
        };
        let eligible: Vec<&NodeInfo> = nodes
            .iter()
            .filter(|n| n.ready && !n.unschedulable)
            .collect();
        let min = eligible
            .iter()
            .map(|n| count_on(&n.name))
            .min()
            .unwrap_or(0);
        if count_on(&node.name) + 1 - min > c.max_skew {
            return true;
        }
    }
    false
}

/// Reads which node holds each claim from PersistentVolumeClaim objects (the
/// `volume.kubernetes.io/selected-node` annotation).
pub fn claims_from(pvcs: &[std::sync::Arc<Value>]) -> Claims {
    let mut claims = Claims::default();
    for pvc in pvcs {
        let node = pvc
            .pointer("/metadata/annotations/volume.kubernetes.io~1selected-node")
            .and_then(Value::as_str);
        let ns = pvc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = pvc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(node) = node.filter(|n| !n.is_empty()) {
            claims
                .node_of
                .insert(format!("{ns}/{name}"), node.to_string());
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: Value, extra: Value) -> NodeInfo {
        let mut v = json!({"metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}}});
        crate::api::patch::merge_patch(&mut v, &extra);
        NodeInfo::from_node(&serde_json::from_value(v).unwrap())
    }

    fn pod(name: &str, spec: Value) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "sts-1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "x"}]}});
        crate::api::patch::merge_patch(&mut v, &json!({"spec": spec}));
        serde_json::from_value(v).unwrap()
    }

    fn on(p: Pod, node: &str) -> Pod {
        let mut p = p;
        p.spec.as_mut().unwrap().node_name = Some(node.into());
        p
    }

    #[test]
    fn replicas_of_one_set_spread_across_nodes() {
        let nodes = vec![
            node("a", json!({}), json!({})),
            node("b", json!({}), json!({})),
            node("c", json!({}), json!({})),
        ];
        let placed = vec![
            on(pod("web-0", json!({})), "a"),
            on(pod("web-1", json!({})), "b"),
        ];
        assert_eq!(
            place(
                &pod("web-2", json!({})),
                &nodes,
                &placed,
                &Claims::default()
            )
            .unwrap(),
            "c"
        );
    }

    #[test]
    fn filters_say_why_no_node_fits() {
        let nodes = vec![
            node("a", json!({"disk": "hdd"}), json!({})),
            node(
                "b",
                json!({"disk": "ssd"}),
                json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
            ),
            node(
                "c",
                json!({"disk": "ssd"}),
                json!({"spec": {"unschedulable": true}}),
            ),
        ];
        let p = pod("x", json!({"nodeSelector": {"disk": "ssd"}}));
        let err = place(&p, &nodes, &[], &Claims::default()).unwrap_err();
        assert_eq!(
            err.message,
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) were unschedulable."
        );
        let tolerant = pod(
            "y",
            json!({"nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
        );
        assert_eq!(
            place(&tolerant, &nodes, &[], &Claims::default()).unwrap(),
            "b"
        );
    }

    #[test]
    fn required_node_affinity_and_resources_filter() {
        let nodes = vec![
            node("a", json!({"zone": "1"}), json!({})),
            node("b", json!({"zone": "2"}), json!({})),
        ];
        let affinity = pod(
            "x",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["2"]}]}]}}}}),
        );
        assert_eq!(
            place(&affinity, &nodes, &[], &Claims::default()).unwrap(),
            "b"
        );
        let big = pod(
            "big",
            json!({"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "1500m"}}}]}),
        );
        let placed = vec![on(big.clone(), "a")];
        assert_eq!(
            place(&big, &nodes, &placed, &Claims::default()).unwrap(),
            "b"
        );
        let placed = vec![on(big.clone(), "a"), on(big.clone(), "b")];
        assert_eq!(
            place(&big, &nodes, &placed, &Claims::default())
                .unwrap_err()
                .message,
            "0/2 nodes are available: 2 Insufficient cpu."
        );
    }

    #[test]
    fn a_pod_goes_to_the_node_holding_its_claim() {
        let nodes = vec![
            node("a", json!({}), json!({})),
            node("b", json!({}), json!({})),
        ];
        let p = pod(
            "web-1",
            json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}}]}),
        );
        let mut claims = Claims::default();
        claims
            .node_of
            .insert("default/data-web-1".into(), "b".into());
        assert_eq!(place(&p, &nodes, &[], &claims).unwrap(), "b");
        let only_a = vec![nodes[0].clone()];
        assert!(
            place(&p, &only_a, &[], &claims)
                .unwrap_err()
                .message
                .contains("did not have the local volume of claim \"data-web-1\"")
        );
    }

    #[test]
    fn anti_affinity_on_hostname_keeps_replicas_apart() {
        let anti = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}]}}});
        let nodes = vec![
            node("a", json!({}), json!({})),
            node("b", json!({}), json!({})),
        ];
        let placed = vec![
            on(pod("web-0", anti.clone()), "a"),
            on(pod("web-1", anti.clone()), "b"),
        ];
        assert!(
            place(&pod("web-2", anti), &nodes, &placed, &Claims::default())
                .unwrap_err()
                .message
                .contains("anti-affinity")
        );
    }

    #[test]
    fn a_not_ready_node_gets_no_new_pods() {
        let nodes = vec![node(
            "a",
            json!({}),
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
        )];
        assert!(place(&pod("x", json!({})), &nodes, &[], &Claims::default()).is_err());
    }
}
