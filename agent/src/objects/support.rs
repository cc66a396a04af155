//! What berth supports of what Kubernetes accepts. A known field berth does not implement is
//! an error when ignoring it would change what the workload does (an `nfs` volume, a `grpc`
//! probe), a warning when ignoring it is harmless (a priority class), and nothing at all when
//! it holds the value Kubernetes would default it to (what `kubectl get -o yaml` prints).
//! docs/compatibility.md is the user-facing form of this file.

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{
    Affinity, Container, LifecycleHandler, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec,
    Probe, SeccompProfile, Volume,
};

use super::field::{FieldError, FieldPath, Warning};
use super::object::Object;

/// The topology key berth can spread and separate pods over.
pub const HOSTNAME_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";

/// Volume sources berth supports.
pub const SUPPORTED_VOLUME_SOURCES: &[&str] = &[
    "emptyDir",
    "hostPath",
    "configMap",
    "secret",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
];

/// The outcome of checking an object against what berth supports.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Support {
    /// Fields berth refuses (reported as `Forbidden` field errors).
    pub errors: Vec<FieldError>,
    /// Fields berth accepts and ignores, or handles differently.
    pub warnings: Vec<Warning>,
}

impl Support {
    fn error(&mut self, path: &FieldPath, detail: impl AsRef<str>) {
        self.errors.push(FieldError::forbidden(
            path,
            &format!("not supported by berth: {}", detail.as_ref()),
        ));
    }

    fn warn(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.warnings.push(Warning::new(path, message));
    }
}

/// Checks an object (as the user wrote it, before defaulting) against what berth supports.
pub fn check_support(object: &Object) -> Support {
    let mut support = Support::default();
    let spec = FieldPath::new("spec");
    match object {
        Object::Pod(pod) => {
            if let Some(pod_spec) = pod.spec.as_ref() {
                check_pod_spec(pod_spec, &spec, &mut support);
            }
        }
        Object::Service(service) => {
            if let Some(service_spec) = service.spec.as_ref() {
                check_service(service_spec, &spec, &mut support);
            }
        }
        Object::Secret(secret) => match secret.type_.as_deref().unwrap_or("") {
            "kubernetes.io/service-account-token" | "bootstrap.kubernetes.io/token" => support.error(
                &FieldPath::new("type"),
                format!("{} secrets (berth has no service accounts or bootstrap tokens)", secret.type_.as_deref().unwrap_or("")),
            ),
            "kubernetes.io/dockercfg" => support.warn(
                &FieldPath::new("type"),
                "legacy .dockercfg secrets are stored but not used for image pulls; use kubernetes.io/dockerconfigjson",
            ),
            _ => {}
        },
        Object::PersistentVolumeClaim(claim) => {
            if let Some(claim_spec) = claim.spec.as_ref() {
                check_claim_spec(claim_spec, &spec, &mut support);
            }
        }
        Object::StatefulSet(set) => {
            if let Some(set_spec) = set.spec.as_ref() {
                check_template(&set_spec.template, &spec.child("template"), &mut support);
                for (i, claim) in set_spec.volume_claim_templates.iter().flatten().enumerate() {
                    if let Some(claim_spec) = claim.spec.as_ref() {
                        check_claim_spec(claim_spec, &spec.child("volumeClaimTemplates").index(i).child("spec"), &mut support);
                    }
                }
            }
        }
        Object::DaemonSet(set) => {
            if let Some(set_spec) = set.spec.as_ref() {
                check_template(&set_spec.template, &spec.child("template"), &mut support);
            }
        }
        Object::Job(job) => {
            if let Some(job_spec) = job.spec.as_ref() {
                check_job_spec(job_spec, &spec, &mut support);
            }
        }
        Object::CronJob(cron_job) => {
            if let Some(job_spec) = cron_job.spec.as_ref().and_then(|s| s.job_template.spec.as_ref()) {
                check_job_spec(job_spec, &spec.children(&["jobTemplate", "spec"]), &mut support);
            }
        }
        Object::ConfigMap(_)
        | Object::Namespace(_)
        | Object::Node(_)
        | Object::Event(_)
        | Object::EventsEvent(_)
        | Object::ControllerRevision(_) => {}
    }
    support
}

