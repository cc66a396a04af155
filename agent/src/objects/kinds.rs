//! The kinds berth serves: their group, version, resource names and scope, and lookup by
//! the names kubectl accepts (`po`, `statefulsets.apps`, `StatefulSet`).

use std::fmt;

/// A kind berth supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 Pod.
    Pod,
    /// core/v1 ConfigMap.
    ConfigMap,
    /// core/v1 Secret.
    Secret,
    /// core/v1 Service.
    Service,
    /// core/v1 Namespace.
    Namespace,
    /// core/v1 Node.
    Node,
    /// core/v1 Event.
    Event,
    /// events.k8s.io/v1 Event.
    EventsEvent,
    /// core/v1 PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 ControllerRevision.
    ControllerRevision,
    /// apps/v1 DaemonSet.
    DaemonSet,
    /// batch/v1 Job.
    Job,
    /// batch/v1 CronJob.
    CronJob,
}

/// What berth (and kubectl's discovery) knows about a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// The kind, as written in `kind:`.
    pub kind: &'static str,
    /// The API group (`""` for core).
    pub group: &'static str,
    /// The version.
    pub version: &'static str,
    /// The resource name (`statefulsets`).
    pub plural: &'static str,
    /// The singular resource name (`statefulset`).
    pub singular: &'static str,
    /// kubectl's short names.
    pub short_names: &'static [&'static str],
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Whether the kind has a `/status` subresource.
    pub status_subresource: bool,
}

impl KindInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

const fn info(
    kind: &'static str,
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    status_subresource: bool,
) -> KindInfo {
    KindInfo {
        kind,
        group,
        version: "v1",
        plural,
        singular,
        short_names,
        namespaced,
        status_subresource,
    }
}

impl Kind {
    /// Every supported kind, in discovery order (core first, so `events` means core/v1).
    pub const ALL: [Kind; 14] = [
        Kind::Pod,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Service,
        Kind::Namespace,
        Kind::Node,
        Kind::Event,
        Kind::PersistentVolumeClaim,
        Kind::EventsEvent,
        Kind::StatefulSet,
        Kind::ControllerRevision,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
    ];

