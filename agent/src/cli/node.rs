//! Node commands, as kubectl has them: `label`, `cordon`, `uncordon`, `drain`; and berth's
//! `node forget`, which gives up a lost node for good.
//!
//! `drain` cordons the node, then deletes its pods: DaemonSet pods are skipped (they are meant
//! to run on every node and ignore cordoning), pods no controller re-creates and pods with
//! emptyDir data are refused unless `--force` / `--delete-emptydir-data` say so (kubectl's
//! rules, checked before anything is deleted); other pods go at once, then each StatefulSet's
//! pods one at a time, highest ordinal first, each gone before the next, so a set shrinks on
//! this node in the order it would scale down.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use super::args::{CordonArgs, DrainArgs, LabelArgs, NodeArgs, NodeCommand};
use super::target::{encode, kind_label, object_path, parse_one};
use super::{CliError, Ctx, fail, parse_duration};
use crate::controllers::statefulset::identity::ordinal_of;
use crate::objects::Kind;

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn node_path(name: &str) -> String {
    object_path(Kind::Node, "", name)
}

/// The node, or a clear error naming it.
async fn get_node(ctx: &Ctx, name: &str) -> Result<Value, CliError> {
    match ctx.client.get(&node_path(name)).await {
        Ok(node) => Ok(node),
        Err(e) if e.is_not_found() => Err(fail(format!("nodes \"{name}\" not found"))),
        Err(e) => Err(e.into()),
    }
}

/// One `KEY=VALUE` or `KEY-` argument of `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelChange {
    Set(String, String),
    Remove(String),
}

/// Parses `label`'s changes (`k=v`, `k-`), refusing anything else and a key given twice.
pub fn parse_label_changes(args: &[String]) -> Result<Vec<LabelChange>, CliError> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for arg in args {
        let change = if let Some((k, v)) = arg.split_once('=') {
            LabelChange::Set(k.to_string(), v.to_string())
        } else if let Some(k) = arg.strip_suffix('-') {
            LabelChange::Remove(k.to_string())
        } else {
            return Err(fail(format!(
                "invalid label spec: {arg:?} (expected KEY=VALUE to set or KEY- to remove)"
            )));
        };
        let key = match &change {
            LabelChange::Set(k, _) | LabelChange::Remove(k) => k.clone(),
        };
        if key.is_empty() {
            return Err(fail(format!(
                "invalid label spec: {arg:?}: the key is empty"
            )));
        }
        if seen.insert(key.clone(), ()).is_some() {
            return Err(fail(format!(
                "can not both modify and remove a label in the same command: {key}"
            )));
        }
        out.push(change);
    }
    if out.is_empty() {
        return Err(fail("at least one label update is required"));
    }
    Ok(out)
}

/// The merge patch for `changes` on an object whose labels are `current`: refuses to change
/// an existing value without `overwrite`, as kubectl does. `None` when nothing changes.
pub fn label_patch(
    current: &BTreeMap<String, String>,
    changes: &[LabelChange],
    overwrite: bool,
) -> Result<Option<Value>, CliError> {
    let mut labels = serde_json::Map::new();
    for change in changes {
        match change {
            LabelChange::Set(k, v) => {
                match current.get(k) {
                    Some(old) if old == v => continue,
                    Some(old) if !overwrite => {
                        return Err(fail(format!(
                            "'{k}' already has a value ({old}), and --overwrite is false"
                        )));
                    }
                    _ => {}
                }
                labels.insert(k.clone(), json!(v));
            }
            LabelChange::Remove(k) => {
                if current.contains_key(k) {
                    labels.insert(k.clone(), Value::Null);
                }
            }
        }
    }
    Ok((!labels.is_empty()).then(|| json!({"metadata": {"labels": labels}})))
}