fn check_template(template: &PodTemplateSpec, path: &FieldPath, support: &mut Support) {
    if let Some(spec) = template.spec.as_ref() {
        check_pod_spec(spec, &path.child("spec"), support);
    }
}

fn check_job_spec(spec: &JobSpec, path: &FieldPath, support: &mut Support) {
    if spec.success_policy.is_some() {
        support.error(&path.child("successPolicy"), "Job success policies");
    }
    if spec.backoff_limit_per_index.is_some() {
        support.error(
            &path.child("backoffLimitPerIndex"),
            "per-index backoff limits",
        );
    }
    if spec.max_failed_indexes.is_some() {
        support.error(&path.child("maxFailedIndexes"), "per-index backoff limits");
    }
    if let Some(manager) = spec.managed_by.as_deref()
        && manager != "kubernetes.io/job-controller"
    {
        support.error(
            &path.child("managedBy"),
            "Jobs managed by an external controller",
        );
    }
    check_template(&spec.template, &path.child("template"), support);
}

fn check_pod_spec(spec: &PodSpec, path: &FieldPath, support: &mut Support) {
    if let Some(scheduler) = spec.scheduler_name.as_deref()
        && !scheduler.is_empty()
        && scheduler != "default-scheduler"
    {
        support.error(&path.child("schedulerName"), "other schedulers; berth places every pod itself (use \"default-scheduler\" or leave it out)");
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|c| !c.is_empty())
    {
        support.error(&path.child("ephemeralContainers"), "ephemeral containers");
    }
    for (set, field, what) in [
        (
            spec.share_process_namespace == Some(true),
            "shareProcessNamespace",
            "a shared process namespace",
        ),
        (
            spec.host_pid == Some(true),
            "hostPID",
            "the host's PID namespace",
        ),
        (
            spec.host_ipc == Some(true),
            "hostIPC",
            "the host's IPC namespace",
        ),
        (
            spec.host_users == Some(false),
            "hostUsers",
            "user namespaces",
        ),
        (
            spec.set_hostname_as_fqdn == Some(true),
            "setHostnameAsFQDN",
            "setting the hostname to the FQDN",
        ),
        (
            spec.runtime_class_name.is_some(),
            "runtimeClassName",
            "runtime classes",
        ),
        (
            spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()),
            "resourceClaims",
            "dynamic resource claims",
        ),
        (
            spec.resources.is_some(),
            "resources",
            "pod-level resources (set them per container)",
        ),
        (
            spec.readiness_gates.as_ref().is_some_and(|g| !g.is_empty()),
            "readinessGates",
            "readiness gates",
        ),
        (
            spec.scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty()),
            "schedulingGates",
            "scheduling gates",
        ),
        (
            spec.hostname_override.is_some(),
            "hostnameOverride",
            "hostname overrides",
        ),
    ] {
        if set {
            support.error(&path.child(field), what);
        }
    }
    if let Some(os) = spec.os.as_ref()
        && os.name != "linux"
    {
        support.error(
            &path.children(&["os", "name"]),
            format!("{:?} pods; berth runs Linux containers", os.name),
        );
    }
    for (set, field) in [
        (
            spec.priority_class_name
                .as_deref()
                .is_some_and(|p| !p.is_empty()),
            "priorityClassName",
        ),
        (spec.priority.is_some(), "priority"),
        (spec.preemption_policy.is_some(), "preemptionPolicy"),
    ] {
        if set {
            support.warn(
                &path.child(field),
                "ignored: berth has no pod priority or preemption",
            );
        }
    }
    if spec.overhead.is_some() {
        support.warn(
            &path.child("overhead"),
            "ignored: berth does not account pod overhead",
        );
    }
    for (value, field) in [
        (spec.service_account_name.as_deref(), "serviceAccountName"),
        (spec.service_account.as_deref(), "serviceAccount"),
    ] {
        if let Some(account) = value
            && !account.is_empty()
            && account != "default"
        {
            support.warn(
                &path.child(field),
                "ignored: berth has no service accounts and mounts no token",
            );
        }
    }
    if spec.automount_service_account_token == Some(true) {
        support.warn(
            &path.child("automountServiceAccountToken"),
            "ignored: berth mounts no service account token",
        );
    }
    // `enableServiceLinks` is silent either way: `true` is the default every stored Pod carries
    // (a warning would repeat on every update), and Kubernetes injects no variables for
    // headless services, which is what every berth service is.
    if let Some(affinity) = spec.affinity.as_ref() {
        check_affinity(affinity, &path.child("affinity"), support);
    }
    for (i, constraint) in spec
        .topology_spread_constraints
        .iter()
        .flatten()
        .enumerate()
    {
        let p = path.child("topologySpreadConstraints").index(i);
        if constraint.topology_key != HOSTNAME_TOPOLOGY_KEY {
            support.error(
                &p.child("topologyKey"),
                format!(
                    "spreading over {:?}; only {HOSTNAME_TOPOLOGY_KEY:?} is supported",
                    constraint.topology_key
                ),
            );
        }
        if constraint.when_unsatisfiable == "ScheduleAnyway" {
            support.warn(
                &p,
                "ignored: berth honours only DoNotSchedule spread constraints",
            );
        }
        if constraint.match_label_keys.is_some() || constraint.min_domains.is_some() {
            support.warn(&p, "ignored: matchLabelKeys and minDomains");
        }
    }
    if let Some(context) = spec.security_context.as_ref() {
        let p = path.child("securityContext");
        if context.sysctls.as_ref().is_some_and(|s| !s.is_empty()) {
            support.error(&p.child("sysctls"), "pod sysctls");
        }
        if let Some(profile) = context.seccomp_profile.as_ref() {
            check_seccomp(profile, &p.child("seccompProfile"), support);
        }
        for (set, field) in [
            (context.se_linux_options.is_some(), "seLinuxOptions"),
            (
                context.se_linux_change_policy.is_some(),
                "seLinuxChangePolicy",
            ),
            (context.app_armor_profile.is_some(), "appArmorProfile"),
            (context.windows_options.is_some(), "windowsOptions"),
            (
                context.fs_group_change_policy.is_some(),
                "fsGroupChangePolicy",
            ),
            (
                context.supplemental_groups_policy.as_deref() == Some("Strict"),
                "supplementalGroupsPolicy",
            ),
        ] {
            if set {
                support.warn(&p.child(field), "ignored by berth");
            }
        }
    }
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        check_volume(volume, &path.child("volumes").index(i), support);
    }
    for (i, container) in spec.containers.iter().enumerate() {
        check_container(container, &path.child("containers").index(i), support);
    }
    for (i, container) in spec.init_containers.iter().flatten().enumerate() {
        let p = path.child("initContainers").index(i);
        if container.restart_policy.as_deref() == Some("Always") {
            support.error(
                &p.child("restartPolicy"),
                "sidecar containers (init containers with restartPolicy: Always) yet",
            );
        }
        check_container(container, &p, support);
    }
}

