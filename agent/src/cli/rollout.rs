//! `rollout status|history|undo|restart` and `set image` for StatefulSets, as kubectl does
//! them: history is the set's ControllerRevisions, undo puts an earlier revision's template
//! back (the controller then reuses that revision), restart stamps the template with
//! `kubectl.kubernetes.io/restartedAt`.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use super::args::{
    RolloutArgs, RolloutCommand, RolloutHistoryArgs, RolloutTarget, RolloutUndoArgs, SetArgs,
    SetCommand,
};
use super::target::{collection_path, kind_label, object_path, parse_one};
use super::{CliError, Ctx, fail, parse_duration};
use crate::controllers::statefulset::revision::template_of_data;
use crate::objects::Kind;

/// The annotation `rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
/// The annotation whose value `rollout history` shows as CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// `berth rollout ...`.
pub async fn rollout(ctx: &Ctx, a: RolloutArgs) -> Result<(), CliError> {
    match a.command {
        RolloutCommand::Status(t) => status(ctx, t).await,
        RolloutCommand::History(h) => history(ctx, h).await,
        RolloutCommand::Undo(u) => undo(ctx, u).await,
        RolloutCommand::Restart(t) => restart(ctx, t).await,
    }
}

/// The StatefulSet an argument list names (`sts/NAME` or `sts NAME`).
fn statefulset(args: &[String]) -> Result<String, CliError> {
    let (kind, name) = parse_one(args)?;
    if kind != Kind::StatefulSet {
        return Err(fail(format!(
            "no rollout support for {}: berth manages rollouts of statefulsets",
            kind_label(kind)
        )));
    }
    Ok(name)
}

fn i64_at(o: &Value, pointer: &str) -> Option<i64> {
    o.pointer(pointer).and_then(Value::as_i64)
}

fn str_at<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// What `rollout status` says about a set, and whether the rollout is done (kubectl's
/// StatefulSetStatusViewer; with partition 0 the revision-based messages, since a partition
/// of 0 updates everything).
pub fn status_message(sts: &Value) -> Result<(String, bool), CliError> {
    let strategy = str_at(sts, "/spec/updateStrategy/type");
    if !strategy.is_empty() && strategy != "RollingUpdate" {
        return Err(fail(format!(
            "rollout status is only available for RollingUpdate strategy type (this set uses {strategy})"
        )));
    }
    let generation = i64_at(sts, "/metadata/generation").unwrap_or(0);
    let observed = i64_at(sts, "/status/observedGeneration").unwrap_or(0);
    if observed == 0 || generation > observed {
        return Ok((
            "Waiting for statefulset spec update to be observed...".into(),
            false,
        ));
    }
    let replicas = i64_at(sts, "/spec/replicas").unwrap_or(1);
    let ready = i64_at(sts, "/status/readyReplicas").unwrap_or(0);
    if ready < replicas {
        return Ok((
            format!("Waiting for {} pods to be ready...", replicas - ready),
            false,
        ));
    }
    let updated = i64_at(sts, "/status/updatedReplicas").unwrap_or(0);
    let partition = i64_at(sts, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
    if partition > 0 {
        let wanted = (replicas - partition).max(0);
        if updated < wanted {
            return Ok((
                format!(
                    "Waiting for partitioned roll out to finish: {updated} out of {wanted} new pods have been updated..."
                ),
                false,
            ));
        }
        return Ok((
            format!("partitioned roll out complete: {updated} new pods have been updated..."),
            true,
        ));
    }
    let update_revision = str_at(sts, "/status/updateRevision");
    let current_revision = str_at(sts, "/status/currentRevision");
    if update_revision != current_revision || updated < replicas {
        return Ok((
            format!(
                "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
            ),
            false,
        ));
    }
    let current = i64_at(sts, "/status/currentReplicas").unwrap_or(0);
    Ok((
        format!(
            "statefulset rolling update complete {current} pods at revision {current_revision}..."
        ),
        true,
    ))
}

async fn status(ctx: &Ctx, t: RolloutTarget) -> Result<(), CliError> {
    let namespace = ctx.namespace(&t.ns);
    let name = statefulset(&t.args)?;
    let path = object_path(Kind::StatefulSet, &namespace, &name);
    let timeout = parse_duration(&t.timeout)?;
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let mut last = String::new();
    loop {
        let sts = ctx.client.get(&path).await?;
        let (message, done) = status_message(&sts)?;
        if message != last {
            println!("{message}");
            last = message;
        }
        if done || !t.watch {
            return Ok(());
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(fail("timed out waiting for the condition"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The set's revisions, oldest first.
async fn revisions_of(ctx: &Ctx, namespace: &str, sts: &Value) -> Result<Vec<Value>, CliError> {
    let uid = str_at(sts, "/metadata/uid");
    let list = ctx
        .client
        .get(&collection_path(Kind::ControllerRevision, Some(namespace)))
        .await?;
    let mut revisions: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|o| o["uid"] == uid && o["controller"] == true)
                })
        })
        .cloned()
        .collect();
    revisions.sort_by_key(|r| i64_at(r, "/revision").unwrap_or(0));
    Ok(revisions)
}

/// `rollout history` without `--revision`: the REVISION / CHANGE-CAUSE table.
pub fn history_table(label: &str, revisions: &[Value]) -> String {
    let mut out = format!("{label}\nREVISION  CHANGE-CAUSE\n");
    for r in revisions {
        let cause = r
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CHANGE_CAUSE))
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        out.push_str(&format!(
            "{:<10}{cause}\n",
            i64_at(r, "/revision").unwrap_or(0)
        ));
    }
    out
}

