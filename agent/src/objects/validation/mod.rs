//! Validation as the API server validates: each rule returns `FieldError`s with Kubernetes'
//! field paths and words. Objects are validated after defaulting, as in Kubernetes.

mod container;
mod core;
pub mod meta;
mod pod;
mod scheduling;
mod update;
mod volumes;
mod workloads;

pub use self::container::{split_subscript, validate_port_num_or_name, validate_resources};
pub use self::core::{validate_claim_spec, validate_int_or_percent};
pub use self::pod::{validate_pod_spec, validate_pod_template};
pub use self::workloads::validate_job_spec;

use super::field::FieldError;
use super::object::Object;

/// Every rule Kubernetes (and berth) applies when an object is created.
pub fn validate_object(object: &Object) -> Vec<FieldError> {
    match object {
        Object::Pod(pod) => pod::validate_pod(pod),
        Object::ConfigMap(config_map) => self::core::validate_config_map(config_map),
        Object::Secret(secret) => self::core::validate_secret(secret),
        Object::Service(service) => self::core::validate_service(service),
        Object::Namespace(namespace) => self::core::validate_namespace(&namespace.metadata),
        Object::Node(node) => self::core::validate_node(&node.metadata),
        Object::Event(event) => self::core::validate_event(&event.metadata),
        Object::EventsEvent(event) => self::core::validate_event(&event.metadata),
        Object::PersistentVolumeClaim(claim) => self::core::validate_claim(claim),
        Object::StatefulSet(set) => workloads::validate_stateful_set(set),
        Object::ControllerRevision(revision) => self::core::validate_controller_revision(revision),
        Object::DaemonSet(set) => workloads::validate_daemon_set(set),
        Object::Job(job) => workloads::validate_job(job),
        Object::CronJob(cron_job) => workloads::validate_cron_job(cron_job),
    }
}

/// The rules for replacing `old` with `new`: `new` must be valid on its own, and may change
/// only what the kind allows to change.
pub fn validate_object_update(old: &Object, new: &Object) -> Vec<FieldError> {
    let mut errors = validate_object(new);
    errors.extend(update::validate_update_changes(old, new));
    errors
}