fn check_affinity(affinity: &Affinity, path: &FieldPath, support: &mut Support) {
    if let Some(node) = affinity.node_affinity.as_ref()
        && node
            .preferred_during_scheduling_ignored_during_execution
            .is_some()
    {
        support.warn(
            &path.children(&[
                "nodeAffinity",
                "preferredDuringSchedulingIgnoredDuringExecution",
            ]),
            "ignored: berth honours only required node affinity",
        );
    }
    if let Some(pod) = affinity.pod_affinity.as_ref() {
        if pod
            .required_during_scheduling_ignored_during_execution
            .is_some()
        {
            support.error(
                &path.children(&["podAffinity", "requiredDuringSchedulingIgnoredDuringExecution"]),
                "required pod affinity (only podAntiAffinity on kubernetes.io/hostname is supported)",
            );
        }
        if pod
            .preferred_during_scheduling_ignored_during_execution
            .is_some()
        {
            support.warn(
                &path.children(&[
                    "podAffinity",
                    "preferredDuringSchedulingIgnoredDuringExecution",
                ]),
                "ignored: berth honours no preferred pod affinity",
            );
        }
    }
    if let Some(anti) = affinity.pod_anti_affinity.as_ref() {
        let required_path = path.children(&[
            "podAntiAffinity",
            "requiredDuringSchedulingIgnoredDuringExecution",
        ]);
        for (i, term) in anti
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            if term.topology_key != HOSTNAME_TOPOLOGY_KEY {
                support.error(
                    &required_path.index(i).child("topologyKey"),
                    format!(
                        "anti-affinity over {:?}; only {HOSTNAME_TOPOLOGY_KEY:?} is supported",
                        term.topology_key
                    ),
                );
            }
            if term.namespace_selector.is_some()
                || term.match_label_keys.is_some()
                || term.mismatch_label_keys.is_some()
            {
                support.error(&required_path.index(i), "namespaceSelector, matchLabelKeys and mismatchLabelKeys in anti-affinity terms");
            }
        }
        if anti
            .preferred_during_scheduling_ignored_during_execution
            .is_some()
        {
            support.warn(
                &path.children(&[
                    "podAntiAffinity",
                    "preferredDuringSchedulingIgnoredDuringExecution",
                ]),
                "ignored: berth honours only required pod anti-affinity",
            );
        }
    }
}