async fn history(ctx: &Ctx, h: RolloutHistoryArgs) -> Result<(), CliError> {
    let namespace = ctx.namespace(&h.ns);
    let name = statefulset(&h.args)?;
    let sts = ctx
        .client
        .get(&object_path(Kind::StatefulSet, &namespace, &name))
        .await?;
    let revisions = revisions_of(ctx, &namespace, &sts).await?;
    let label = format!("{}/{name}", kind_label(Kind::StatefulSet));
    match h.revision {
        None | Some(0) => {
            if revisions.is_empty() {
                println!("No rollout history found.");
            } else {
                print!("{}", history_table(&label, &revisions));
            }
        }
        Some(n) => {
            let revision = revisions
                .iter()
                .find(|r| i64_at(r, "/revision") == Some(n))
                .ok_or_else(|| {
                    fail(format!(
                        "unable to find the specified revision {n} in the history of {label}"
                    ))
                })?;
            let template = revision
                .get("data")
                .and_then(template_of_data)
                .unwrap_or(Value::Null);
            println!("{label} with revision #{n}");
            println!("Revision name: {}", str_at(revision, "/metadata/name"));
            println!("Pod Template:");
            for line in super::yaml_out::to_yaml(&template).lines() {
                println!("  {line}");
            }
        }
    }
    Ok(())
}

/// The revision `undo` goes back to: `--to-revision N`, or else the newest revision older
/// than the set's current template.
pub fn undo_target<'a>(
    revisions: &'a [Value],
    to_revision: Option<i64>,
    label: &str,
) -> Result<&'a Value, CliError> {
    match to_revision.filter(|n| *n != 0) {
        Some(n) => revisions
            .iter()
            .find(|r| i64_at(r, "/revision") == Some(n))
            .ok_or_else(|| fail(format!("unable to find specified revision {n} in history"))),
        None => {
            if revisions.len() < 2 {
                return Err(fail(format!(
                    "no rollout history found for {label}: there is no earlier revision to go back to"
                )));
            }
            Ok(&revisions[revisions.len() - 2])
        }
    }
}

