//! Namespaces: each carries a finalizer so that deleting it first deletes everything in it
//! (pods stop gracefully), then the namespace itself, as Kubernetes' namespace controller
//! does. `status.phase` is Active or Terminating.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Context, next_change};
use crate::objects::Kind;
use crate::state::{Command, ObjectKey, Propagation, Timestamp};

/// The finalizer that holds a namespace until its contents are gone.
pub const FINALIZER: &str = "kubernetes";

/// Creates namespace `name` unless it exists (a concurrent creation that wins is fine).
pub async fn ensure(
    state: &crate::state::State,
    name: &str,
) -> Result<(), crate::state::ProposeError> {
    if state.get("Namespace", "", name).is_some() {
        return Ok(());
    }
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {}, "status": {"phase": "Active"}});
    match state
        .propose(Command::create(
            ns,
            uuid::Uuid::new_v4().to_string(),
            Timestamp::now(),
        ))
        .await
    {
        Ok(_) | Err(crate::state::ProposeError::Rejected(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs until shutdown.
pub async fn run(ctx: Context, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut changes = ctx.state.subscribe_changes();
    loop {
        if let Err(e) = reconcile(&ctx).await {
            tracing::debug!(error = %e, "namespace controller pass failed; retrying");
        }
        if !next_change(&mut changes, &mut shutdown, Some(Duration::from_secs(10))).await {
            return;
        }
    }
}

async fn reconcile(ctx: &Context) -> Result<(), crate::state::ProposeError> {
    let (namespaces, _) = ctx.state.list("Namespace", None);
    let now = Timestamp::now();
    for ns in namespaces.iter() {
        let name = ns
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let deleting = ns
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let finalizers: Vec<String> = ns
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let has_finalizer = finalizers.iter().any(|f| f == FINALIZER);
        if !deleting {
            let phase_ok = ns.pointer("/status/phase").and_then(Value::as_str) == Some("Active");
            if !has_finalizer {
                let mut updated = (**ns).clone();
                let mut f = finalizers.clone();
                f.push(FINALIZER.to_string());
                updated["metadata"]["finalizers"] = json!(f);
                ctx.state.propose(Command::update(updated, now)).await?;
            }
            if !phase_ok {
                let key = ObjectKey::new("Namespace", "", &name);
                ctx.state
                    .propose(Command::UpdateStatus {
                        key,
                        status: json!({"phase": "Active"}),
                        precondition_resource_version: None,
                    })
                    .await?;
            }
            continue;
        }
        if ns.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating") {
            let key = ObjectKey::new("Namespace", "", &name);
            ctx.state
                .propose(Command::UpdateStatus {
                    key,
                    status: json!({"phase": "Terminating"}),
                    precondition_resource_version: None,
                })
                .await?;
        }
        // Delete what is left in it (pods get their graceful shutdown).
        let mut remaining = 0;
        let mut deletes = Vec::new();
        for kind in Kind::ALL {
            if !kind.info().namespaced {
                continue;
            }
            let (objects, _) = ctx.state.list(kind.name(), Some(&name));
            for o in objects.iter() {
                remaining += 1;
                if o.pointer("/metadata/deletionTimestamp").is_none() {
                    let obj_name = o
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    deletes.push(Command::Delete {
                        key: ObjectKey::new(kind.name(), &name, obj_name),
                        precondition_uid: None,
                        precondition_resource_version: None,
                        grace_period_seconds: None,
                        propagation: Propagation::Background,
                        now,
                    });
                }
            }
        }
        for d in deletes {
            // One at a time: a refusal of one must not block the others.
            let _ = ctx.state.propose(d).await;
        }
        if remaining == 0 && has_finalizer {
            let mut updated = (**ns).clone();
            let f: Vec<String> = finalizers.into_iter().filter(|f| f != FINALIZER).collect();
            updated["metadata"]["finalizers"] = json!(f);
            ctx.state.propose(Command::update(updated, now)).await?;
        }
    }
    Ok(())
}