fn check_seccomp(profile: &SeccompProfile, path: &FieldPath, support: &mut Support) {
    if profile.type_ == "Localhost" {
        support.error(
            &path.child("type"),
            "Localhost seccomp profiles (use RuntimeDefault or Unconfined)",
        );
    }
}

fn check_volume(volume: &Volume, path: &FieldPath, support: &mut Support) {
    let sources: Vec<String> = match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(map)) => {
            map.keys().filter(|k| *k != "name").cloned().collect()
        }
        _ => Vec::new(),
    };
    for source in sources
        .iter()
        .filter(|s| !SUPPORTED_VOLUME_SOURCES.contains(&s.as_str()))
    {
        support.error(
            &path.child(source),
            format!(
                "{source} volumes (supported: {})",
                SUPPORTED_VOLUME_SOURCES.join(", ")
            ),
        );
    }
    if let Some(medium) = volume.empty_dir.as_ref().and_then(|e| e.medium.as_deref())
        && !medium.is_empty()
        && medium != "Memory"
    {
        support.error(
            &path.children(&["emptyDir", "medium"]),
            format!("emptyDir medium {medium:?} (supported: \"\", \"Memory\")"),
        );
    }
    for (i, projection) in volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .enumerate()
    {
        let p = path.child("projected").child("sources").index(i);
        for (set, field) in [
            (
                projection.service_account_token.is_some(),
                "serviceAccountToken",
            ),
            (
                projection.cluster_trust_bundle.is_some(),
                "clusterTrustBundle",
            ),
            (projection.pod_certificate.is_some(), "podCertificate"),
        ] {
            if set {
                support.error(
                    &p.child(field),
                    format!("{field} projections (supported: configMap, secret, downwardAPI)"),
                );
            }
        }
    }
}

fn check_probe(probe: Option<&Probe>, path: &FieldPath, support: &mut Support) {
    if let Some(probe) = probe
        && probe.grpc.is_some()
    {
        support.error(
            &path.child("grpc"),
            "gRPC probes (use exec, httpGet or tcpSocket)",
        );
    }
}

