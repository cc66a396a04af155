//! The executor: carries out a plan and the revision changes by committing state commands,
//! and records the events Kubernetes' statefulset controller records
//! (stateful_pod_control.go). It decides nothing; a failed step ends the pass and the next
//! pass plans again from what is stored.

use std::sync::Arc;

use serde_json::{Value, json};

use super::identity::{claim_name, controller_ref, new_claim, new_pod, pod_name};
use super::plan::{Action, ClaimDeleteReason, Plan, PodDeleteReason};
use super::revision::{RevisionChange, Revisions, revision_object};
use super::{COMPONENT, FINALIZER};
use crate::controllers::Context;
use crate::events::{EventType, InvolvedObject};
use crate::objects::{AdmitError, CreateContext, Object, admit_create, admit_update};
use crate::state::{Command, ObjectKey, Propagation, ProposeError, Timestamp};

/// A step of a plan that could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("the {kind} {name} the controller built is not admissible")]
    Admit {
        kind: &'static str,
        name: String,
        #[source]
        source: AdmitError,
    },
    #[error("cannot {verb} {kind} {name}")]
    Propose {
        verb: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: ProposeError,
    },
    #[error("the stored {kind} {name} cannot be decoded")]
    Stored { kind: &'static str, name: String },
}

/// What one set's pass works on.
pub struct Executor<'a> {
    pub ctx: &'a Context,
    /// The stored set.
    pub set: &'a Value,
    pub revisions: &'a Revisions,
}

fn str_at<'v>(v: &'v Value, pointer: &str) -> &'v str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn resource_version(v: &Value) -> Option<u64> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