async fn undo(ctx: &Ctx, u: RolloutUndoArgs) -> Result<(), CliError> {
    let namespace = ctx.namespace(&u.ns);
    let name = statefulset(&u.args)?;
    let path = object_path(Kind::StatefulSet, &namespace, &name);
    let label = format!("{}/{name}", kind_label(Kind::StatefulSet));
    let sts = ctx.client.get(&path).await?;
    let revisions = revisions_of(ctx, &namespace, &sts).await?;
    let target = undo_target(&revisions, u.to_revision, &label)?;
    let number = i64_at(target, "/revision").unwrap_or(0);
    let template = target
        .get("data")
        .and_then(template_of_data)
        .ok_or_else(|| {
            fail(format!(
                "revision {number} of {label} holds no pod template"
            ))
        })?;
    if sts.pointer("/spec/template") == Some(&template) {
        println!("{label} skipped rollback (current template already matches revision {number})");
        return Ok(());
    }
    let mut updated = sts.clone();
    updated["spec"]["template"] = template;
    if let Some(status) = updated.as_object_mut() {
        status.remove("status");
    }
    ctx.client
        .json(Method::PUT, &path, Some("application/json"), Some(&updated))
        .await?;
    println!("{label} rolled back");
    Ok(())
}

async fn restart(ctx: &Ctx, t: RolloutTarget) -> Result<(), CliError> {
    let namespace = ctx.namespace(&t.ns);
    let name = statefulset(&t.args)?;
    let path = object_path(Kind::StatefulSet, &namespace, &name);
    let sts = ctx.client.get(&path).await?;
    let strategy = str_at(&sts, "/spec/updateStrategy/type");
    if strategy == "OnDelete" {
        return Err(fail(
            "restarting is not supported by strategy type OnDelete: delete the pods to restart them",
        ));
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}});
    ctx.client
        .json(
            Method::PATCH,
            &path,
            Some("application/merge-patch+json"),
            Some(&patch),
        )
        .await?;
    println!("{}/{name} restarted", kind_label(Kind::StatefulSet));
    Ok(())
}

/// Applies `CONTAINER=IMAGE` pairs (`*` for every container) to a pod template; returns the
/// names it could not find.
pub fn set_images(template: &mut Value, pairs: &[(String, String)]) -> Vec<String> {
    let mut missing = Vec::new();
    for (container, image) in pairs {
        let mut found = false;
        for list in ["containers", "initContainers"] {
            for c in template
                .pointer_mut(&format!("/spec/{list}"))
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if container == "*"
                    || c.get("name").and_then(Value::as_str) == Some(container.as_str())
                {
                    c["image"] = json!(image);
                    found = true;
                }
            }
        }
        if !found {
            missing.push(container.clone());
        }
    }
    missing
}

