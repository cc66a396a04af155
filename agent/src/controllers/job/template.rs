//! The pods a Job creates (pure): its template, owned by the Job, carrying the tracking
//! finalizer and, for Indexed Jobs, the completion index (annotation, label,
//! `JOB_COMPLETION_INDEX`, hostname `<job>-<index>`).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::{
    COMPLETION_INDEX_ANNOTATION, COMPLETION_INDEX_ENV, INDEX_FAILURE_COUNT_ANNOTATION,
    INDEX_IGNORED_FAILURE_COUNT_ANNOTATION, TRACKING_FINALIZER,
};
use crate::objects::names::MAX_GENERATED_NAME_PREFIX;

/// What makes one new pod different from its siblings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodSlot {
    /// The completion index (Indexed Jobs).
    pub index: Option<i32>,
    /// Earlier failures of the index, (counted, ignored), with `backoffLimitPerIndex`.
    pub index_failures: Option<(i32, i32)>,
}

/// The owner reference a Job's pods carry.
pub fn owner_reference(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".to_owned(),
        kind: "Job".to_owned(),
        name: job.metadata.name.clone().unwrap_or_default(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// `generateName` of a pod: `<job>-`, or `<job>-<index>-` cut so that the index survives
/// the 58-character limit of generated names.
pub fn generate_name(job_name: &str, index: Option<i32>) -> String {
    let suffix = match index {
        Some(i) => format!("-{i}-"),
        None => "-".to_owned(),
    };
    let mut base = job_name.to_owned();
    let room = MAX_GENERATED_NAME_PREFIX.saturating_sub(suffix.len());
    if base.len() > room {
        let mut cut = room;
        while !base.is_char_boundary(cut) {
            cut -= 1;
        }
        base.truncate(cut);
    }
    base + &suffix
}

/// The pod to create for `job` in `slot`.
pub fn pod_for(job: &Job, slot: PodSlot) -> Pod {
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let template_meta = template.metadata.unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    let mut annotations = template_meta.annotations.unwrap_or_default();
    let mut finalizers = template_meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_owned());
    }
    let mut spec = template.spec.unwrap_or_default();
    if let Some(index) = slot.index {
        annotations.insert(COMPLETION_INDEX_ANNOTATION.to_owned(), index.to_string());
        labels.insert(COMPLETION_INDEX_ANNOTATION.to_owned(), index.to_string());
        spec.hostname = Some(format!("{job_name}-{index}"));
        for container in spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut())
        {
            add_index_env(container);
        }
        if let Some((counted, ignored)) = slot.index_failures {
            annotations.insert(
                INDEX_FAILURE_COUNT_ANNOTATION.to_owned(),
                counted.to_string(),
            );
            if ignored > 0 {
                annotations.insert(
                    INDEX_IGNORED_FAILURE_COUNT_ANNOTATION.to_owned(),
                    ignored.to_string(),
                );
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name(&job_name, slot.index)),
            namespace: job.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![owner_reference(job)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// `JOB_COMPLETION_INDEX` from the pod's annotation, unless the container sets it itself.
fn add_index_env(container: &mut Container) {
    let env = container.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: COMPLETION_INDEX_ENV.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: format!("metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
            }),
            ..Default::default()
        }),
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(mode: &str) -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "shard", "namespace": "lab", "uid": "u-1"},
            "spec": {
                "completionMode": mode, "completions": 4,
                "template": {
                    "metadata": {"labels": {"app": "shard", "batch.kubernetes.io/job-name": "shard"}, "annotations": {"note": "x"}},
                    "spec": {"restartPolicy": "Never", "subdomain": "workers",
                             "initContainers": [{"name": "prep", "image": "busybox"}],
                             "containers": [{"name": "main", "image": "busybox",
                                             "env": [{"name": "A", "value": "1"}]}]}
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_non_indexed_pod_is_the_template_owned_by_the_job() {
        let pod = serde_json::to_value(pod_for(&job("NonIndexed"), PodSlot::default())).unwrap();
        assert_eq!(pod["metadata"]["generateName"], "shard-");
        assert_eq!(pod["metadata"]["namespace"], "lab");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "shard", "batch.kubernetes.io/job-name": "shard"})
        );
        assert_eq!(pod["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
        assert_eq!(
            pod["metadata"]["ownerReferences"],
            json!([{"apiVersion": "batch/v1", "kind": "Job", "name": "shard", "uid": "u-1", "controller": true, "blockOwnerDeletion": true}])
        );
        assert!(pod["spec"].get("hostname").is_none());
        assert_eq!(
            pod["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}])
        );
    }

    #[test]
    fn an_indexed_pod_carries_its_index_everywhere() {
        let pod = serde_json::to_value(pod_for(
            &job("Indexed"),
            PodSlot {
                index: Some(2),
                index_failures: None,
            },
        ))
        .unwrap();
        assert_eq!(pod["metadata"]["generateName"], "shard-2-");
        assert_eq!(
            pod["metadata"]["annotations"][COMPLETION_INDEX_ANNOTATION],
            "2"
        );
        assert_eq!(pod["metadata"]["labels"][COMPLETION_INDEX_ANNOTATION], "2");
        assert_eq!(pod["spec"]["hostname"], "shard-2");
        assert_eq!(pod["spec"]["subdomain"], "workers");
        let index_env = json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"apiVersion": "v1",
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}});
        assert_eq!(
            pod["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "1"}, index_env])
        );
        assert_eq!(pod["spec"]["initContainers"][0]["env"], json!([index_env]));
    }

    #[test]
    fn per_index_failure_counts_are_annotated() {
        let slot = PodSlot {
            index: Some(0),
            index_failures: Some((2, 1)),
        };
        let pod = serde_json::to_value(pod_for(&job("Indexed"), slot)).unwrap();
        assert_eq!(
            pod["metadata"]["annotations"][INDEX_FAILURE_COUNT_ANNOTATION],
            "2"
        );
        assert_eq!(
            pod["metadata"]["annotations"][INDEX_IGNORED_FAILURE_COUNT_ANNOTATION],
            "1"
        );
    }

    #[test]
    fn long_job_names_keep_the_index_in_generated_names() {
        let name = "j".repeat(70);
        assert_eq!(generate_name(&name, None).len(), 58);
        let indexed = generate_name(&name, Some(12));
        assert_eq!(indexed.len(), 58);
        assert!(indexed.ends_with("-12-"));
        assert_eq!(generate_name("short", Some(3)), "short-3-");
    }
}