/// `berth label KIND NAME k=v k2- [--overwrite]`.
pub async fn label(ctx: &Ctx, a: LabelArgs) -> Result<(), CliError> {
    // KIND NAME changes... or KIND/NAME changes...
    let split = if a.args.first().is_some_and(|s| s.contains('/')) {
        1
    } else {
        2
    };
    if a.args.len() < split + 1 {
        return Err(fail(
            "usage: berth label KIND NAME KEY=VALUE... [KEY-...] [--overwrite]",
        ));
    }
    let (kind, name) = parse_one(&a.args[..split])?;
    let changes = parse_label_changes(&a.args[split..])?;
    let namespace = ctx.namespace(&a.ns);
    let path = object_path(kind, &namespace, &name);
    let object = match ctx.client.get(&path).await {
        Ok(o) => o,
        Err(e) if e.is_not_found() => {
            return Err(fail(format!("{} \"{name}\" not found", kind.info().plural)));
        }
        Err(e) => return Err(e.into()),
    };
    let current: BTreeMap<String, String> = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let label = kind_label(kind);
    match label_patch(&current, &changes, a.overwrite)? {
        None => println!("{label}/{name} not labeled"),
        Some(patch) => {
            // The resourceVersion makes a concurrent change fail instead of being overwritten.
            let mut patch = patch;
            patch["metadata"]["resourceVersion"] = object
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            ctx.client
                .json(
                    Method::PATCH,
                    &path,
                    Some("application/merge-patch+json"),
                    Some(&patch),
                )
                .await?;
            println!("{label}/{name} labeled");
        }
    }
    Ok(())
}

async fn set_unschedulable(ctx: &Ctx, name: &str, unschedulable: bool) -> Result<bool, CliError> {
    let node = get_node(ctx, name).await?;
    let now = node
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if now == unschedulable {
        return Ok(false);
    }
    let patch =
        json!({"spec": {"unschedulable": if unschedulable { json!(true) } else { Value::Null }}});
    ctx.client
        .json(
            Method::PATCH,
            &node_path(name),
            Some("application/merge-patch+json"),
            Some(&patch),
        )
        .await?;
    Ok(true)
}

/// `berth cordon NAME`.
pub async fn cordon(ctx: &Ctx, a: CordonArgs) -> Result<(), CliError> {
    let changed = set_unschedulable(ctx, &a.node, true).await?;
    println!(
        "node/{} {}cordoned",
        a.node,
        if changed { "" } else { "already " }
    );
    Ok(())
}

/// `berth uncordon NAME`.
pub async fn uncordon(ctx: &Ctx, a: CordonArgs) -> Result<(), CliError> {
    let changed = set_unschedulable(ctx, &a.node, false).await?;
    println!(
        "node/{} {}uncordoned",
        a.node,
        if changed { "" } else { "already " }
    );
    Ok(())
}

/// How drain treats a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainClass {
    /// Left alone (a DaemonSet's pod, or one already finished or being deleted by someone).
    Skip,
    /// Deleted in the first wave, all at once.
    Evict,
    /// A StatefulSet's pod: deleted one at a time, highest ordinal first.
    Ordered { set: String, ordinal: i32 },
}

/// Why drain refuses to go on without a flag (kubectl's words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrainBlock {
    DaemonSet,
    NoController,
    EmptyDir,
}

/// Classifies `pod` for drain under the flags given.
pub fn classify(
    pod: &Value,
    ignore_daemonsets: bool,
    force: bool,
    delete_emptydir_data: bool,
) -> Result<DrainClass, DrainBlock> {
    let finished = matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed");
    let owner = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
        .map(|r| {
            (
                str_at(r, "/kind").to_string(),
                str_at(r, "/name").to_string(),
            )
        });
    if let Some((kind, _)) = &owner {
        if kind == "DaemonSet" {
            return if ignore_daemonsets {
                Ok(DrainClass::Skip)
            } else {
                Err(DrainBlock::DaemonSet)
            };
        }
    }
    if finished {
        return Ok(DrainClass::Evict);
    }
    if owner.is_none() && !force {
        return Err(DrainBlock::NoController);
    }
    let empty_dir = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|vs| vs.iter().any(|v| v.get("emptyDir").is_some()));
    if empty_dir && !delete_emptydir_data {
        return Err(DrainBlock::EmptyDir);
    }
    match owner {
        Some((kind, set)) if kind == "StatefulSet" => {
            match ordinal_of(&set, str_at(pod, "/metadata/name")) {
                Some(ordinal) => Ok(DrainClass::Ordered { set, ordinal }),
                None => Ok(DrainClass::Evict),
            }
        }
        _ => Ok(DrainClass::Evict),
    }
}