fn check_handler(handler: Option<&LifecycleHandler>, path: &FieldPath, support: &mut Support) {
    if let Some(handler) = handler
        && handler.tcp_socket.is_some()
    {
        support.error(
            &path.child("tcpSocket"),
            "tcpSocket lifecycle handlers (use exec, httpGet or sleep)",
        );
    }
}

fn check_container(container: &Container, path: &FieldPath, support: &mut Support) {
    check_probe(
        container.liveness_probe.as_ref(),
        &path.child("livenessProbe"),
        support,
    );
    check_probe(
        container.readiness_probe.as_ref(),
        &path.child("readinessProbe"),
        support,
    );
    check_probe(
        container.startup_probe.as_ref(),
        &path.child("startupProbe"),
        support,
    );
    if let Some(lifecycle) = container.lifecycle.as_ref() {
        let p = path.child("lifecycle");
        check_handler(
            lifecycle.post_start.as_ref(),
            &p.child("postStart"),
            support,
        );
        check_handler(lifecycle.pre_stop.as_ref(), &p.child("preStop"), support);
        if lifecycle.stop_signal.is_some() {
            support.error(&p.child("stopSignal"), "custom stop signals");
        }
    }
    if container.restart_policy_rules.is_some() {
        support.error(&path.child("restartPolicyRules"), "container restart rules");
    }
    if container
        .volume_devices
        .as_ref()
        .is_some_and(|d| !d.is_empty())
    {
        support.error(&path.child("volumeDevices"), "raw block devices");
    }
    if container.resize_policy.is_some() {
        support.warn(
            &path.child("resizePolicy"),
            "ignored: berth restarts a pod to change its resources",
        );
    }
    if let Some(resources) = container.resources.as_ref() {
        let p = path.child("resources");
        if resources.claims.as_ref().is_some_and(|c| !c.is_empty()) {
            support.error(&p.child("claims"), "dynamic resource claims");
        }
        for (kind, map) in [
            ("limits", resources.limits.as_ref()),
            ("requests", resources.requests.as_ref()),
        ] {
            for name in map.into_iter().flat_map(|m| m.keys()) {
                match name.as_str() {
                    "cpu" | "memory" => {}
                    "ephemeral-storage" => support.warn(
                        &p.child(kind).key(name),
                        "ignored: berth does not limit ephemeral storage",
                    ),
                    other => support.error(
                        &p.child(kind).key(name),
                        format!("the resource {other:?} (supported: cpu, memory)"),
                    ),
                }
            }
        }
    }
    for (i, env) in container.env.iter().flatten().enumerate() {
        if env
            .value_from
            .as_ref()
            .is_some_and(|v| v.file_key_ref.is_some())
        {
            support.error(
                &path
                    .child("env")
                    .index(i)
                    .children(&["valueFrom", "fileKeyRef"]),
                "environment variables from files",
            );
        }
    }
    if let Some(context) = container.security_context.as_ref() {
        let p = path.child("securityContext");
        if context.proc_mount.as_deref() == Some("Unmasked") {
            support.error(&p.child("procMount"), "unmasked /proc");
        }
        if let Some(profile) = context.seccomp_profile.as_ref() {
            check_seccomp(profile, &p.child("seccompProfile"), support);
        }
        for (set, field) in [
            (context.se_linux_options.is_some(), "seLinuxOptions"),
            (context.app_armor_profile.is_some(), "appArmorProfile"),
            (context.windows_options.is_some(), "windowsOptions"),
        ] {
            if set {
                support.warn(&p.child(field), "ignored by berth");
            }
        }
    }
}