/// Decodes, defaults and validates a new object as the API would, giving the create command.
fn admitted_create(
    kind: &'static str,
    object: Value,
    now: Timestamp,
) -> Result<Command, ExecuteError> {
    let name = str_at(&object, "/metadata/name").to_string();
    let uid = uuid::Uuid::new_v4().to_string();
    let context = CreateContext {
        uid: uid.clone(),
        now: k8s_openapi::jiff::Timestamp::from_second(now.unix_seconds())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        random: rand::random(),
    };
    let admitted = admit_create(&object, &context).map_err(|source| ExecuteError::Admit {
        kind,
        name,
        source,
    })?;
    Ok(Command::create(admitted.object.to_value(), uid, now))
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
        self.ctx
            .state
            .propose(command)
            .await
            .map(|_| ())
            .map_err(|source| ExecuteError::Propose {
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
                    let object = revision_object(self.set, name, *number, template);
                    let command = admitted_create("ControllerRevision", object, now)?;
                    self.propose(command, "create", "ControllerRevision", name)
                        .await?;
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
                        refs.push(owner.clone());
                        r["metadata"]["ownerReferences"] = json!(refs);
                    })
                    .await?;
                }
                RevisionChange::Delete { name, uid } => {
                    let command = Command::Delete {
                        key: ObjectKey::new("ControllerRevision", self.namespace(), name),
                        precondition_uid: Some(uid.clone()),
                        precondition_resource_version: None,
                        grace_period_seconds: None,
                        propagation: Propagation::Background,
                        now,
                    };
                    match self.ctx.state.propose(command).await {
                        Ok(_)
                        | Err(ProposeError::Rejected(crate::state::Rejection::NotFound {
                            ..
                        })) => {}
                        Err(source) => {
                            return Err(ExecuteError::Propose {
                                verb: "delete",
                                kind: "ControllerRevision",
                                name: name.clone(),
                                source,
                            });
                        }
                    }
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

    /// Carries out `plan`'s actions in order. Claims created for a pod go in one atomic
    /// command with the pod, so a pod never exists without its claims.
    pub async fn apply_plan(&self, plan: &Plan) -> Result<(), ExecuteError> {
        let mut pending_claims: Vec<(Command, String)> = Vec::new();
        for action in &plan.actions {
            match action {
                Action::CreateClaim { template, ordinal } => {
                    let name = claim_name(template, self.set_name(), *ordinal);
                    let claim_template = self
                        .set
                        .pointer("/spec/volumeClaimTemplates")
                        .and_then(Value::as_array)
                        .and_then(|ts| ts.iter().find(|t| str_at(t, "/metadata/name") == template))
                        .cloned()
                        .unwrap_or(Value::Null);
                    let claim = new_claim(self.set, &claim_template, *ordinal);
                    pending_claims.push((
                        admitted_create("PersistentVolumeClaim", claim, Timestamp::now())?,
                        name,
                    ));
                }
                Action::CreatePod { ordinal, revision } => {
                    let claims = std::mem::take(&mut pending_claims);
                    self.create_pod(*ordinal, revision, claims).await?;
                }
                other => {
                    // Claims of a pod that already exists.
                    self.create_claims(std::mem::take(&mut pending_claims))
                        .await?;
                    self.apply_one(other).await?;
                }
            }
        }
        self.create_claims(pending_claims).await
    }

    async fn create_claims(&self, claims: Vec<(Command, String)>) -> Result<(), ExecuteError> {
        for (command, name) in claims {
            self.propose(command, "create", "PersistentVolumeClaim", &name)
                .await?;
            self.event(
                EventType::Normal,
                "SuccessfulCreate",
                format!(
                    "create Claim {name} in StatefulSet {} success",
                    self.set_name()
                ),
            );
        }
        Ok(())
    }

    async fn create_pod(
        &self,
        ordinal: i32,
        revision: &str,
        claims: Vec<(Command, String)>,
    ) -> Result<(), ExecuteError> {
        let name = pod_name(self.set_name(), ordinal);
        let template = if revision == self.revisions.update.name {
            self.set
                .pointer("/spec/template")
                .cloned()
                .unwrap_or(Value::Null)
        } else {
            self.revisions.current.template.clone()
        };
        let pod = new_pod(self.set, &template, revision, ordinal);
        let now = Timestamp::now();
        let pod_command = admitted_create("Pod", pod, now)?;
        let claim_names: Vec<String> = claims.iter().map(|(_, n)| n.clone()).collect();
        let mut commands: Vec<Command> = claims.into_iter().map(|(c, _)| c).collect();
        commands.push(pod_command);
        let command = if commands.len() == 1 {
            commands.remove(0)
        } else {
            Command::Batch(commands)
        };
        if let Err(source) = self.ctx.state.propose(command).await {
            self.event(
                EventType::Warning,
                "FailedCreate",
                format!(
                    "create Pod {name} in StatefulSet {} failed error: {source}",
                    self.set_name()
                ),
            );
            return Err(ExecuteError::Propose {
                verb: "create",
                kind: "Pod",
                name,
                source,
            });
        }
        let set = self.set_name();
        for claim in claim_names {
            self.event(
                EventType::Normal,
                "SuccessfulCreate",
                format!("create Claim {claim} Pod {name} in StatefulSet {set} success"),
            );
        }
        self.event(
            EventType::Normal,
            "SuccessfulCreate",
            format!("create Pod {name} in StatefulSet {set} successful"),
        );
        Ok(())
    }

    async fn apply_one(&self, action: &Action) -> Result<(), ExecuteError> {
        let set = self.set_name().to_string();
        let now = Timestamp::now();
        match action {
            Action::AddFinalizer | Action::RemoveFinalizer => {
                let mut updated = self.set.clone();
                let mut finalizers: Vec<Value> = updated
                    .pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                finalizers.retain(|f| f != FINALIZER);
                if matches!(action, Action::AddFinalizer) {
                    finalizers.push(json!(FINALIZER));
                }
                updated["metadata"]["finalizers"] = json!(finalizers);
                let command = Command::Update {
                    object: updated,
                    precondition_resource_version: resource_version(self.set),
                    now,
                };
                self.propose(command, "update the finalizers of", "StatefulSet", &set)
                    .await?;
            }
            Action::AdoptPod { name, uid } => {
                let owner = controller_ref(self.set);
                self.update_pod(name, uid, move |pod| {
                    let mut refs = pod
                        .pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    refs.push(owner.clone());
                    pod["metadata"]["ownerReferences"] = json!(refs);
                })
                .await?;
                self.event(
                    EventType::Normal,
                    "AdoptedPod",
                    format!("adopted Pod {name}, which had no controller"),
                );
            }
            Action::FixPodIdentity { name, uid, ordinal } => {
                let set_name = set.clone();
                let ordinal = *ordinal;
                self.update_pod(name, uid, move |pod| {
                    if !pod["metadata"]["labels"].is_object() {
                        pod["metadata"]["labels"] = json!({});
                    }
                    pod["metadata"]["labels"][super::identity::POD_NAME_LABEL] =
                        json!(pod_name(&set_name, ordinal));
                    pod["metadata"]["labels"][super::identity::POD_INDEX_LABEL] =
                        json!(ordinal.to_string());
                })
                .await?;
            }
            Action::DeletePod { name, uid, reason } => {
                let command = Command::Delete {
                    key: ObjectKey::new("Pod", self.namespace(), name),
                    precondition_uid: Some(uid.clone()),
                    precondition_resource_version: None,
                    grace_period_seconds: None,
                    propagation: Propagation::Background,
                    now,
                };
                self.propose(command, "delete", "Pod", name).await?;
                let update = &self.revisions.update.name;
                match reason {
                    PodDeleteReason::Failed => self.event(
                        EventType::Warning,
                        "RecreatingFailedPod",
                        format!("StatefulSet {}/{set} is recreating failed Pod {name}", self.namespace()),
                    ),
                    PodDeleteReason::Abandoned => self.event(
                        EventType::Warning,
                        "RecreatingStuckPod",
                        format!("Pod {name} never became Ready on a revision that is no longer wanted; replacing it with revision {update}"),
                    ),
                    PodDeleteReason::StaleClaim => self.event(
                        EventType::Warning,
                        "RecreatingStalePod",
                        format!("Pod {name} had not started and one of its claims is being deleted; it is re-created once the claim is gone"),
                    ),
                    _ => self.event(EventType::Normal, "SuccessfulDelete", format!("delete Pod {name} in StatefulSet {set} successful")),
                }
            }
            Action::DeleteClaim { name, uid, reason } => {
                let command = Command::Delete {
                    key: ObjectKey::new("PersistentVolumeClaim", self.namespace(), name),
                    precondition_uid: Some(uid.clone()),
                    precondition_resource_version: None,
                    grace_period_seconds: None,
                    propagation: Propagation::Background,
                    now,
                };
                self.propose(command, "delete", "PersistentVolumeClaim", name)
                    .await?;
                let policy = match reason {
                    ClaimDeleteReason::ScaledDown => "whenScaled",
                    ClaimDeleteReason::SetDeleted => "whenDeleted",
                };
                self.event(
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!("delete Claim {name} in StatefulSet {set} successful (persistentVolumeClaimRetentionPolicy.{policy}: Delete)"),
                );
            }
            Action::GrowClaim { name, storage } => {
                let Some(stored) =
                    self.ctx
                        .state
                        .get("PersistentVolumeClaim", self.namespace(), name)
                else {
                    return Ok(());
                };
                let mut grown = (*stored).clone();
                grown["spec"]["resources"]["requests"]["storage"] = json!(storage);
                let decoded = Object::from_value(&stored).map_err(|_| ExecuteError::Stored {
                    kind: "PersistentVolumeClaim",
                    name: name.clone(),
                })?;
                let admitted =
                    admit_update(&decoded, &grown).map_err(|source| ExecuteError::Admit {
                        kind: "PersistentVolumeClaim",
                        name: name.clone(),
                        source,
                    })?;
                let command = Command::Update {
                    object: admitted.object.to_value(),
                    precondition_resource_version: resource_version(&stored),
                    now,
                };
                self.propose(command, "grow", "PersistentVolumeClaim", name)
                    .await?;
                self.event(
                    EventType::Normal,
                    "ClaimResized",
                    format!("claim {name} grows to {storage} with its template"),
                );
            }
            Action::CreateClaim { .. } | Action::CreatePod { .. } => {
                unreachable!("handled by apply_plan")
            }
        }
        Ok(())
    }

    async fn update_pod(
        &self,
        name: &str,
        uid: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<(), ExecuteError> {
        let Some(stored) = self.ctx.state.get("Pod", self.namespace(), name) else {
            return Ok(());
        };
        if str_at(&stored, "/metadata/uid") != uid {
            return Ok(());
        }
        let mut updated = (*stored).clone();
        change(&mut updated);
        let command = Command::Update {
            object: updated,
            precondition_resource_version: resource_version(&stored),
            now: Timestamp::now(),
        };
        self.propose(command, "update", "Pod", name).await
    }

    /// Writes `status` if it differs from the stored one.
    pub async fn write_status(&self, status: Value) -> Result<(), ExecuteError> {
        let namespace = self.namespace();
        let name = self.set_name();
        // Read again: the actions above may have changed the set (its finalizers).
        let stored: Arc<Value> = self
            .ctx
            .state
            .get("StatefulSet", namespace, name)
            .unwrap_or_else(|| Arc::new(self.set.clone()));
        if stored.get("status") == Some(&status) {
            return Ok(());
        }
        let command =
            Command::update_status(ObjectKey::new("StatefulSet", namespace, name), status);
        match self.ctx.state.propose(command).await {
            Ok(_) | Err(ProposeError::Rejected(crate::state::Rejection::NotFound { .. })) => Ok(()),
            Err(source) => Err(ExecuteError::Propose {
                verb: "update the status of",
                kind: "StatefulSet",
                name: name.to_string(),
                source,
            }),
        }
    }
}