/// The order drain deletes in: the first wave, then each set's pods highest ordinal first.
pub fn drain_order(pods: &[(String, DrainClass)]) -> (Vec<String>, Vec<Vec<String>>) {
    let first = pods
        .iter()
        .filter(|(_, c)| *c == DrainClass::Evict)
        .map(|(k, _)| k.clone())
        .collect();
    let mut sets: BTreeMap<&str, Vec<(i32, String)>> = BTreeMap::new();
    for (key, class) in pods {
        if let DrainClass::Ordered { set, ordinal } = class {
            sets.entry(set.as_str())
                .or_default()
                .push((*ordinal, key.clone()));
        }
    }
    let ordered = sets
        .into_values()
        .map(|mut pods| {
            pods.sort_by(|a, b| b.0.cmp(&a.0));
            pods.into_iter().map(|(_, k)| k).collect()
        })
        .collect();
    (first, ordered)
}

async fn pods_on(ctx: &Ctx, node: &str) -> Result<Vec<Value>, CliError> {
    let path = format!(
        "/api/v1/pods?fieldSelector={}",
        encode(&format!("spec.nodeName={node}"))
    );
    let list = ctx.client.get(&path).await?;
    Ok(list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// Deletes a pod (`ns/name` with its uid) and waits until that pod (that uid) is gone; a
/// controller may already have made a new pod of the same name elsewhere.
async fn evict(ctx: &Ctx, pod: &Value, grace: Option<i64>) -> Result<(), CliError> {
    let ns = str_at(pod, "/metadata/namespace");
    let name = str_at(pod, "/metadata/name");
    let uid = str_at(pod, "/metadata/uid");
    let path = object_path(Kind::Pod, ns, name);
    let mut options =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": uid}});
    if let Some(g) = grace {
        options["gracePeriodSeconds"] = json!(g);
    }
    println!("evicting pod {ns}/{name}");
    match ctx
        .client
        .json(
            Method::DELETE,
            &path,
            Some("application/json"),
            Some(&options),
        )
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() || e.reason() == Some("Conflict") => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn wait_evicted(
    ctx: &Ctx,
    pod: &Value,
    deadline: Option<tokio::time::Instant>,
) -> Result<(), CliError> {
    let ns = str_at(pod, "/metadata/namespace");
    let name = str_at(pod, "/metadata/name");
    let uid = str_at(pod, "/metadata/uid");
    let path = object_path(Kind::Pod, ns, name);
    loop {
        match ctx.client.get(&path).await {
            Err(e) if e.is_not_found() => break,
            Err(e) => return Err(e.into()),
            Ok(now) if str_at(&now, "/metadata/uid") != uid => break,
            Ok(_) => {}
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(fail(format!(
                "drain did not complete within the timeout: pod {ns}/{name} is still terminating"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("pod/{name} evicted");
    Ok(())
}

/// `berth drain NAME`.
pub async fn drain(ctx: &Ctx, a: DrainArgs) -> Result<(), CliError> {
    let deadline = match a.timeout.as_deref() {
        None | Some("0") | Some("0s") => None,
        Some(t) => Some(
            tokio::time::Instant::now()
                + parse_duration(t).map_err(|e| fail(format!("invalid --timeout {t:?}: {e}")))?,
        ),
    };
    let changed = set_unschedulable(ctx, &a.node, true).await?;
    println!(
        "node/{} {}cordoned",
        a.node,
        if changed { "" } else { "already " }
    );

    let pods = pods_on(ctx, &a.node).await?;
    let mut blocked: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut classes = Vec::new();
    let mut by_key = BTreeMap::new();
    for pod in &pods {
        if pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null())
        {
            continue;
        }
        let key = format!(
            "{}/{}",
            str_at(pod, "/metadata/namespace"),
            str_at(pod, "/metadata/name")
        );
        match classify(pod, a.ignore_daemonsets, a.force, a.delete_emptydir_data) {
            Ok(DrainClass::Skip) => {}
            Ok(class) => {
                classes.push((key.clone(), class));
                by_key.insert(key, pod);
            }
            Err(block) => {
                let text = match block {
                    DrainBlock::DaemonSet => {
                        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
                    }
                    DrainBlock::NoController => {
                        "cannot delete Pods that declare no controller (use --force to override)"
                    }
                    DrainBlock::EmptyDir => {
                        "cannot delete Pods with local storage (use --delete-emptydir-data to override)"
                    }
                };
                blocked.entry(text).or_default().push(key);
            }
        }
    }
    if !blocked.is_empty() {
        let parts: Vec<String> = blocked
            .iter()
            .map(|(text, pods)| format!("{text}: {}", pods.join(", ")))
            .collect();
        return Err(fail(format!(
            "unable to drain node {:?} due to error: {}; the node stays cordoned",
            a.node,
            parts.join("; ")
        )));
    }
    let ignored: Vec<String> = pods
        .iter()
        .filter(|p| matches!(classify(p, true, true, true), Ok(DrainClass::Skip)))
        .map(|p| {
            format!(
                "{}/{}",
                str_at(p, "/metadata/namespace"),
                str_at(p, "/metadata/name")
            )
        })
        .collect();
    if !ignored.is_empty() {
        eprintln!(
            "Warning: ignoring DaemonSet-managed Pods: {}",
            ignored.join(", ")
        );
    }
    let grace = (a.grace_period >= 0).then_some(a.grace_period);
    let (first, ordered) = drain_order(&classes);
    for key in &first {
        evict(ctx, by_key[key], grace).await?;
    }
    for key in &first {
        wait_evicted(ctx, by_key[key], deadline).await?;
    }
    for set in ordered {
        for key in set {
            evict(ctx, by_key[&key], grace).await?;
            wait_evicted(ctx, by_key[&key], deadline).await?;
        }
    }
    println!("node/{} drained", a.node);
    Ok(())
}

/// The role (`leader`, `voter`, `learner`) of the raft member named `name` in an answer of
/// `GET /apis/cluster.berth.io/v1/members`, or `None` when it is not a member.
pub fn member_role<'a>(members: &'a Value, name: &str) -> Option<&'a str> {
    members
        .get("members")
        .and_then(Value::as_array)?
        .iter()
        .find(|m| m["name"] == name)
        .map(|m| m["role"].as_str().unwrap_or(""))
}

/// How long `node forget` waits for the host to leave the raft group.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(30);

/// `berth node forget NAME`: removes a lost node for good. Its Node object is deleted, claims
/// whose directory was on it are released (their data stays on that host's disk; the next pod
/// gets a new, empty directory on another node), and its pods are removed at once so their
/// controllers re-create them elsewhere. The leader then removes the host from the raft group
/// (it no longer counts toward quorum; a learner takes its voting seat when the count calls
/// for one), and this waits until the agent asked no longer lists it. Refused for a node
/// that is Ready (unless `force`) and for the host that leads the cluster.
pub async fn forget(ctx: &Ctx, name: &str, force: bool) -> Result<(), CliError> {
    let node = get_node(ctx, name).await?;
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    if ready && !force {
        return Err(fail(format!(
            "node {name:?} is Ready: its agent still runs. Stop berth on that host first (or drain it), or pass --force (the host then leaves the cluster: its writes are refused and it must join again with a token)"
        )));
    }
    let members = ctx.client.get(MEMBERS_PATH).await?;
    if member_role(&members, name) == Some("leader") {
        return Err(fail(format!(
            "node {name:?} leads the cluster: stop berth on that host first (another host takes over within seconds), then forget it"
        )));
    }
    let was_member = member_role(&members, name).is_some();
    ctx.client
        .json(
            Method::DELETE,
            &node_path(name),
            Some("application/json"),
            None,
        )
        .await?;
    println!("node/{name} deleted");
    let claims = ctx.client.get("/api/v1/persistentvolumeclaims").await?;
    for claim in claims
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pinned = claim
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(crate::controllers::scheduler::SELECTED_NODE))
            .and_then(Value::as_str)
            == Some(name);
        if !pinned {
            continue;
        }
        let ns = str_at(claim, "/metadata/namespace");
        let claim_name = str_at(claim, "/metadata/name");
        let path = object_path(Kind::PersistentVolumeClaim, ns, claim_name);
        let patch = json!({"metadata": {
        "annotations": {crate::controllers::scheduler::SELECTED_NODE: null, crate::claims::DIRECTORY: null,
                        crate::claims::USED_BYTES: null, crate::claims::USED_AT: null, crate::claims::QUOTA: null},
        "finalizers": claim.pointer("/metadata/finalizers").and_then(Value::as_array).map(|f| {
            f.iter().filter(|x| *x != crate::claims::FINALIZER).cloned().collect::<Vec<_>>()
        })}});
        ctx.client
            .json(
                Method::PATCH,
                &path,
                Some("application/merge-patch+json"),
                Some(&patch),
            )
            .await?;
        let status = json!({"status": {"phase": "Pending", "capacity": null}});
        ctx.client
            .json(
                Method::PATCH,
                &format!("{path}/status"),
                Some("application/merge-patch+json"),
                Some(&status),
            )
            .await?;
        println!("persistentvolumeclaim/{claim_name} released (its data stays on {name}'s disk)");
    }
    for pod in pods_on(ctx, name).await? {
        let ns = str_at(&pod, "/metadata/namespace");
        let pod_name = str_at(&pod, "/metadata/name");
        let options = json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
            "preconditions": {"uid": str_at(&pod, "/metadata/uid")}});
        match ctx
            .client
            .json(
                Method::DELETE,
                &object_path(Kind::Pod, ns, pod_name),
                Some("application/json"),
                Some(&options),
            )
            .await
        {
            Ok(_) => println!("pod/{pod_name} deleted"),
            Err(e) if e.is_not_found() || e.reason() == Some("Conflict") => {}
            Err(e) => return Err(e.into()),
        }
    }
    if was_member {
        wait_left(ctx, name).await?;
    }
    Ok(())
}

const MEMBERS_PATH: &str = "/apis/cluster.berth.io/v1/members";

/// Waits until the agent asked no longer lists `name` as a raft member.
async fn wait_left(ctx: &Ctx, name: &str) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + LEAVE_TIMEOUT;
    loop {
        let members = ctx.client.get(MEMBERS_PATH).await?;
        if member_role(&members, name).is_none() {
            println!("member/{name} removed from the raft group");
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(fail(format!(
                "node {name:?} is deleted but still a raft member after {}s: the leader removes it once it can commit a membership change (is a majority of hosts up? see `berth members` and the leader's log)",
                LEAVE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `berth node ...`.
pub async fn node(ctx: &Ctx, a: NodeArgs) -> Result<(), CliError> {
    match a.command {
        NodeCommand::Forget { name, force } => forget(ctx, &name, force).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_member_is_found_by_name_with_its_role() {
        let members = json!({"leader": "1", "members": [
            {"id": "1", "name": "h1", "role": "leader"},
            {"id": "2", "name": "h2", "role": "learner"},
        ]});
        let table = [
            ("h1", Some("leader")),
            ("h2", Some("learner")),
            ("h3", None),
        ];
        for (name, want) in table {
            assert_eq!(member_role(&members, name), want, "{name}");
        }
        assert_eq!(
            member_role(&json!({}), "h1"),
            None,
            "an answer without members"
        );
    }

    #[test]
    fn label_changes_parse_and_patch_like_kubectl() {
        let changes = parse_label_changes(&args(&["disk=ssd", "zone-"])).unwrap();
        assert_eq!(
            changes,
            vec![
                LabelChange::Set("disk".into(), "ssd".into()),
                LabelChange::Remove("zone".into())
            ]
        );
        let current = labels(&[("zone", "a"), ("disk", "hdd")]);
        let err = label_patch(&current, &changes, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "'disk' already has a value (hdd), and --overwrite is false"
        );
        let patch = label_patch(&current, &changes, true).unwrap().unwrap();
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {"disk": "ssd", "zone": null}}})
        );
        assert_eq!(
            label_patch(&labels(&[("disk", "ssd")]), &changes, false).unwrap(),
            None,
            "nothing to change"
        );
        assert!(
            parse_label_changes(&args(&["disk"]))
                .unwrap_err()
                .to_string()
                .contains("invalid label spec")
        );
        assert!(parse_label_changes(&args(&["a=1", "a-"])).is_err());
        assert!(parse_label_changes(&args(&["=1"])).is_err());
        assert!(parse_label_changes(&[]).is_err());
    }

    fn pod(name: &str, owner: Option<(&str, &str)>, extra: Value) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}")}, "spec": {}, "status": {"phase": "Running"}});
        if let Some((kind, set)) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": kind, "name": set, "controller": true}]);
        }
        crate::api::patch::merge_patch(&mut p, &extra);
        p
    }

    #[test]
    fn drain_skips_daemon_pods_refuses_unmanaged_ones_and_orders_statefulset_pods() {
        let ds = pod("agent-x", Some(("DaemonSet", "agent")), json!({}));
        assert_eq!(
            classify(&ds, false, false, false),
            Err(DrainBlock::DaemonSet)
        );
        assert_eq!(classify(&ds, true, false, false), Ok(DrainClass::Skip));
        let bare = pod("bare", None, json!({}));
        assert_eq!(
            classify(&bare, true, false, false),
            Err(DrainBlock::NoController)
        );
        assert_eq!(classify(&bare, true, true, false), Ok(DrainClass::Evict));
        let scratch = pod(
            "job-x",
            Some(("Job", "j")),
            json!({"spec": {"volumes": [{"name": "t", "emptyDir": {}}]}}),
        );
        assert_eq!(
            classify(&scratch, true, false, false),
            Err(DrainBlock::EmptyDir)
        );
        assert_eq!(classify(&scratch, true, false, true), Ok(DrainClass::Evict));
        let finished_bare = pod("done", None, json!({"status": {"phase": "Succeeded"}}));
        assert_eq!(
            classify(&finished_bare, true, false, false),
            Ok(DrainClass::Evict)
        );

        let classes: Vec<(String, DrainClass)> = ["web-0", "web-2", "db-0", "web-1", "db-1"]
            .iter()
            .map(|n| {
                let set = n.split('-').next().unwrap();
                let p = pod(n, Some(("StatefulSet", set)), json!({}));
                (
                    format!("default/{n}"),
                    classify(&p, true, false, false).unwrap(),
                )
            })
            .chain([("default/job-x".to_string(), DrainClass::Evict)])
            .collect();
        let (first, ordered) = drain_order(&classes);
        assert_eq!(first, vec!["default/job-x".to_string()]);
        assert_eq!(
            ordered,
            vec![
                vec!["default/db-1".to_string(), "default/db-0".to_string()],
                vec![
                    "default/web-2".to_string(),
                    "default/web-1".to_string(),
                    "default/web-0".to_string()
                ],
            ]
        );
    }
}