/// `berth set image sts/NAME CONTAINER=IMAGE...`.
pub async fn set(ctx: &Ctx, a: SetArgs) -> Result<(), CliError> {
    let SetCommand::Image(a) = a.command;
    let namespace = ctx.namespace(&a.ns);
    let (targets, pairs): (Vec<String>, Vec<String>) =
        a.args.iter().cloned().partition(|arg| !arg.contains('='));
    if pairs.is_empty() {
        return Err(fail(
            "at least one image update is required: CONTAINER=IMAGE",
        ));
    }
    let mut parsed = Vec::new();
    for pair in &pairs {
        match pair.split_once('=') {
            Some((c, i)) if !c.is_empty() && !i.is_empty() => {
                parsed.push((c.to_string(), i.to_string()))
            }
            _ => {
                return Err(fail(format!(
                    "invalid image update {pair:?}: use CONTAINER=IMAGE"
                )));
            }
        }
    }
    let (kind, name) = parse_one(&targets)?;
    if kind != Kind::StatefulSet {
        return Err(fail(format!(
            "set image: berth updates images of statefulsets, not {}",
            kind_label(kind)
        )));
    }
    let path = object_path(kind, &namespace, &name);
    let mut sts = ctx.client.get(&path).await?;
    let before = sts.pointer("/spec/template").cloned();
    let missing = set_images(
        sts.pointer_mut("/spec/template")
            .unwrap_or(&mut Value::Null),
        &parsed,
    );
    if let Some(container) = missing.first() {
        return Err(fail(format!(
            "unable to find container named {container:?} in {}/{name}",
            kind_label(kind)
        )));
    }
    if sts.pointer("/spec/template").cloned() == before {
        println!("{}/{name} image unchanged", kind_label(kind));
        return Ok(());
    }
    if let Some(object) = sts.as_object_mut() {
        object.remove("status");
    }
    ctx.client
        .json(Method::PUT, &path, Some("application/json"), Some(&sts))
        .await?;
    println!("{}/{name} image updated", kind_label(kind));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(status: Value, spec: Value) -> Value {
        let mut s = json!({"metadata": {"generation": 2}, "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}}});
        crate::api::patch::merge_patch(&mut s, &json!({"status": status, "spec": spec}));
        s
    }

    #[test]
    fn rollout_status_follows_kubectl_messages() {
        let msg = |s: Value| status_message(&s).unwrap();
        assert_eq!(
            msg(sts(json!({"observedGeneration": 1}), json!({}))).0,
            "Waiting for statefulset spec update to be observed..."
        );
        assert_eq!(
            msg(sts(
                json!({"observedGeneration": 2, "readyReplicas": 1}),
                json!({})
            )),
            ("Waiting for 2 pods to be ready...".into(), false)
        );
        let rolling = json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1, "currentRevision": "web-a", "updateRevision": "web-b"});
        assert_eq!(
            msg(sts(rolling, json!({}))),
            (
                "waiting for statefulset rolling update to complete 1 pods at revision web-b..."
                    .into(),
                false
            )
        );
        let done = json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3, "currentReplicas": 3, "currentRevision": "web-b", "updateRevision": "web-b"});
        assert_eq!(
            msg(sts(done, json!({}))),
            (
                "statefulset rolling update complete 3 pods at revision web-b...".into(),
                true
            )
        );
        let partitioned =
            json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1});
        assert_eq!(
            msg(sts(partitioned, json!({"updateStrategy": {"rollingUpdate": {"partition": 1}}}))),
            ("Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...".into(), false)
        );
        let on_delete = sts(
            json!({}),
            json!({"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}),
        );
        assert!(status_message(&on_delete).is_err());
    }

    fn revision(n: i64, cause: Option<&str>) -> Value {
        let mut r = json!({"metadata": {"name": format!("web-{n}")}, "revision": n});
        if let Some(c) = cause {
            r["metadata"]["annotations"] = json!({CHANGE_CAUSE: c});
        }
        r
    }

    #[test]
    fn history_lists_revisions_with_their_change_cause() {
        let table = history_table(
            "statefulset.apps/web",
            &[revision(1, None), revision(2, Some("new image"))],
        );
        assert_eq!(
            table,
            "statefulset.apps/web\nREVISION  CHANGE-CAUSE\n1         <none>\n2         new image\n"
        );
    }

    #[test]
    fn undo_goes_to_the_previous_revision_or_the_one_asked_for() {
        let revisions = vec![revision(1, None), revision(3, None), revision(4, None)];
        assert_eq!(undo_target(&revisions, None, "x").unwrap()["revision"], 3);
        assert_eq!(
            undo_target(&revisions, Some(1), "x").unwrap()["revision"],
            1
        );
        assert!(undo_target(&revisions, Some(2), "x").is_err());
        assert!(undo_target(&revisions[..1], None, "x").is_err());
    }

    #[test]
    fn set_image_changes_named_containers_and_reports_unknown_ones() {
        let mut template = json!({"spec": {"containers": [{"name": "web", "image": "a"}, {"name": "side", "image": "b"}],
                                           "initContainers": [{"name": "init", "image": "c"}]}});
        let missing = set_images(
            &mut template,
            &[("web".into(), "a:2".into()), ("nope".into(), "x".into())],
        );
        assert_eq!(missing, vec!["nope".to_string()]);
        assert_eq!(template["spec"]["containers"][0]["image"], "a:2");
        assert_eq!(template["spec"]["containers"][1]["image"], "b");
        set_images(&mut template, &[("*".into(), "z".into())]);
        assert_eq!(template["spec"]["initContainers"][0]["image"], "z");
    }
}
