//! `rollout status` and `rollout restart` for DaemonSets, with kubectl's words
//! (DaemonSetStatusViewer). Other rollout commands and other kinds are in `rollout`.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use super::args::{RolloutArgs, RolloutCommand, RolloutTarget};
use super::target::{kind_label, object_path, parse_one};
use super::{CliError, Ctx, fail, parse_duration};
use crate::objects::Kind;

/// Whether `rollout` names a DaemonSet in a command this module handles.
pub fn handles(a: &RolloutArgs) -> bool {
    let target = match &a.command {
        RolloutCommand::Status(t) | RolloutCommand::Restart(t) => t,
        _ => return false,
    };
    matches!(parse_one(&target.args), Ok((Kind::DaemonSet, _)))
}

/// `berth rollout status|restart ds/NAME`.
pub async fn rollout(ctx: &Ctx, a: RolloutArgs) -> Result<(), CliError> {
    match a.command {
        RolloutCommand::Status(t) => status(ctx, t).await,
        RolloutCommand::Restart(t) => restart(ctx, t).await,
        _ => Err(fail(
            "berth keeps no rollout history for daemonsets: re-apply the manifest to go back",
        )),
    }
}

fn i64_at(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// What `rollout status` says about a DaemonSet, and whether the rollout is done.
pub fn status_message(ds: &Value) -> Result<(String, bool), CliError> {
    let name = ds
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let strategy = ds
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !strategy.is_empty() && strategy != "RollingUpdate" {
        return Err(fail(format!(
            "rollout status is only available for RollingUpdate strategy type (this daemon set uses {strategy})"
        )));
    }
    let generation = i64_at(ds, "/metadata/generation");
    let observed = i64_at(ds, "/status/observedGeneration");
    if observed == 0 || generation > observed {
        return Ok((
            "Waiting for daemon set spec update to be observed...".into(),
            false,
        ));
    }
    let desired = i64_at(ds, "/status/desiredNumberScheduled");
    let updated = i64_at(ds, "/status/updatedNumberScheduled");
    if updated < desired {
        return Ok((
            format!(
                "Waiting for daemon set {name:?} rollout to finish: {updated} out of {desired} new pods have been updated..."
            ),
            false,
        ));
    }
    let available = i64_at(ds, "/status/numberAvailable");
    if available < desired {
        return Ok((
            format!(
                "Waiting for daemon set {name:?} rollout to finish: {available} of {desired} updated pods are available..."
            ),
            false,
        ));
    }
    Ok((format!("daemon set {name:?} successfully rolled out"), true))
}

async fn status(ctx: &Ctx, t: RolloutTarget) -> Result<(), CliError> {
    let (_, name) = parse_one(&t.args)?;
    let path = object_path(Kind::DaemonSet, &ctx.namespace(&t.ns), &name);
    let timeout = parse_duration(&t.timeout)?;
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let mut last = String::new();
    loop {
        let ds = ctx.client.get(&path).await?;
        let (message, done) = status_message(&ds)?;
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

async fn restart(ctx: &Ctx, t: RolloutTarget) -> Result<(), CliError> {
    let (_, name) = parse_one(&t.args)?;
    let path = object_path(Kind::DaemonSet, &ctx.namespace(&t.ns), &name);
    let ds = ctx.client.get(&path).await?;
    if ds
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        == Some("OnDelete")
    {
        return Err(fail(
            "restarting is not supported by strategy type OnDelete: delete the pods to restart them",
        ));
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {super::rollout::RESTARTED_AT: now}}}}});
    ctx.client
        .json(
            Method::PATCH,
            &path,
            Some("application/merge-patch+json"),
            Some(&patch),
        )
        .await?;
    println!("{}/{name} restarted", kind_label(Kind::DaemonSet));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(generation: i64, status: Value) -> Value {
        json!({"metadata": {"name": "agent", "generation": generation}, "spec": {"updateStrategy": {"type": "RollingUpdate"}}, "status": status})
    }

    #[test]
    fn rollout_status_follows_kubectl_messages() {
        let cases = [
            (
                ds(2, json!({"observedGeneration": 1})),
                "Waiting for daemon set spec update to be observed...",
                false,
            ),
            (
                ds(
                    2,
                    json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 1}),
                ),
                "Waiting for daemon set \"agent\" rollout to finish: 1 out of 3 new pods have been updated...",
                false,
            ),
            (
                ds(
                    2,
                    json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}),
                ),
                "Waiting for daemon set \"agent\" rollout to finish: 2 of 3 updated pods are available...",
                false,
            ),
            (
                ds(
                    2,
                    json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}),
                ),
                "daemon set \"agent\" successfully rolled out",
                true,
            ),
        ];
        for (object, message, done) in cases {
            assert_eq!(
                status_message(&object).unwrap(),
                (message.to_string(), done)
            );
        }
        let on_delete = json!({"metadata": {"name": "agent"}, "spec": {"updateStrategy": {"type": "OnDelete"}}});
        assert!(
            status_message(&on_delete)
                .unwrap_err()
                .to_string()
                .contains("only available for RollingUpdate")
        );
    }
}
