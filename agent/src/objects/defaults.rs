//! Defaulting, as the API server's `pkg/apis/{core,apps,batch}/v1/defaults.go` does it:
//! pure functions that fill in what the user left out, so that what is stored and shown
//! (`berth get -o yaml`) is what Kubernetes would store and show.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    DaemonSet, RollingUpdateDaemonSet, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, HTTPGetAction, Namespace, NamespaceStatus, Node,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimStatus, Pod,
    PodSecurityContext, PodSpec, PodStatus, Probe, Secret, Service, Volume,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::object::Object;

/// The label Kubernetes puts on every namespace with its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
/// File mode projected files get when a volume sets none (0644).
pub const DEFAULT_FILE_MODE: i32 = 0o644;

/// Fills in every default the API server would, for any supported kind.
pub fn apply_defaults(object: &mut Object) {
    match object {
        Object::Pod(pod) => default_pod(pod),
        Object::ConfigMap(config_map) => default_config_map(config_map),
        Object::Secret(secret) => default_secret(secret),
        Object::Service(service) => default_service(service),
        Object::Namespace(namespace) => default_namespace(namespace),
        Object::Node(node) => default_node(node),
        Object::PersistentVolumeClaim(claim) => default_claim(claim),
        Object::StatefulSet(set) => default_stateful_set(set),
        Object::DaemonSet(set) => default_daemon_set(set),
        Object::Job(job) => default_job(job),
        Object::CronJob(cron_job) => default_cron_job(cron_job),
        Object::Event(_) | Object::EventsEvent(_) | Object::ControllerRevision(_) => {}
    }
}

fn set_if_empty(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_owned());
    }
}

fn set_if_zero<T: Default + PartialEq>(field: &mut Option<T>, value: T) {
    if field.as_ref().is_none_or(|v| *v == T::default()) {
        *field = Some(value);
    }
}

/// `SetDefaults_Pod`: the pod spec's defaults, plus what only standalone pods get
/// (`enableServiceLinks`, requests copied from limits) and the initial phase.
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    if spec.enable_service_links.is_none() {
        spec.enable_service_links = Some(true);
    }
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        copy_limits_to_requests(container);
    }
    let status = pod.status.get_or_insert_with(PodStatus::default);
    set_if_empty(&mut status.phase, "Pending");
}

/// A resource with a limit but no request gets the limit as its request.
fn copy_limits_to_requests(container: &mut Container) {
    let Some(resources) = container.resources.as_mut() else {
        return;
    };
    let Some(limits) = resources.limits.clone() else {
        return;
    };
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    for (name, quantity) in limits {
        // A malformed limit is reported once, by validation, not again as a request.
        if super::quantity::Quantity::parse(&quantity.0).is_ok() {
            requests.entry(name).or_insert(quantity);
        }
    }
}

/// `SetDefaults_PodSpec` and the defaults of everything inside a pod spec (containers,
/// probes, volumes, env field references). Used for pods and for every pod template.
pub fn default_pod_spec(spec: &mut PodSpec) {
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.restart_policy, "Always");
    if spec.security_context.is_none() {
        spec.security_context = Some(PodSecurityContext::default());
    }
    if spec.termination_grace_period_seconds.is_none() {
        spec.termination_grace_period_seconds = Some(30);
    }
    set_if_empty(&mut spec.scheduler_name, "default-scheduler");
    let host_network = spec.host_network == Some(true);
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(container, host_network);
    }
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
}

/// `SetDefaults_Container` and its nested defaults.
pub fn default_container(container: &mut Container, host_network: bool) {
    if container
        .image_pull_policy
        .as_deref()
        .is_none_or(str::is_empty)
    {
        let policy = if image_tag(container.image.as_deref().unwrap_or("")) == Some("latest") {
            "Always"
        } else {
            "IfNotPresent"
        };
        container.image_pull_policy = Some(policy.to_owned());
    }
    set_if_empty(
        &mut container.termination_message_path,
        "/dev/termination-log",
    );
    set_if_empty(&mut container.termination_message_policy, "File");
    for port in container.ports.iter_mut().flatten() {
        set_if_empty(&mut port.protocol, "TCP");
        // With the host's network the host port is the container port.
        if host_network && port.host_port.unwrap_or(0) == 0 {
            port.host_port = Some(port.container_port);
        }
    }
    for probe in [
        &mut container.liveness_probe,
        &mut container.readiness_probe,
        &mut container.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lifecycle) = container.lifecycle.as_mut() {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            if let Some(http_get) = handler.http_get.as_mut() {
                default_http_get(http_get);
            }
        }
    }
    for env in container.env.iter_mut().flatten() {
        default_env(env);
    }
}

/// The tag of an image reference as Kubernetes' `parsers.ParseImageName` sees it: `latest`
/// when neither tag nor digest is given, `None` for a digest-only reference.
pub fn image_tag(image: &str) -> Option<&str> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last_segment_start = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_segment_start..].rfind(':') {
        Some(i) => Some(&name[last_segment_start + i + 1..]),
        None if digest.is_some() => None,
        None => Some("latest"),
    }
}

