//! The executor: carries out a plan and the revision changes by committing state commands,
//! and records the events Kubernetes' daemon controller records. It decides nothing; a
//! failed step ends the pass and the next pass plans again from what is stored.

use serde_json::{Value, json};

use super::COMPONENT;
use super::plan::{Action, DeleteReason, Plan};
use super::pod::{controller_ref, new_pod};
use crate::claims::epoch::{ASSIGNMENT_EPOCH, epoch_for_binding};
use crate::controllers::statefulset::revision::{RevisionChange, Revisions, revision_object};
use crate::controllers::{Context, WriteError, create_object};
use crate::events::{EventType, InvolvedObject};
use crate::state::{Command, ObjectKey, ProposeError, Rejection, Timestamp};

/// A step of a plan that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("cannot create {kind} for DaemonSet {set}")]
    Create {
        kind: &'static str,
        set: String,
        #[source]
        source: WriteError,
    },
    #[error("cannot {verb} {kind} {name}")]
    Propose {
        verb: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: ProposeError,
    },
    #[error("the stored DaemonSet {name} cannot be decoded")]
    Stored { name: String },
}

/// What one set's pass works on.
pub struct Executor<'a> {
    pub ctx: &'a Context,
    /// The stored set.
    pub set: &'a Value,
    pub revisions: &'a Revisions,
    /// The update revision's hash (the pods' `controller-revision-hash`).
    pub hash: &'a str,
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn resource_version(v: &Value) -> Option<u64> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// Whether a failed proposal only says the object is already gone.
fn gone(result: &Result<(), ProposeError>) -> bool {
    matches!(
        result,
        Err(ProposeError::Rejected(Rejection::NotFound { .. }))
    )
}