    /// The kind's registry entry.
    pub fn info(self) -> &'static KindInfo {
        const POD: KindInfo = info("Pod", "", "pods", "pod", &["po"], true, true);
        const CONFIG_MAP: KindInfo = info(
            "ConfigMap",
            "",
            "configmaps",
            "configmap",
            &["cm"],
            true,
            false,
        );
        const SECRET: KindInfo = info("Secret", "", "secrets", "secret", &[], true, false);
        const SERVICE: KindInfo = info("Service", "", "services", "service", &["svc"], true, true);
        const NAMESPACE: KindInfo = info(
            "Namespace",
            "",
            "namespaces",
            "namespace",
            &["ns"],
            false,
            true,
        );
        const NODE: KindInfo = info("Node", "", "nodes", "node", &["no"], false, true);
        const EVENT: KindInfo = info("Event", "", "events", "event", &["ev"], true, false);
        const EVENTS_EVENT: KindInfo = info(
            "Event",
            "events.k8s.io",
            "events",
            "event",
            &["ev"],
            true,
            false,
        );
        const PVC: KindInfo = info(
            "PersistentVolumeClaim",
            "",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            &["pvc"],
            true,
            true,
        );
        const STATEFUL_SET: KindInfo = info(
            "StatefulSet",
            "apps",
            "statefulsets",
            "statefulset",
            &["sts"],
            true,
            true,
        );
        const CONTROLLER_REVISION: KindInfo = info(
            "ControllerRevision",
            "apps",
            "controllerrevisions",
            "controllerrevision",
            &[],
            true,
            false,
        );
        const DAEMON_SET: KindInfo = info(
            "DaemonSet",
            "apps",
            "daemonsets",
            "daemonset",
            &["ds"],
            true,
            true,
        );
        const JOB: KindInfo = info("Job", "batch", "jobs", "job", &[], true, true);
        const CRON_JOB: KindInfo = info(
            "CronJob",
            "batch",
            "cronjobs",
            "cronjob",
            &["cj"],
            true,
            true,
        );
        match self {
            Kind::Pod => &POD,
            Kind::ConfigMap => &CONFIG_MAP,
            Kind::Secret => &SECRET,
            Kind::Service => &SERVICE,
            Kind::Namespace => &NAMESPACE,
            Kind::Node => &NODE,
            Kind::Event => &EVENT,
            Kind::EventsEvent => &EVENTS_EVENT,
            Kind::PersistentVolumeClaim => &PVC,
            Kind::StatefulSet => &STATEFUL_SET,
            Kind::ControllerRevision => &CONTROLLER_REVISION,
            Kind::DaemonSet => &DAEMON_SET,
            Kind::Job => &JOB,
            Kind::CronJob => &CRON_JOB,
        }
    }

    /// The kind as written in `kind:`.
    pub fn name(self) -> &'static str {
        self.info().kind
    }

    /// `StatefulSet.apps`, `Pod`: the group-qualified kind the API server puts in messages.
    pub fn qualified_kind(self) -> String {
        let info = self.info();
        if info.group.is_empty() {
            info.kind.to_owned()
        } else {
            format!("{}.{}", info.kind, info.group)
        }
    }

    /// `statefulsets.apps`, `pods`: the group-qualified resource.
    pub fn qualified_resource(self) -> String {
        let info = self.info();
        if info.group.is_empty() {
            info.plural.to_owned()
        } else {
            format!("{}.{}", info.plural, info.group)
        }
    }

    /// The kind named by a manifest's `apiVersion` and `kind`.
    pub fn from_type(api_version: &str, kind: &str) -> Result<Kind, KindError> {
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        if let Some(found) = Kind::ALL.iter().copied().find(|k| {
            let info = k.info();
            info.kind == kind && info.group == group && info.version == version
        }) {
            return Ok(found);
        }
        let no_match = || KindError::NoMatch {
            kind: kind.to_owned(),
            api_version: api_version.to_owned(),
        };
        // The kind exists in berth, only not in this version.
        if Kind::ALL.iter().any(|k| k.info().kind == kind) {
            return Err(no_match());
        }
        if KUBERNETES_KINDS_NOT_SERVED.contains(&kind) {
            return Err(KindError::NotServed {
                kind: kind.to_owned(),
                api_version: api_version.to_owned(),
            });
        }
        Err(no_match())
    }

    /// The kind a resource argument names, as kubectl resolves `kubectl get <resource>`:
    /// plural, singular, short name or kind, case-insensitive, optionally qualified with
    /// `.<group>` or `.<version>.<group>`.
    pub fn from_resource(resource: &str) -> Result<Kind, KindError> {
        let lower = resource.to_ascii_lowercase();
        let (name, qualifier) = match lower.split_once('.') {
            Some((name, qualifier)) => (name, Some(qualifier)),
            None => (lower.as_str(), None),
        };
        let names_match = |info: &KindInfo| {
            info.plural == name
                || info.singular == name
                || info.kind.eq_ignore_ascii_case(name)
                || info.short_names.contains(&name)
        };
        let group_matches = |info: &KindInfo| match qualifier {
            None => true,
            Some(q) => q == info.group || q == format!("{}.{}", info.version, info.group),
        };
        Kind::ALL
            .iter()
            .copied()
            .find(|k| names_match(k.info()) && group_matches(k.info()))
            .ok_or_else(|| KindError::UnknownResource {
                resource: resource.to_owned(),
            })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Kubernetes kinds that users may reasonably send and that berth deliberately does not serve;
/// named so the error can say so instead of pretending the kind does not exist.
const KUBERNETES_KINDS_NOT_SERVED: &[&str] = &[
    "Deployment",
    "ReplicaSet",
    "ReplicationController",
    "Ingress",
    "IngressClass",
    "NetworkPolicy",
    "PersistentVolume",
    "StorageClass",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Endpoints",
    "EndpointSlice",
    "LimitRange",
    "ResourceQuota",
    "PriorityClass",
    "CustomResourceDefinition",
    "PodTemplate",
    "Lease",
];

/// A kind or resource name berth cannot resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// No supported kind has this apiVersion and kind (kubectl's words).
    #[error("no matches for kind \"{kind}\" in version \"{api_version}\"")]
    NoMatch {
        /// The kind in the manifest.
        kind: String,
        /// The apiVersion in the manifest.
        api_version: String,
    },
    /// A Kubernetes kind that berth does not serve.
    #[error(
        "no matches for kind \"{kind}\" in version \"{api_version}\": berth does not support {kind} (see docs/compatibility.md)"
    )]
    NotServed {
        /// The kind in the manifest.
        kind: String,
        /// The apiVersion in the manifest.
        api_version: String,
    },
    /// A resource argument that names no supported kind (kubectl's words).
    #[error("the server doesn't have a resource type \"{resource}\"")]
    UnknownResource {
        /// The argument as given.
        resource: String,
    },
}