fn check_service(
    spec: &k8s_openapi::api::core::v1::ServiceSpec,
    path: &FieldPath,
    support: &mut Support,
) {
    match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "" | "ClusterIP" => {}
        other => support.error(
            &path.child("type"),
            format!("{other} services; berth has no service proxy (use a headless ClusterIP service and DNS)"),
        ),
    }
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    if !cluster_ip.is_empty() && cluster_ip != "None" {
        support.error(
            &path.child("clusterIP"),
            "virtual service IPs; use clusterIP: None (headless)",
        );
    } else if cluster_ip.is_empty()
        && matches!(spec.type_.as_deref(), None | Some("") | Some("ClusterIP"))
    {
        support.warn(
            &path.child("clusterIP"),
            "berth has no virtual service IPs: this service is answered as headless (its DNS name returns the ready pods' addresses)",
        );
    }
    if spec
        .cluster_ips
        .as_ref()
        .is_some_and(|ips| ips.iter().any(|ip| ip != "None"))
    {
        support.error(
            &path.child("clusterIPs"),
            "virtual service IPs; use clusterIP: None (headless)",
        );
    }
    for (set, field) in [
        (
            spec.external_ips
                .as_ref()
                .is_some_and(|ips| !ips.is_empty()),
            "externalIPs",
        ),
        (spec.external_name.is_some(), "externalName"),
        (spec.load_balancer_ip.is_some(), "loadBalancerIP"),
        (
            spec.load_balancer_source_ranges.is_some(),
            "loadBalancerSourceRanges",
        ),
        (spec.load_balancer_class.is_some(), "loadBalancerClass"),
        (spec.health_check_node_port.is_some(), "healthCheckNodePort"),
    ] {
        if set {
            support.error(
                &path.child(field),
                "external service traffic; berth has no service proxy",
            );
        }
    }
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        support.warn(
            &path.child("sessionAffinity"),
            "ignored: without a service proxy there is no session affinity",
        );
    }
    if spec.internal_traffic_policy.as_deref() == Some("Local") {
        support.warn(
            &path.child("internalTrafficPolicy"),
            "ignored: DNS answers with every ready pod",
        );
    }
    if spec.traffic_distribution.is_some() {
        support.warn(
            &path.child("trafficDistribution"),
            "ignored: DNS answers with every ready pod",
        );
    }
    for (i, port) in spec.ports.iter().flatten().enumerate() {
        if port.node_port.is_some_and(|p| p != 0) {
            support.error(
                &path.child("ports").index(i).child("nodePort"),
                "node ports; berth has no service proxy",
            );
        }
    }
    if spec.selector.is_none() {
        support.warn(
            &path.child("selector"),
            "a service without a selector gets no DNS records in berth (no manual Endpoints)",
        );
    }
}

fn check_claim_spec(spec: &PersistentVolumeClaimSpec, path: &FieldPath, support: &mut Support) {
    for (set, field, what) in [
        (
            spec.selector.is_some(),
            "selector",
            "binding claims to volumes by selector; a claim is a directory on its pod's node",
        ),
        (
            spec.data_source.is_some(),
            "dataSource",
            "claims populated from a data source",
        ),
        (
            spec.data_source_ref.is_some(),
            "dataSourceRef",
            "claims populated from a data source",
        ),
        (
            spec.volume_name.is_some(),
            "volumeName",
            "binding a claim to a named PersistentVolume",
        ),
        (
            spec.volume_mode.as_deref() == Some("Block"),
            "volumeMode",
            "raw block claims",
        ),
    ] {
        if set {
            support.error(&path.child(field), what);
        }
    }
    for mode in spec.access_modes.iter().flatten() {
        if mode == "ReadWriteMany" || mode == "ReadOnlyMany" {
            support.warn(
                &path.child("accessModes"),
                format!("{mode} is accepted, but a claim is a directory on one node: pods on other nodes cannot use it"),
            );
        }
    }
    if spec.resources.as_ref().is_some_and(|r| r.limits.is_some()) {
        support.warn(
            &path.children(&["resources", "limits"]),
            "ignored: claim sizes are not enforced",
        );
    }
    if spec.volume_attributes_class_name.is_some() {
        support.warn(&path.child("volumeAttributesClassName"), "ignored by berth");
    }
}