fn default_probe(probe: &mut Probe) {
    set_if_zero(&mut probe.timeout_seconds, 1);
    set_if_zero(&mut probe.period_seconds, 10);
    set_if_zero(&mut probe.success_threshold, 1);
    set_if_zero(&mut probe.failure_threshold, 3);
    if let Some(http_get) = probe.http_get.as_mut() {
        default_http_get(http_get);
    }
}

fn default_http_get(action: &mut HTTPGetAction) {
    set_if_empty(&mut action.path, "/");
    set_if_empty(&mut action.scheme, "HTTP");
}

fn default_env(env: &mut EnvVar) {
    if let Some(field_ref) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
        default_field_selector(field_ref);
    }
}

fn default_field_selector(selector: &mut ObjectFieldSelector) {
    set_if_empty(&mut selector.api_version, "v1");
}

/// Whether a volume names any source (any field besides `name`).
pub fn volume_has_source(volume: &Volume) -> bool {
    match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(map)) => map.keys().any(|k| k != "name"),
        _ => true,
    }
}

/// `SetDefaults_Volume` and the defaults of each source: a volume without a source is an
/// emptyDir; projected files default to mode 0644.
pub fn default_volume(volume: &mut Volume) {
    if !volume_has_source(volume) {
        volume.empty_dir = Some(Default::default());
    }
    if let Some(source) = volume.config_map.as_mut()
        && source.default_mode.is_none()
    {
        source.default_mode = Some(DEFAULT_FILE_MODE);
    }
    if let Some(source) = volume.secret.as_mut()
        && source.default_mode.is_none()
    {
        source.default_mode = Some(DEFAULT_FILE_MODE);
    }
    if let Some(source) = volume.downward_api.as_mut() {
        if source.default_mode.is_none() {
            source.default_mode = Some(DEFAULT_FILE_MODE);
        }
        for item in source.items.iter_mut().flatten() {
            if let Some(field_ref) = item.field_ref.as_mut() {
                default_field_selector(field_ref);
            }
        }
    }
    if let Some(source) = volume.projected.as_mut() {
        if source.default_mode.is_none() {
            source.default_mode = Some(DEFAULT_FILE_MODE);
        }
        for projection in source.sources.iter_mut().flatten() {
            let items = projection
                .downward_api
                .as_mut()
                .and_then(|d| d.items.as_mut());
            for item in items.into_iter().flatten() {
                if let Some(field_ref) = item.field_ref.as_mut() {
                    default_field_selector(field_ref);
                }
            }
        }
    }
    if let Some(host_path) = volume.host_path.as_mut()
        && host_path.type_.is_none()
    {
        host_path.type_ = Some(String::new());
    }
}

/// ConfigMaps have no defaults; present for symmetry.
pub fn default_config_map(_config_map: &mut ConfigMap) {}

/// `SetDefaults_Secret` and the `stringData` merge the API server does on write: each
/// `stringData` entry replaces the `data` entry of the same key, and `stringData` is dropped.
pub fn default_secret(secret: &mut Secret) {
    set_if_empty(&mut secret.type_, "Opaque");
    if let Some(string_data) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in string_data {
            data.insert(key, ByteString(value.into_bytes()));
        }
    }
}

/// `SetDefaults_Service`.
pub fn default_service(service: &mut Service) {
    let spec = service.spec.get_or_insert_with(Default::default);
    set_if_empty(&mut spec.session_affinity, "None");
    set_if_empty(&mut spec.type_, "ClusterIP");
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let config = spec
            .session_affinity_config
            .get_or_insert_with(Default::default);
        let client_ip = config.client_ip.get_or_insert_with(Default::default);
        if client_ip.timeout_seconds.is_none() {
            client_ip.timeout_seconds = Some(10800);
        }
    }
    if spec.type_.as_deref() != Some("ExternalName") && spec.internal_traffic_policy.is_none() {
        spec.internal_traffic_policy = Some("Cluster".to_owned());
    }
    for port in spec.ports.iter_mut().flatten() {
        set_if_empty(&mut port.protocol, "TCP");
        let unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
}

/// `SetDefaults_Namespace`: the `kubernetes.io/metadata.name` label and phase Active.
pub fn default_namespace(namespace: &mut Namespace) {
    if let Some(name) = namespace.metadata.name.clone() {
        namespace
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(NAMESPACE_NAME_LABEL.to_owned(), name);
    }
    let status = namespace
        .status
        .get_or_insert_with(NamespaceStatus::default);
    set_if_empty(&mut status.phase, "Active");
}

/// `SetDefaults_NodeStatus`: allocatable defaults to capacity.
pub fn default_node(node: &mut Node) {
    if let Some(status) = node.status.as_mut()
        && status.allocatable.is_none()
    {
        status.allocatable = status.capacity.clone();
    }
}