impl Executor<'_> {
    fn namespace(&self) -> &str {
        str_at(self.set, "/metadata/namespace")
    }

    fn set_name(&self) -> &str {
        str_at(self.set, "/metadata/name")
    }

    fn event(&self, type_: EventType, reason: &str, message: String) {
        self.ctx.events.record(
            InvolvedObject::of(self.set),
            type_,
            reason,
            message,
            COMPONENT,
        );
    }

    async fn propose(
        &self,
        command: Command,
        verb: &'static str,
        kind: &'static str,
        name: &str,
    ) -> Result<(), ExecuteError> {
        let result = self.ctx.state.propose(command).await.map(|_| ());
        if gone(&result) {
            return Ok(());
        }
        result.map_err(|source| ExecuteError::Propose {
            verb,
            kind,
            name: name.to_string(),
            source,
        })
    }

    /// Stores new revisions, renumbers, adopts and prunes old ones.
    pub async fn apply_revisions(&self) -> Result<(), ExecuteError> {
        let now = Timestamp::now();
        for change in &self.revisions.changes {
            match change {
                RevisionChange::Create {
                    name,
                    number,
                    template,
                } => {
                    let mut object = revision_object(self.set, name, *number, template);
                    object["metadata"]["ownerReferences"] = json!([controller_ref(self.set)]);
                    create_object(&self.ctx.state, object)
                        .await
                        .map_err(|source| ExecuteError::Create {
                            kind: "ControllerRevision",
                            set: self.set_name().to_string(),
                            source,
                        })?;
                }
                RevisionChange::Renumber { name, number, .. } => {
                    self.update_revision(name, |r| r["revision"] = json!(number))
                        .await?;
                }
                RevisionChange::Adopt { name, .. } => {
                    let owner = controller_ref(self.set);
                    self.update_revision(name, move |r| {
                        let mut refs = r
                            .pointer("/metadata/ownerReferences")
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default();
                        refs.push(owner);
                        r["metadata"]["ownerReferences"] = json!(refs);
                    })
                    .await?;
                }
                RevisionChange::Delete { name, uid } => {
                    let command = Command::delete(
                        ObjectKey::new("ControllerRevision", self.namespace(), name),
                        now,
                    )
                    .expecting_uid(uid);
                    self.propose(command, "delete", "ControllerRevision", name)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn update_revision(
        &self,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<(), ExecuteError> {
        let Some(stored) = self
            .ctx
            .state
            .get("ControllerRevision", self.namespace(), name)
        else {
            return Ok(());
        };
        let mut updated = (*stored).clone();
        change(&mut updated);
        let command = Command::Update {
            object: updated,
            precondition_resource_version: resource_version(&stored),
            now: Timestamp::now(),
        };
        self.propose(command, "update", "ControllerRevision", name)
            .await
    }

    /// Carries out `plan`'s actions in order.
    pub async fn apply_plan(&self, plan: &Plan) -> Result<(), ExecuteError> {
        let template = self
            .set
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(Value::Null);
        for action in &plan.actions {
            match action {
                Action::CreatePod { node } => {
                    let mut pod = new_pod(self.set, &template, self.hash, Some(node));
                    // The pod is created bound: its creation is its binding, and carries the
                    // assignment epoch as the scheduler's bindings do.
                    if !pod["metadata"]["annotations"].is_object() {
                        pod["metadata"]["annotations"] = json!({});
                    }
                    pod["metadata"]["annotations"][ASSIGNMENT_EPOCH] =
                        json!(epoch_for_binding(self.ctx.state.revision()).to_string());
                    match create_object(&self.ctx.state, pod).await {
                        Ok(created) => self.event(
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!(
                                "Created pod: {} on node {node}",
                                str_at(&created, "/metadata/name")
                            ),
                        ),
                        Err(source) => {
                            self.event(
                                EventType::Warning,
                                "FailedCreate",
                                format!("Error creating pod on node {node}: {source}"),
                            );
                            return Err(ExecuteError::Create {
                                kind: "Pod",
                                set: self.set_name().to_string(),
                                source,
                            });
                        }
                    }
                }
                Action::DeletePod {
                    name,
                    uid,
                    node,
                    reason,
                } => {
                    let command = Command::delete(
                        ObjectKey::new("Pod", self.namespace(), name),
                        Timestamp::now(),
                    )
                    .expecting_uid(uid);
                    if *reason == DeleteReason::Failed {
                        self.event(
                            EventType::Warning,
                            "FailedDaemonPod",
                            format!("Found failed daemon pod {}/{name} on node {node}, will try to kill it", self.namespace()),
                        );
                    }
                    self.propose(command, "delete", "Pod", name).await?;
                    let why = match reason {
                        DeleteReason::Failed => "it failed",
                        DeleteReason::NotEligible => {
                            "its node no longer matches the DaemonSet's node selector, affinity or tolerations"
                        }
                        DeleteReason::NodeGone => "its node is gone",
                        DeleteReason::Excess => "its node has more than one pod of the DaemonSet",
                        DeleteReason::Update => "a rolling update replaces it",
                    };
                    self.event(
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name} on node {node} ({why})"),
                    );
                }
            }
        }
        Ok(())
    }

    /// Writes `status` if it differs from the stored one.
    pub async fn write_status(&self, status: Value) -> Result<(), ExecuteError> {
        let name = self.set_name();
        let stored = self.ctx.state.get("DaemonSet", self.namespace(), name);
        if stored.as_ref().and_then(|s| s.get("status")) == Some(&status) {
            return Ok(());
        }
        let command =
            Command::update_status(ObjectKey::new("DaemonSet", self.namespace(), name), status);
        self.propose(command, "update the status of", "DaemonSet", name)
            .await
    }
}

#[cfg(test)]
mod tests {
    use crate::claims::epoch::assignment_epoch;
    use crate::controllers::{Context, create_object};
    use crate::state::{Command, State, StateConfig, Timestamp};
    use serde_json::{Value, json};

    #[tokio::test]
    async fn a_daemon_pod_is_created_bound_with_its_assignment_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(StateConfig::new(dir.path(), "n1"))
            .await
            .unwrap();
        let ctx = Context {
            state: state.clone(),
            events: crate::events::Recorder::discard(),
            node_name: "n1".into(),
        };
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        state
            .propose(Command::create(node, "node-uid", Timestamp::now()))
            .await
            .unwrap();
        let set = create_object(
            &state,
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": "logger", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "logger"}},
                    "template": {"metadata": {"labels": {"app": "logger"}},
                        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        )
        .await
        .unwrap();
        let before = state.revision();
        super::super::sync(&ctx, &set).await.unwrap();
        let (pods, _) = state.list("Pod", Some("default"));
        assert_eq!(pods.len(), 1, "{pods:?}");
        let pod: &Value = &pods[0];
        assert_eq!(pod["spec"]["nodeName"], "n1");
        let created: u64 = pod["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let epoch = assignment_epoch(pod).unwrap();
        assert!(
            epoch > before && epoch <= created,
            "{before} < {epoch} <= {created}"
        );
        state.shutdown().await;
    }
}