/// `SetDefaults_PersistentVolumeClaim`: volumeMode Filesystem, phase Pending.
pub fn default_claim(claim: &mut PersistentVolumeClaim) {
    let spec = claim.spec.get_or_insert_with(Default::default);
    set_if_empty(&mut spec.volume_mode, "Filesystem");
    let status = claim
        .status
        .get_or_insert_with(PersistentVolumeClaimStatus::default);
    set_if_empty(&mut status.phase, "Pending");
}

/// `SetDefaults_StatefulSet` (with the Kubernetes 1.34 feature gates: PVC retention on,
/// StatefulSet maxUnavailable off, so `maxUnavailable` is not filled in).
pub fn default_stateful_set(set: &mut StatefulSet) {
    let spec = set.spec.get_or_insert_with(Default::default);
    set_if_empty(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec
        .update_strategy
        .get_or_insert_with(StatefulSetUpdateStrategy::default);
    if strategy.type_.as_deref().is_none_or(str::is_empty) {
        strategy.type_ = Some("RollingUpdate".to_owned());
        if strategy.rolling_update.is_none() {
            strategy.rolling_update = Some(RollingUpdateStatefulSetStrategy::default());
        }
    }
    if strategy.type_.as_deref() == Some("RollingUpdate")
        && let Some(rolling) = strategy.rolling_update.as_mut()
        && rolling.partition.is_none()
    {
        rolling.partition = Some(0);
    }
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    set_if_empty(&mut retention.when_deleted, "Retain");
    set_if_empty(&mut retention.when_scaled, "Retain");
    if spec.replicas.is_none() {
        spec.replicas = Some(1);
    }
    if spec.revision_history_limit.is_none() {
        spec.revision_history_limit = Some(10);
    }
    default_pod_spec(spec.template.spec.get_or_insert_with(Default::default));
    for claim in spec.volume_claim_templates.iter_mut().flatten() {
        default_claim(claim);
    }
}

/// `SetDefaults_DaemonSet`.
pub fn default_daemon_set(set: &mut DaemonSet) {
    let spec = set.spec.get_or_insert_with(Default::default);
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    set_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        if rolling.max_unavailable.is_none() {
            rolling.max_unavailable = Some(IntOrString::Int(1));
        }
        if rolling.max_surge.is_none() {
            rolling.max_surge = Some(IntOrString::Int(0));
        }
    }
    if spec.revision_history_limit.is_none() {
        spec.revision_history_limit = Some(10);
    }
    default_pod_spec(spec.template.spec.get_or_insert_with(Default::default));
}

/// `SetDefaults_Job`. The generated selector needs the Job's uid and is added when the Job
/// is created (see `strategy::prepare_for_create`).
pub fn default_job(job: &mut Job) {
    let spec = job.spec.get_or_insert_with(Default::default);
    default_job_spec(spec);
    // A Job without labels takes its pod template's labels.
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone());
    if let Some(labels) = template_labels
        && job.metadata.labels.as_ref().is_none_or(BTreeMap::is_empty)
    {
        job.metadata.labels = Some(labels);
    }
}

/// The defaults of a Job spec.
pub fn default_job_spec(spec: &mut JobSpec) {
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
        spec.parallelism = Some(1);
    }
    if spec.parallelism.is_none() {
        spec.parallelism = Some(1);
    }
    if spec.backoff_limit.is_none() {
        spec.backoff_limit = Some(if spec.backoff_limit_per_index.is_some() {
            i32::MAX
        } else {
            6
        });
    }
    set_if_empty(&mut spec.completion_mode, "NonIndexed");
    if spec.suspend.is_none() {
        spec.suspend = Some(false);
    }
    if let Some(policy) = spec.pod_failure_policy.as_mut() {
        for rule in &mut policy.rules {
            for pattern in rule.on_pod_conditions.iter_mut().flatten() {
                if pattern.status.is_empty() {
                    pattern.status = "True".to_owned();
                }
            }
        }
    }
    if spec.pod_replacement_policy.is_none() {
        spec.pod_replacement_policy = Some(
            if spec.pod_failure_policy.is_some() {
                "Failed"
            } else {
                "TerminatingOrFailed"
            }
            .to_owned(),
        );
    }
    default_pod_spec(spec.template.spec.get_or_insert_with(Default::default));
}

/// `SetDefaults_CronJob`.
pub fn default_cron_job(cron_job: &mut CronJob) {
    let spec = cron_job.spec.get_or_insert_with(Default::default);
    set_if_empty(&mut spec.concurrency_policy, "Allow");
    if spec.suspend.is_none() {
        spec.suspend = Some(false);
    }
    if spec.successful_jobs_history_limit.is_none() {
        spec.successful_jobs_history_limit = Some(3);
    }
    if spec.failed_jobs_history_limit.is_none() {
        spec.failed_jobs_history_limit = Some(1);
    }
    // Only the pod template inside a job template is defaulted (`SetDefaults_Job` applies to
    // Jobs, not to job templates); the Job gets the rest when the CronJob creates it.
    let job_spec = spec.job_template.spec.get_or_insert_with(Default::default);
    default_pod_spec(job_spec.template.spec.get_or_insert_with(Default::default));
}
