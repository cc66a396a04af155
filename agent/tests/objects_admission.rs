//! Decoding, berth's support policy, defaulting, validation and update validation, each
//! table-driven over manifests a user would write, with the API server's exact messages.

use std::path::Path;

use berth_agent::objects::parse::{self, Origin};
use berth_agent::objects::strategy::fill_namespace;
use berth_agent::objects::{
    AdmitError, Admitted, CreateContext, Object, admit_create, admit_update,
};
use serde_json::{Value, json};

const UID: &str = "6f1c2a9e-3b7d-4c1e-9a2f-0d5e8b7c4a31";

fn context() -> CreateContext {
    CreateContext {
        uid: UID.to_owned(),
        now: "2024-06-01T12:00:00Z".parse().unwrap(),
        random: 0,
    }
}

fn yaml(text: &str) -> Value {
    parse::parse_text(Origin::Inline("test".into()), text)
        .unwrap()
        .remove(0)
        .value
}

/// A copy of `base` with each JSON pointer set to a value (`Value::Null` removes it);
/// missing objects on the way are created.
fn edit(base: &Value, edits: &[(&str, Value)]) -> Value {
    let mut value = base.clone();
    for (pointer, new) in edits {
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        let (last, parents) = parts.split_last().unwrap();
        let mut node = &mut value;
        for part in parents {
            node = match node {
                Value::Array(items) => &mut items[part.parse::<usize>().unwrap()],
                Value::Object(map) => map.entry(part.to_string()).or_insert_with(|| json!({})),
                _ => panic!("cannot descend into {part} of {pointer}"),
            };
        }
        match node {
            Value::Array(items) => items[last.parse::<usize>().unwrap()] = new.clone(),
            Value::Object(map) if new.is_null() => {
                map.remove(*last);
            }
            Value::Object(map) => {
                map.insert(last.to_string(), new.clone());
            }
            _ => panic!("cannot set {pointer}"),
        }
    }
    value
}

fn create(manifest: &Value) -> Result<Admitted, AdmitError> {
    admit_create(manifest, &context())
}

fn create_error(manifest: &Value) -> String {
    match create(manifest) {
        Ok(admitted) => panic!("expected an error, admitted {}", admitted.object.to_value()),
        Err(error) => error.to_string(),
    }
}

fn pod() -> Value {
    yaml(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  containers:
  - name: app
    image: nginx:1.27
    ports: [{name: http, containerPort: 80}]
    volumeMounts: [{name: cache, mountPath: /cache}]
  volumes:
  - name: cache
    emptyDir: {}
"#,
    )
}

fn stateful_set() -> Value {
    yaml(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: default}
spec:
  serviceName: web
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: nginx:1.27
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#,
    )
}

fn daemon_set() -> Value {
    yaml(
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "busybox:1.36"}]
"#,
    )
}

fn job() -> Value {
    yaml(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: default}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: "app:1"}]
"#,
    )
}

fn cron_job() -> Value {
    yaml(
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: backup, namespace: default}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: dump, image: "postgres:16"}]
"#,
    )
}

fn service() -> Value {
    yaml(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 80}]
"#,
    )
}

fn claim() -> Value {
    yaml(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Gi}}
"#,
    )
}

fn config_map() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"}, "data": {"mode": "on"}})
}

fn secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"}, "data": {"password": "czNjcmV0"}})
}

#[test]
fn well_formed_objects_of_every_kind_are_admitted_without_warnings() {
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}});
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}});
    let event = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-0.17d", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "web-0"}, "reason": "Started"});
    let revision = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "web-5d8f7c", "namespace": "default"}, "revision": 1, "data": {"spec": {}}});
    for manifest in [
        pod(),
        stateful_set(),
        daemon_set(),
        job(),
        cron_job(),
        service(),
        claim(),
        config_map(),
        secret(),
        namespace,
        node,
        event,
        revision,
    ] {
        let admitted = create(&manifest).unwrap_or_else(|e| panic!("{e}"));
        assert!(admitted.warnings.is_empty(), "{:?}", admitted.warnings);
    }
}

#[test]
fn unknown_fields_are_rejected_with_their_full_paths() {
    let cases: &[(Value, &str)] = &[
        (
            edit(&pod(), &[("/spec/containers/0/imagee", json!("nginx"))]),
            r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].imagee""#,
        ),
        (
            edit(
                &stateful_set(),
                &[(
                    "/spec/template/spec/containers/0/ports",
                    json!([{"containerPort": 80, "hostport": 80}]),
                )],
            ),
            r#"StatefulSet in version "apps/v1" cannot be handled as a StatefulSet: strict decoding error: unknown field "spec.template.spec.containers[0].ports[0].hostport""#,
        ),
        (
            edit(
                &pod(),
                &[
                    ("/metadata/label", json!({"a": "b"})),
                    ("/spec/volumes/0/emptyDir/size", json!("1Gi")),
                ],
            ),
            r#"Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "metadata.label", unknown field "spec.volumes[0].emptyDir.size""#,
        ),
        (
            edit(
                &cron_job(),
                &[(
                    "/spec/jobTemplate/spec/template/spec/containers/0/env",
                    json!([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optionl": true}}}]),
                )],
            ),
            r#"CronJob in version "batch/v1" cannot be handled as a CronJob: strict decoding error: unknown field "spec.jobTemplate.spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.optionl""#,
        ),
        (
            edit(
                &pod(),
                &[("/spec/containers/0/ports/0/containerPort", json!("http"))],
            ),
            r#"Pod in version "v1" cannot be handled as a Pod: spec.containers[0].ports[0].containerPort: invalid type: string "http", expected i32"#,
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/env",
                    json!([{"name": "PORT", "value": 8080}]),
                )],
            ),
            r#"Pod in version "v1" cannot be handled as a Pod: spec.containers[0].env[0].value: invalid type: integer `8080`, expected a string"#,
        ),
    ];
    for (manifest, expected) in cases {
        assert_eq!(create_error(manifest), *expected);
    }
}

#[test]
fn yaml_1_1_scalars_keep_the_meaning_kubectl_gives_them() {
    let manifest = yaml(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  containers:
  - name: app
    image: nginx:1.27
    stdin: yes
    volumeMounts: [{name: config, mountPath: /etc/app, readOnly: on}]
  volumes:
  - name: config
    configMap: {name: app, defaultMode: 0440}
"#,
    );
    let value = create(&manifest).unwrap().object.to_value();
    assert_eq!(
        value["spec"]["volumes"][0]["configMap"]["defaultMode"],
        json!(0o440)
    );
    assert_eq!(value["spec"]["containers"][0]["stdin"], json!(true));
    assert_eq!(
        value["spec"]["containers"][0]["volumeMounts"][0]["readOnly"],
        json!(true)
    );
}

#[test]
fn unsupported_fields_are_errors_when_ignoring_them_would_change_behaviour() {
    let cases: &[(Value, &str)] = &[
        (
            edit(
                &pod(),
                &[(
                    "/spec/volumes/0",
                    json!({"name": "cache", "nfs": {"server": "nas", "path": "/export"}}),
                )],
            ),
            "spec.volumes[0].nfs: Forbidden: not supported by berth: nfs volumes (supported: emptyDir, hostPath, configMap, secret, persistentVolumeClaim, projected, downwardAPI)",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/livenessProbe",
                    json!({"grpc": {"port": 9000}}),
                )],
            ),
            "spec.containers[0].livenessProbe.grpc: Forbidden: not supported by berth: gRPC probes (use exec, httpGet or tcpSocket)",
        ),
        (
            edit(&pod(), &[("/spec/schedulerName", json!("volcano"))]),
            "spec.schedulerName: Forbidden: not supported by berth: other schedulers; berth places every pod itself (use \"default-scheduler\" or leave it out)",
        ),
        (
            edit(&pod(), &[("/spec/shareProcessNamespace", json!(true))]),
            "spec.shareProcessNamespace: Forbidden: not supported by berth: a shared process namespace",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/resourceClaims",
                    json!([{"name": "gpu", "resourceClaimName": "gpu"}]),
                )],
            ),
            "spec.resourceClaims: Forbidden: not supported by berth: dynamic resource claims",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/initContainers",
                    json!([{"name": "proxy", "image": "envoy:1", "restartPolicy": "Always"}]),
                )],
            ),
            "spec.initContainers[0].restartPolicy: Forbidden: not supported by berth: sidecar containers (init containers with restartPolicy: Always) yet",
        ),
        (
            edit(
                &stateful_set(),
                &[(
                    "/spec/template/spec/affinity",
                    json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
                )],
            ),
            "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Forbidden: not supported by berth: anti-affinity over \"topology.kubernetes.io/zone\"; only \"kubernetes.io/hostname\" is supported",
        ),
        (
            edit(
                &service(),
                &[
                    ("/spec/type", json!("NodePort")),
                    ("/spec/clusterIP", Value::Null),
                ],
            ),
            "spec.type: Forbidden: not supported by berth: NodePort services; berth has no service proxy (use a headless ClusterIP service and DNS)",
        ),
        (
            edit(
                &claim(),
                &[(
                    "/spec/dataSource",
                    json!({"kind": "VolumeSnapshot", "name": "snap", "apiGroup": "snapshot.storage.k8s.io"}),
                )],
            ),
            "spec.dataSource: Forbidden: not supported by berth: claims populated from a data source",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"limits": {"nvidia.com/gpu": 1}}),
                )],
            ),
            "spec.containers[0].resources.limits[nvidia.com/gpu]: Forbidden: not supported by berth: the resource \"nvidia.com/gpu\" (supported: cpu, memory)",
        ),
    ];
    for (manifest, expected) in cases {
        let error = create_error(manifest);
        assert!(
            error.ends_with(expected),
            "\n got: {error}\nwant: ...{expected}"
        );
    }
}

#[test]
fn harmless_unsupported_fields_are_warnings_and_kubectl_defaults_are_silent() {
    let warned: &[(Value, &str)] = &[
        (
            edit(&pod(), &[("/spec/priorityClassName", json!("high"))]),
            "spec.priorityClassName: ignored: berth has no pod priority or preemption",
        ),
        (
            edit(&pod(), &[("/spec/serviceAccountName", json!("builder"))]),
            "spec.serviceAccountName: ignored: berth has no service accounts and mounts no token",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/securityContext",
                    json!({"seLinuxOptions": {"level": "s0:c123"}}),
                )],
            ),
            "spec.securityContext.seLinuxOptions: ignored by berth",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/securityContext",
                    json!({"appArmorProfile": {"type": "RuntimeDefault"}}),
                )],
            ),
            "spec.containers[0].securityContext.appArmorProfile: ignored by berth",
        ),
        (
            edit(
                &stateful_set(),
                &[(
                    "/spec/template/spec/affinity",
                    json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}),
                )],
            ),
            "spec.template.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution: ignored: berth honours only required node affinity",
        ),
        (
            edit(&service(), &[("/spec/clusterIP", Value::Null)]),
            "spec.clusterIP: berth has no virtual service IPs: this service is answered as headless (its DNS name returns the ready pods' addresses)",
        ),
    ];
    for (manifest, expected) in warned {
        let admitted = create(manifest).unwrap_or_else(|e| panic!("{e}"));
        let warnings: Vec<String> = admitted.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings, vec![expected.to_string()]);
    }
    // What `kubectl get pod -o yaml` prints for a plain pod is accepted without a word.
    let exported = edit(
        &pod(),
        &[
            ("/spec/schedulerName", json!("default-scheduler")),
            ("/spec/securityContext", json!({})),
            ("/spec/dnsPolicy", json!("ClusterFirst")),
            ("/spec/restartPolicy", json!("Always")),
            ("/spec/terminationGracePeriodSeconds", json!(30)),
            (
                "/spec/containers/0/terminationMessagePath",
                json!("/dev/termination-log"),
            ),
            ("/spec/containers/0/terminationMessagePolicy", json!("File")),
            ("/spec/containers/0/imagePullPolicy", json!("IfNotPresent")),
            ("/spec/containers/0/resources", json!({})),
            ("/spec/serviceAccountName", json!("default")),
            ("/spec/enableServiceLinks", json!(true)),
            ("/status", json!({"phase": "Running", "podIP": "10.0.0.5"})),
        ],
    );
    let admitted = create(&exported).unwrap();
    assert!(admitted.warnings.is_empty(), "{:?}", admitted.warnings);
}

/// (manifest, JSON pointer, value after admission)
type DefaultCase = (Value, &'static str, Value);

#[test]
fn defaults_are_the_api_servers() {
    let cases: Vec<DefaultCase> = vec![
        (pod(), "/spec/restartPolicy", json!("Always")),
        (pod(), "/spec/dnsPolicy", json!("ClusterFirst")),
        (pod(), "/spec/terminationGracePeriodSeconds", json!(30)),
        (pod(), "/spec/schedulerName", json!("default-scheduler")),
        (pod(), "/spec/enableServiceLinks", json!(true)),
        (pod(), "/spec/securityContext", json!({})),
        (
            pod(),
            "/spec/containers/0/imagePullPolicy",
            json!("IfNotPresent"),
        ),
        (
            edit(&pod(), &[("/spec/containers/0/image", json!("nginx"))]),
            "/spec/containers/0/imagePullPolicy",
            json!("Always"),
        ),
        (
            edit(
                &pod(),
                &[("/spec/containers/0/image", json!("nginx:latest"))],
            ),
            "/spec/containers/0/imagePullPolicy",
            json!("Always"),
        ),
        (
            edit(
                &pod(),
                &[("/spec/containers/0/image", json!("registry:5000/nginx"))],
            ),
            "/spec/containers/0/imagePullPolicy",
            json!("Always"),
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/image",
                    json!(
                        "nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"
                    ),
                )],
            ),
            "/spec/containers/0/imagePullPolicy",
            json!("IfNotPresent"),
        ),
        (
            pod(),
            "/spec/containers/0/terminationMessagePath",
            json!("/dev/termination-log"),
        ),
        (
            pod(),
            "/spec/containers/0/terminationMessagePolicy",
            json!("File"),
        ),
        (pod(), "/spec/containers/0/ports/0/protocol", json!("TCP")),
        (pod(), "/status/phase", json!("Pending")),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
                )],
            ),
            "/spec/containers/0/resources/requests",
            json!({"cpu": "1", "memory": "1Gi"}),
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/readinessProbe",
                    json!({"httpGet": {"port": 80}}),
                )],
            ),
            "/spec/containers/0/readinessProbe",
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}),
        ),
        (
            edit(&pod(), &[("/spec/volumes/0", json!({"name": "cache"}))]),
            "/spec/volumes/0",
            json!({"name": "cache", "emptyDir": {}}),
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/volumes/0",
                    json!({"name": "cache", "secret": {"secretName": "s"}}),
                )],
            ),
            "/spec/volumes/0/secret/defaultMode",
            json!(420),
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/env",
                    json!([{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]),
                )],
            ),
            "/spec/containers/0/env/0/valueFrom/fieldRef/apiVersion",
            json!("v1"),
        ),
        (
            edit(&pod(), &[("/spec/hostNetwork", json!(true))]),
            "/spec/containers/0/ports/0/hostPort",
            json!(80),
        ),
        (service(), "/spec/type", json!("ClusterIP")),
        (service(), "/spec/sessionAffinity", json!("None")),
        (
            service(),
            "/spec/ports/0",
            json!({"name": "http", "port": 80, "protocol": "TCP", "targetPort": 80}),
        ),
        (service(), "/spec/internalTrafficPolicy", json!("Cluster")),
        (
            stateful_set(),
            "/spec/podManagementPolicy",
            json!("OrderedReady"),
        ),
        (
            stateful_set(),
            "/spec/updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        ),
        (stateful_set(), "/spec/revisionHistoryLimit", json!(10)),
        (
            stateful_set(),
            "/spec/persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        ),
        (
            edit(&stateful_set(), &[("/spec/replicas", Value::Null)]),
            "/spec/replicas",
            json!(1),
        ),
        (
            stateful_set(),
            "/spec/template/spec/restartPolicy",
            json!("Always"),
        ),
        (
            stateful_set(),
            "/spec/volumeClaimTemplates/0/spec/volumeMode",
            json!("Filesystem"),
        ),
        (
            edit(
                &stateful_set(),
                &[("/spec/updateStrategy", json!({"type": "OnDelete"}))],
            ),
            "/spec/updateStrategy",
            json!({"type": "OnDelete"}),
        ),
        (
            daemon_set(),
            "/spec/updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        ),
        (daemon_set(), "/spec/revisionHistoryLimit", json!(10)),
        (job(), "/spec/completions", json!(1)),
        (job(), "/spec/parallelism", json!(1)),
        (
            edit(&job(), &[("/spec/completions", json!(5))]),
            "/spec/parallelism",
            json!(1),
        ),
        (
            edit(&job(), &[("/spec/parallelism", json!(3))]),
            "/spec/completions",
            Value::Null,
        ),
        (job(), "/spec/backoffLimit", json!(6)),
        (job(), "/spec/completionMode", json!("NonIndexed")),
        (job(), "/spec/suspend", json!(false)),
        (
            job(),
            "/spec/podReplacementPolicy",
            json!("TerminatingOrFailed"),
        ),
        (
            job(),
            "/spec/selector",
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": UID}}),
        ),
        (
            job(),
            "/spec/template/metadata/labels",
            json!({"batch.kubernetes.io/controller-uid": UID, "batch.kubernetes.io/job-name": "migrate", "controller-uid": UID, "job-name": "migrate"}),
        ),
        (
            edit(
                &job(),
                &[(
                    "/spec/podFailurePolicy",
                    json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}),
                )],
            ),
            "/spec/podReplacementPolicy",
            json!("Failed"),
        ),
        (
            edit(
                &job(),
                &[(
                    "/spec/podFailurePolicy",
                    json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}),
                )],
            ),
            "/spec/podFailurePolicy/rules/0/onPodConditions/0/status",
            json!("True"),
        ),
        (cron_job(), "/spec/concurrencyPolicy", json!("Allow")),
        (cron_job(), "/spec/suspend", json!(false)),
        (cron_job(), "/spec/successfulJobsHistoryLimit", json!(3)),
        (cron_job(), "/spec/failedJobsHistoryLimit", json!(1)),
        (
            cron_job(),
            "/spec/jobTemplate/spec/template/spec/dnsPolicy",
            json!("ClusterFirst"),
        ),
        (
            cron_job(),
            "/spec/jobTemplate/spec/backoffLimit",
            Value::Null,
        ),
        (
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}, "data": {"user": "YWRtaW4=", "pass": "b2xk"}, "stringData": {"pass": "new"}}),
            "/data",
            json!({"user": "YWRtaW4=", "pass": "bmV3"}),
        ),
        (secret(), "/type", json!("Opaque")),
        (secret(), "/stringData", Value::Null),
        (claim(), "/spec/volumeMode", json!("Filesystem")),
        (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}}),
            "/metadata/labels",
            json!({"kubernetes.io/metadata.name": "db"}),
        ),
        (
            pod(),
            "/status",
            json!({"phase": "Pending", "qosClass": "BestEffort"}),
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"limits": {"cpu": "500m", "memory": "256Mi"}}),
                )],
            ),
            "/status/qosClass",
            json!("Guaranteed"),
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"requests": {"cpu": "0.5", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}),
                )],
            ),
            "/status/qosClass",
            json!("Guaranteed"),
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"requests": {"memory": "256Mi"}}),
                )],
            ),
            "/status/qosClass",
            json!("Burstable"),
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"limits": {"memory": "256Mi"}}),
                )],
            ),
            "/status/qosClass",
            json!("Burstable"),
        ),
        (
            edit(
                &pod(),
                &[("/status", json!({"phase": "Running", "podIP": "10.0.0.7"}))],
            ),
            "/status",
            json!({"phase": "Pending", "qosClass": "BestEffort"}),
        ),
        (
            edit(&stateful_set(), &[("/status", json!({"replicas": 3}))]),
            "/status",
            Value::Null,
        ),
        (stateful_set(), "/metadata/generation", json!(1)),
        (
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db", "namespace": "x"}}),
            "/metadata/namespace",
            Value::Null,
        ),
        (config_map(), "/metadata/generation", Value::Null),
        (pod(), "/metadata/uid", json!(UID)),
        (
            pod(),
            "/metadata/creationTimestamp",
            json!("2024-06-01T12:00:00Z"),
        ),
        (
            edit(
                &pod(),
                &[
                    ("/metadata/name", Value::Null),
                    ("/metadata/generateName", json!("web-")),
                ],
            ),
            "/metadata/name",
            json!("web-bbbbb"),
        ),
    ];
    for (manifest, pointer, expected) in cases {
        let admitted = create(&manifest).unwrap_or_else(|e| panic!("{pointer}: {e}"));
        let value = admitted.object.to_value();
        let actual = value.pointer(pointer).cloned().unwrap_or(Value::Null);
        assert_eq!(actual, expected, "{pointer} of {}", manifest["kind"]);
    }
}

/// (manifest, the complete error message)
type InvalidCase = (Value, &'static str);

#[test]
fn each_validation_rule_reports_the_api_servers_message() {
    let label_error = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    let cases: Vec<InvalidCase> = vec![
        // Names and metadata.
        (
            edit(&stateful_set(), &[("/metadata/name", json!("Web"))]),
            "StatefulSet.apps \"Web\" is invalid: metadata.name: Invalid value: \"Web\": LABEL",
        ),
        (
            edit(&pod(), &[("/metadata/name", Value::Null)]),
            "Pod \"\" is invalid: metadata.name: Required value: name or generateName is required",
        ),
        (
            edit(&pod(), &[("/metadata/namespace", Value::Null)]),
            "Pod \"web\" is invalid: metadata.namespace: Required value",
        ),
        (
            edit(
                &pod(),
                &[("/metadata/labels", json!({"app": "web server"}))],
            ),
            "Pod \"web\" is invalid: metadata.labels[app]: Invalid value: \"web server\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        (
            edit(&pod(), &[("/metadata/labels", json!({"-app": "web"}))]),
            "Pod \"web\" is invalid: metadata.labels: Invalid value: \"-app\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        (
            edit(&service(), &[("/metadata/name", json!("1web"))]),
            "Service \"1web\" is invalid: metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ),
        (
            edit(
                &cron_job(),
                &[(
                    "/metadata/name",
                    json!("a-very-long-cronjob-name-that-is-over-fifty-two-chars"),
                )],
            ),
            "CronJob.batch \"a-very-long-cronjob-name-that-is-over-fifty-two-chars\" is invalid: metadata.name: Invalid value: \"a-very-long-cronjob-name-that-is-over-fifty-two-chars\": must be no more than 52 characters",
        ),
        (
            edit(
                &stateful_set(),
                &[(
                    "/metadata/name",
                    json!("a-statefulset-name-that-fills-the-whole-dns-label-of-63-chars-x"),
                )],
            ),
            "StatefulSet.apps \"a-statefulset-name-that-fills-the-whole-dns-label-of-63-chars-x\" is invalid: metadata.name: Invalid value: \"a-statefulset-name-that-fills-the-whole-dns-label-of-63-chars-x\": must leave room for the pod ordinal: pod name \"a-statefulset-name-that-fills-the-whole-dns-label-of-63-chars-x-2\" would be longer than 63 characters",
        ),
        // Containers.
        (
            edit(&pod(), &[("/spec/containers/0/image", Value::Null)]),
            "Pod \"web\" is invalid: spec.containers[0].image: Required value",
        ),
        (
            edit(&pod(), &[("/spec/containers", json!([]))]),
            "Pod \"web\" is invalid: spec.containers: Required value",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/initContainers",
                    json!([{"name": "app", "image": "busybox"}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.initContainers[0].name: Duplicate value: \"app\"",
        ),
        (
            edit(
                &pod(),
                &[("/spec/containers/0/imagePullPolicy", json!("Sometimes"))],
            ),
            "Pod \"web\" is invalid: spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
        ),
        (
            edit(&pod(), &[("/spec/restartPolicy", json!("Sometimes"))]),
            "Pod \"web\" is invalid: spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/ports",
                    json!([{"containerPort": 70000}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/ports",
                    json!([{"name": "http", "containerPort": 80}, {"name": "http", "containerPort": 81}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].ports[1].name: Duplicate value: \"http\"",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/ports",
                    json!([{"name": "metrics-endpoint", "containerPort": 80}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].ports[0].name: Invalid value: \"metrics-endpoint\": must be no more than 15 characters",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/env",
                    json!([{"name": "A=B", "value": "x"}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/env",
                    json!([{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "spec.hostname"}}}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].env[0].valueFrom.fieldRef.fieldPath: Unsupported value: \"spec.hostname\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/env",
                    json!([{"name": "A", "value": "x", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].env[0].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
        ),
        // Probes.
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/livenessProbe",
                    json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/readinessProbe",
                    json!({"periodSeconds": 5}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].readinessProbe: Required value: must specify a handler type",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/livenessProbe",
                    json!({"httpGet": {"port": 80}, "successThreshold": 2}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/readinessProbe",
                    json!({"httpGet": {"port": 80}, "failureThreshold": -1}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].readinessProbe.failureThreshold: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/initContainers",
                    json!([{"name": "init", "image": "busybox", "readinessProbe": {"exec": {"command": ["true"]}}}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
        ),
        // Volumes and mounts.
        (
            edit(
                &pod(),
                &[(
                    "/spec/volumes/0",
                    json!({"name": "cache", "emptyDir": {}, "hostPath": {"path": "/tmp"}}),
                )],
            ),
            // As in Kubernetes, a volume with errors does not exist for the mounts.
            "Pod \"web\" is invalid: [spec.volumes[0].emptyDir: Forbidden: may not specify more than 1 volume type, spec.containers[0].volumeMounts[0].name: Not found: \"cache\"]",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/volumes",
                    json!([{"name": "cache", "emptyDir": {}}, {"name": "cache", "emptyDir": {}}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.volumes[1].name: Duplicate value: \"cache\"",
        ),
        (
            edit(
                &pod(),
                &[("/spec/containers/0/volumeMounts/0/name", json!("data"))],
            ),
            "Pod \"web\" is invalid: spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/volumeMounts/0/mountPath",
                    json!("cache"),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].volumeMounts[0].mountPath: Invalid value: \"cache\": must be an absolute path",
        ),
        (
            edit(
                &pod(),
                &[("/spec/containers/0/volumeMounts/0/subPath", json!("../etc"))],
            ),
            "Pod \"web\" is invalid: spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../etc\": must not contain '..'",
        ),
        (
            edit(
                &pod(),
                &[("/spec/containers/0/volumeMounts/0/subPath", json!("/etc"))],
            ),
            "Pod \"web\" is invalid: spec.containers[0].volumeMounts[0].subPath: Invalid value: \"/etc\": must be a relative path",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/volumes",
                    json!([{"name": "cache", "emptyDir": {}}, {"name": "config", "configMap": {"name": "c", "defaultMode": 1000}}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.volumes[1].configMap.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/volumes",
                    json!([{"name": "cache", "emptyDir": {}}, {"name": "host", "hostPath": {"path": ""}}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.volumes[1].hostPath.path: Required value",
        ),
        // Resources.
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"limits": {"memory": "1GB"}}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].resources.limits[memory]: Invalid value: \"1GB\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"requests": {"memory": "1Mm"}}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].resources.requests[memory]: Invalid value: \"1Mm\": unable to parse quantity's suffix",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/resources",
                    json!({"requests": {"cpu": "-1"}}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].resources.requests[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
        ),
        // Pod spec.
        (
            edit(&pod(), &[("/spec/activeDeadlineSeconds", json!(0))]),
            "Pod \"web\" is invalid: spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive",
        ),
        (
            edit(&pod(), &[("/spec/hostname", json!("Web_1"))]),
            "Pod \"web\" is invalid: spec.hostname: Invalid value: \"Web_1\": LABEL",
        ),
        (
            edit(&pod(), &[("/spec/dnsPolicy", json!("None"))]),
            "Pod \"web\" is invalid: spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/tolerations",
                    json!([{"key": "dedicated", "operator": "Exists", "value": "db"}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.tolerations[0].operator: Invalid value: {\"key\":\"dedicated\",\"operator\":\"Exists\",\"value\":\"db\"}: value must be empty when `operator` is 'Exists'",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/affinity",
                    json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}),
                )],
            ),
            "Pod \"web\" is invalid: spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required value: must have at least one node selector term",
        ),
        (
            edit(
                &pod(),
                &[("/spec/securityContext", json!({"runAsUser": -5}))],
            ),
            "Pod \"web\" is invalid: spec.securityContext.runAsUser: Invalid value: -5: must be between 0 and 2147483647, inclusive",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/securityContext",
                    json!({"privileged": true, "allowPrivilegeEscalation": false}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].securityContext: Invalid value: {\"allowPrivilegeEscalation\":false,\"privileged\":true}: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
        ),
        // StatefulSet.
        (
            edit(&stateful_set(), &[("/spec/replicas", json!(-1))]),
            "StatefulSet.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            edit(
                &stateful_set(),
                &[("/spec/template/metadata/labels", json!({"app": "api"}))],
            ),
            "StatefulSet.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`",
        ),
        (
            edit(&stateful_set(), &[("/spec/selector", json!({}))]),
            "StatefulSet.apps \"web\" is invalid: spec.selector: Required value",
        ),
        (
            edit(
                &stateful_set(),
                &[("/spec/template/spec/restartPolicy", json!("OnFailure"))],
            ),
            "StatefulSet.apps \"web\" is invalid: spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
        ),
        (
            edit(
                &stateful_set(),
                &[("/spec/podManagementPolicy", json!("Sequential"))],
            ),
            "StatefulSet.apps \"web\" is invalid: spec.podManagementPolicy: Invalid value: \"Sequential\": must be 'OrderedReady' or 'Parallel'",
        ),
        (
            edit(&stateful_set(), &[("/spec/minReadySeconds", json!(-10))]),
            "StatefulSet.apps \"web\" is invalid: spec.minReadySeconds: Invalid value: -10: must be greater than or equal to 0",
        ),
        (
            edit(
                &stateful_set(),
                &[(
                    "/spec/updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 5}}),
                )],
            ),
            "StatefulSet.apps \"web\" is invalid: spec.updateStrategy.rollingUpdate.partition: Invalid value: 5: must be less than or equal to spec.replicas (3): no pod would ever be updated (berth rejects this; Kubernetes accepts it)",
        ),
        (
            edit(
                &stateful_set(),
                &[(
                    "/spec/updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "150%"}}),
                )],
            ),
            "StatefulSet.apps \"web\" is invalid: spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
        ),
        (
            edit(
                &stateful_set(),
                &[(
                    "/spec/updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}}),
                )],
            ),
            "StatefulSet.apps \"web\" is invalid: spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: must be greater than 0",
        ),
        (
            edit(
                &stateful_set(),
                &[("/spec/volumeClaimTemplates/0/metadata/name", Value::Null)],
            ),
            "StatefulSet.apps \"web\" is invalid: [spec.volumeClaimTemplates[0].metadata.name: Required value, spec.template.spec.containers[0].volumeMounts[0].name: Not found: \"data\"]",
        ),
        (
            edit(
                &stateful_set(),
                &[("/spec/template/spec/activeDeadlineSeconds", json!(60))],
            ),
            "StatefulSet.apps \"web\" is invalid: spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in StatefulSet is not Supported",
        ),
        // DaemonSet.
        (
            edit(
                &daemon_set(),
                &[(
                    "/spec/updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}),
                )],
            ),
            "DaemonSet.apps \"agent\" is invalid: spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0 when maxSurge is 0",
        ),
        (
            edit(
                &daemon_set(),
                &[(
                    "/spec/updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "ten"}}),
                )],
            ),
            "DaemonSet.apps \"agent\" is invalid: spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \"ten\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        ),
        (
            edit(
                &daemon_set(),
                &[("/spec/template/metadata/labels", json!({"app": "other"}))],
            ),
            "DaemonSet.apps \"agent\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
        ),
        // Job.
        (
            edit(
                &job(),
                &[("/spec/template/spec/restartPolicy", json!("Always"))],
            ),
            "Job.batch \"migrate\" is invalid: spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
        ),
        (
            edit(&job(), &[("/spec/completions", json!(0))]),
            "Job.batch \"migrate\" is invalid: spec.completions: Invalid value: 0: must be greater than or equal to 1",
        ),
        (
            edit(&job(), &[("/spec/backoffLimit", json!(-1))]),
            "Job.batch \"migrate\" is invalid: spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
        ),
        (
            edit(&job(), &[("/spec/parallelism", json!(-2))]),
            "Job.batch \"migrate\" is invalid: spec.parallelism: Invalid value: -2: must be greater than or equal to 0",
        ),
        (
            edit(
                &job(),
                &[
                    ("/spec/manualSelector", json!(true)),
                    ("/spec/selector", json!({"matchLabels": {"app": "migrate"}})),
                ],
            ),
            "Job.batch \"migrate\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{}: `selector` does not match template `labels`",
        ),
        (
            edit(
                &job(),
                &[
                    ("/spec/completionMode", json!("Indexed")),
                    ("/spec/completions", Value::Null),
                    ("/spec/parallelism", json!(2)),
                ],
            ),
            "Job.batch \"migrate\" is invalid: spec.completions: Required value: when completion mode is Indexed",
        ),
        (
            edit(
                &job(),
                &[(
                    "/spec/podFailurePolicy",
                    json!({"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3, 1]}}]}),
                )],
            ),
            "Job.batch \"migrate\" is invalid: spec.podFailurePolicy.rules[0].onExitCodes.values[1]: Invalid value: 1: must be ordered",
        ),
        (
            edit(
                &job(),
                &[(
                    "/spec/podFailurePolicy",
                    json!({"rules": [{"action": "Retry", "onExitCodes": {"operator": "In", "values": [1]}}]}),
                )],
            ),
            "Job.batch \"migrate\" is invalid: spec.podFailurePolicy.rules[0].action: Unsupported value: \"Retry\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
        ),
        (
            edit(
                &job(),
                &[
                    (
                        "/spec/podFailurePolicy",
                        json!({"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}),
                    ),
                    ("/spec/template/spec/restartPolicy", json!("OnFailure")),
                ],
            ),
            "Job.batch \"migrate\" is invalid: spec.template.spec.restartPolicy: Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified",
        ),
        (
            edit(
                &job(),
                &[
                    (
                        "/spec/podFailurePolicy",
                        json!({"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}),
                    ),
                    ("/spec/podReplacementPolicy", json!("TerminatingOrFailed")),
                ],
            ),
            "Job.batch \"migrate\" is invalid: spec.podReplacementPolicy: Unsupported value: \"TerminatingOrFailed\": supported values: \"Failed\"",
        ),
        // CronJob.
        (
            edit(&cron_job(), &[("/spec/schedule", json!("61 * * * *"))]),
            "CronJob.batch \"backup\" is invalid: spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61",
        ),
        (
            edit(&cron_job(), &[("/spec/schedule", json!("0 3 * *"))]),
            "CronJob.batch \"backup\" is invalid: spec.schedule: Invalid value: \"0 3 * *\": expected exactly 5 fields, found 4: [0 3 * *]",
        ),
        (
            edit(
                &cron_job(),
                &[("/spec/schedule", json!("CRON_TZ=UTC 0 3 * * *"))],
            ),
            "CronJob.batch \"backup\" is invalid: [spec.schedule: Invalid value: \"CRON_TZ=UTC 0 3 * * *\": expected exactly 5 fields, found 6: [CRON_TZ=UTC 0 3 * * *], spec.schedule: Invalid value: \"CRON_TZ=UTC 0 3 * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead]",
        ),
        (
            edit(&cron_job(), &[("/spec/timeZone", json!("Europe/Atlantis"))]),
            "CronJob.batch \"backup\" is invalid: spec.timeZone: Invalid value: \"Europe/Atlantis\": unknown time zone Europe/Atlantis",
        ),
        (
            edit(&cron_job(), &[("/spec/concurrencyPolicy", json!("Queue"))]),
            "CronJob.batch \"backup\" is invalid: spec.concurrencyPolicy: Unsupported value: \"Queue\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
        ),
        (
            edit(
                &cron_job(),
                &[(
                    "/spec/jobTemplate/spec/template/spec/restartPolicy",
                    json!("Always"),
                )],
            ),
            "CronJob.batch \"backup\" is invalid: spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
        ),
        // Service.
        (
            edit(
                &service(),
                &[("/spec/ports", json!([{"port": 80}, {"port": 443}]))],
            ),
            "Service \"web\" is invalid: [spec.ports[0].name: Required value, spec.ports[1].name: Required value]",
        ),
        (
            edit(
                &service(),
                &[(
                    "/spec/ports",
                    json!([{"name": "http", "port": 80, "targetPort": "http-alternative"}]),
                )],
            ),
            "Service \"web\" is invalid: spec.ports[0].targetPort: Invalid value: \"http-alternative\": must be no more than 15 characters",
        ),
        // ConfigMap, Secret, claims.
        (
            edit(&config_map(), &[("/data", json!({"bad key": "x"}))]),
            "ConfigMap \"settings\" is invalid: data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ),
        (
            edit(&secret(), &[("/type", json!("kubernetes.io/tls"))]),
            "Secret \"creds\" is invalid: [data[tls.crt]: Required value, data[tls.key]: Required value]",
        ),
        (
            edit(
                &secret(),
                &[
                    ("/type", json!("kubernetes.io/dockerconfigjson")),
                    ("/data", json!({".dockerconfigjson": "bm90IGpzb24="})),
                ],
            ),
            "Secret \"creds\" is invalid: data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": expected ident at line 1 column 2",
        ),
        (
            edit(&claim(), &[("/spec/accessModes", Value::Null)]),
            "PersistentVolumeClaim \"data\" is invalid: spec.accessModes: Required value: at least 1 access mode is required",
        ),
        (
            edit(&claim(), &[("/spec/resources", json!({}))]),
            "PersistentVolumeClaim \"data\" is invalid: spec.resources[storage]: Required value",
        ),
        (
            edit(
                &claim(),
                &[("/spec/resources/requests/storage", json!("0"))],
            ),
            "PersistentVolumeClaim \"data\" is invalid: spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
        ),
        (
            edit(
                &secret(),
                &[
                    ("/type", json!("kubernetes.io/basic-auth")),
                    ("/data", json!({"token": "eA=="})),
                ],
            ),
            "Secret \"creds\" is invalid: [data[username]: Required value, data[password]: Required value]",
        ),
        (
            edit(&secret(), &[("/type", json!("kubernetes.io/ssh-auth"))]),
            "Secret \"creds\" is invalid: data[ssh-privatekey]: Required value",
        ),
        (
            edit(
                &config_map(),
                &[(
                    "/metadata/annotations",
                    json!({"notes": "x".repeat(300 * 1024)}),
                )],
            ),
            "ConfigMap \"settings\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes",
        ),
        (
            edit(
                &service(),
                &[(
                    "/spec/ports",
                    json!([{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
                )],
            ),
            "Service \"web\" is invalid: spec.ports[1]: Duplicate value: \"TCP/80\"",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/topologySpreadConstraints",
                    json!([{"maxSkew": 0, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}]),
                )],
            ),
            "Pod \"web\" is invalid: spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero",
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/containers/0/lifecycle",
                    json!({"preStop": {"sleep": {"seconds": 60}}}),
                )],
            ),
            "Pod \"web\" is invalid: spec.containers[0].lifecycle.preStop.sleep.seconds: Invalid value: 60: must be non-negative and less than terminationGracePeriodSeconds (30)",
        ),
        (
            edit(
                &job(),
                &[
                    (
                        "/metadata/name",
                        json!("a-job-whose-name-is-sixty-two-characters-long-abcdefghijklmnop"),
                    ),
                    ("/spec/completionMode", json!("Indexed")),
                    ("/spec/completions", json!(100)),
                ],
            ),
            "Job.batch \"a-job-whose-name-is-sixty-two-characters-long-abcdefghijklmnop\" is invalid: metadata.name: Invalid value: \"a-job-whose-name-is-sixty-two-characters-long-abcdefghijklmnop\": will not able to create pod with invalid DNS label: a-job-whose-name-is-sixty-two-characters-long-abcdefghijklmnop-99",
        ),
    ];
    let mut mismatches = Vec::new();
    for (manifest, expected) in cases {
        let expected = expected.replace("LABEL", label_error);
        let got = create_error(&manifest);
        if got != expected {
            mismatches.push(format!(" got: {got}\nwant: {expected}"));
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n"));
}

#[test]
fn an_invalid_object_becomes_a_422_status_with_causes() {
    let manifest = edit(
        &stateful_set(),
        &[
            ("/spec/replicas", json!(-1)),
            ("/spec/minReadySeconds", json!(-1)),
        ],
    );
    let Err(AdmitError::Invalid(invalid)) = create(&manifest) else {
        panic!("expected Invalid");
    };
    let status = serde_json::to_value(invalid.to_status()).unwrap();
    assert_eq!(status["code"], json!(422));
    assert_eq!(status["reason"], json!("Invalid"));
    assert_eq!(status["details"]["kind"], json!("StatefulSet"));
    assert_eq!(status["details"]["group"], json!("apps"));
    assert_eq!(
        status["details"]["causes"],
        json!([
            {"reason": "FieldValueInvalid", "message": "Invalid value: -1: must be greater than or equal to 0", "field": "spec.replicas"},
            {"reason": "FieldValueInvalid", "message": "Invalid value: -1: must be greater than or equal to 0", "field": "spec.minReadySeconds"}
        ])
    );
}

fn stored(manifest: &Value) -> Object {
    create(manifest).unwrap().object
}

/// (stored manifest, edits of the update, expected message or None when allowed)
type UpdateCase = (Value, Vec<(&'static str, Value)>, Option<&'static str>);

#[test]
fn updates_may_change_only_what_kubernetes_allows_plus_berths_two_relaxations() {
    let immutable_config = edit(&config_map(), &[("/immutable", json!(true))]);
    let sts_forbidden = |changed: &str| -> &'static str {
        // Leaked: a handful of expected messages in a test.
        String::leak(format!(
            "StatefulSet.apps \"web\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy', 'minReadySeconds' and 'podManagementPolicy' are forbidden (berth also allows growing volumeClaimTemplates[*].spec.resources.requests.storage); this update changes {changed}"
        ))
    };
    let cases: Vec<UpdateCase> = vec![
        (stateful_set(), vec![("/spec/replicas", json!(5))], None),
        (
            stateful_set(),
            vec![(
                "/spec/template/spec/containers/0/image",
                json!("nginx:1.28"),
            )],
            None,
        ),
        (
            stateful_set(),
            vec![("/spec/podManagementPolicy", json!("Parallel"))],
            None,
        ),
        (
            stateful_set(),
            vec![(
                "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
                json!("5Gi"),
            )],
            None,
        ),
        (
            stateful_set(),
            vec![("/spec/serviceName", json!("other"))],
            Some(sts_forbidden("spec.serviceName")),
        ),
        (
            stateful_set(),
            vec![
                ("/spec/selector/matchLabels/tier", json!("db")),
                ("/spec/template/metadata/labels/tier", json!("db")),
            ],
            Some(sts_forbidden("spec.selector")),
        ),
        (
            stateful_set(),
            vec![(
                "/spec/volumeClaimTemplates/0/spec/accessModes",
                json!(["ReadWriteOncePod"]),
            )],
            Some(sts_forbidden("spec.volumeClaimTemplates")),
        ),
        (
            stateful_set(),
            vec![(
                "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
                json!("512Mi"),
            )],
            Some(
                "StatefulSet.apps \"web\" is invalid: spec.volumeClaimTemplates[0].spec.resources.requests[storage]: Forbidden: field can not be less than previous value (1Gi): claims may grow, never shrink",
            ),
        ),
        (
            stateful_set(),
            vec![("/metadata/uid", json!("other-uid"))],
            Some(
                "StatefulSet.apps \"web\" is invalid: metadata.uid: Invalid value: \"other-uid\": field is immutable",
            ),
        ),
        (
            pod(),
            vec![
                ("/spec/containers/0/image", json!("nginx:1.28")),
                ("/spec/activeDeadlineSeconds", json!(600)),
            ],
            None,
        ),
        (pod(), vec![("/metadata/labels/version", json!("2"))], None),
        (
            pod(),
            vec![("/spec/containers/0/ports/0/containerPort", json!(8080))],
            Some(
                "Pod \"web\" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative) (changed: spec.containers)",
            ),
        ),
        (
            edit(&pod(), &[("/spec/activeDeadlineSeconds", json!(600))]),
            vec![("/spec/activeDeadlineSeconds", json!(900))],
            Some(
                "Pod \"web\" is invalid: spec.activeDeadlineSeconds: Invalid value: 900: must be less than or equal to previous value",
            ),
        ),
        (
            edit(
                &pod(),
                &[(
                    "/spec/tolerations",
                    json!([{"key": "a", "operator": "Exists"}]),
                )],
            ),
            vec![("/spec/tolerations", json!([]))],
            Some(
                "Pod \"web\" is invalid: spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds",
            ),
        ),
        (
            service(),
            vec![("/spec/clusterIP", json!("10.96.0.10"))],
            Some(
                "Service \"web\" is invalid: [spec.clusterIP: Forbidden: not supported by berth: virtual service IPs; use clusterIP: None (headless), spec.clusterIP: Invalid value: \"10.96.0.10\": field is immutable]",
            ),
        ),
        (
            immutable_config.clone(),
            vec![("/data/mode", json!("off"))],
            Some(
                "ConfigMap \"settings\" is invalid: data: Forbidden: field is immutable when `immutable` is set",
            ),
        ),
        (
            immutable_config,
            vec![("/immutable", json!(false))],
            Some(
                "ConfigMap \"settings\" is invalid: immutable: Forbidden: field is immutable when `immutable` is set",
            ),
        ),
        (config_map(), vec![("/data/mode", json!("off"))], None),
        (
            edit(&secret(), &[("/immutable", json!(true))]),
            vec![("/data/password", json!("bmV3"))],
            Some(
                "Secret \"creds\" is invalid: data: Forbidden: field is immutable when `immutable` is set",
            ),
        ),
        (
            daemon_set(),
            vec![
                ("/spec/selector/matchLabels/app", json!("agent2")),
                ("/spec/template/metadata/labels/app", json!("agent2")),
            ],
            Some(
                "DaemonSet.apps \"agent\" is invalid: spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"agent2\"}}: field is immutable",
            ),
        ),
        (
            daemon_set(),
            vec![(
                "/spec/template/spec/containers/0/image",
                json!("busybox:1.37"),
            )],
            None,
        ),
        (job(), vec![("/spec/suspend", json!(true))], None),
        (
            job(),
            vec![("/spec/template/spec/containers/0/image", json!("app:2"))],
            Some(
                "Job.batch \"migrate\" is invalid: spec.template: Invalid value: field is immutable",
            ),
        ),
        (
            job(),
            vec![("/spec/completions", json!(3))],
            Some(
                "Job.batch \"migrate\" is invalid: spec.completions: Invalid value: 3: field is immutable",
            ),
        ),
        (
            edit(&job(), &[("/spec/suspend", json!(true))]),
            vec![("/spec/template/spec/nodeSelector", json!({"disk": "ssd"}))],
            None,
        ),
        (
            claim(),
            vec![("/spec/resources/requests/storage", json!("20Gi"))],
            None,
        ),
        (
            claim(),
            vec![("/spec/storageClassName", json!("fast"))],
            Some(
                "PersistentVolumeClaim \"data\" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ),
        ),
    ];
    for (base, edits, expected) in cases {
        let old = stored(&base);
        // The user re-applies their manifest with changes; identity comes from the stored object.
        let update = edit(&base, &edits);
        let result = admit_update(&old, &update);
        match (result, expected) {
            (Ok(_), None) => {}
            (Err(error), Some(expected)) => assert_eq!(error.to_string(), expected, "{edits:?}"),
            (Ok(_), Some(expected)) => panic!("update {edits:?} was allowed, expected: {expected}"),
            (Err(error), None) => panic!("update {edits:?} was refused: {error}"),
        }
    }
}

#[test]
fn the_generation_counts_spec_changes_only() {
    let first = stored(&stateful_set());
    let relabelled = admit_update(
        &first,
        &edit(
            &stateful_set(),
            &[("/metadata/labels", json!({"team": "db"}))],
        ),
    )
    .unwrap();
    assert_eq!(relabelled.object.metadata().generation, Some(1));
    let scaled = admit_update(
        &relabelled.object,
        &edit(&stateful_set(), &[("/spec/replicas", json!(5))]),
    )
    .unwrap();
    assert_eq!(scaled.object.metadata().generation, Some(2));
    // A client cannot set it.
    let forged = admit_update(
        &scaled.object,
        &edit(
            &stateful_set(),
            &[
                ("/spec/replicas", json!(5)),
                ("/metadata/generation", json!(40)),
            ],
        ),
    )
    .unwrap();
    assert_eq!(forged.object.metadata().generation, Some(2));
}

#[test]
fn a_pods_assignment_epoch_cannot_be_forged_or_stripped_by_an_update() {
    const EPOCH: &str = "berth.io/assignment-epoch";
    let bound = edit(&pod(), &[("/metadata/annotations", json!({EPOCH: "41"}))]);
    let old = stored(&bound);
    let annotation = |o: &Object| o.to_value()["metadata"]["annotations"][EPOCH].clone();
    assert_eq!(annotation(&old), json!("41"));
    for annotations in [json!({EPOCH: "9999"}), json!({}), json!({"team": "db"})] {
        let update = edit(&pod(), &[("/metadata/annotations", annotations.clone())]);
        let updated = admit_update(&old, &update).unwrap();
        assert_eq!(annotation(&updated.object), json!("41"), "{annotations}");
    }
    // A pod that has none (not bound by the scheduler) cannot be given one.
    let unbound = stored(&pod());
    let forged = edit(&pod(), &[("/metadata/annotations", json!({EPOCH: "9999"}))]);
    let updated = admit_update(&unbound, &forged).unwrap();
    assert_eq!(
        updated.object.to_value()["metadata"].get("annotations"),
        None
    );
    // Other kinds are not touched.
    let set = edit(
        &stateful_set(),
        &[("/metadata/annotations", json!({EPOCH: "5"}))],
    );
    let updated = admit_update(&stored(&stateful_set()), &set).unwrap();
    assert_eq!(annotation(&updated.object), json!("5"));
}

#[test]
fn an_update_keeps_the_jobs_generated_selector_when_the_manifest_omits_it() {
    let old = stored(&job());
    let updated = admit_update(&old, &edit(&job(), &[("/spec/suspend", json!(true))])).unwrap();
    let value = updated.object.to_value();
    assert_eq!(
        value["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        json!(UID)
    );
    assert_eq!(value["metadata"]["uid"], json!(UID));
}

#[test]
fn the_user_manifests_in_fixtures_parse_default_and_validate_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut admitted_kinds = Vec::new();
    for file in [
        "postgres.yaml",
        "etcd.yaml",
        "pg-dump-cronjob.yaml",
        "job.yaml",
        "daemonset.yaml",
        "list.json",
    ] {
        for document in parse::read_file(&dir.join(file)).unwrap() {
            let mut manifest = document.value.clone();
            if manifest["metadata"]["namespace"].is_null() {
                fill_namespace(&mut manifest, "default").unwrap();
            }
            let admitted = admit_create(&manifest, &context())
                .unwrap_or_else(|e| panic!("{}: {e}", document.source));
            assert!(
                admitted.warnings.is_empty(),
                "{}: {:?}",
                document.source,
                admitted.warnings
            );
            // What is stored decodes again to the same object.
            let stored = admitted.object.to_value();
            assert_eq!(
                Object::from_value(&stored).unwrap(),
                admitted.object,
                "{}",
                document.source
            );
            admitted_kinds.push(format!("{file}:{}", admitted.object.kind()));
        }
    }
    assert_eq!(
        admitted_kinds,
        vec![
            "postgres.yaml:Service",
            "postgres.yaml:Secret",
            "postgres.yaml:ConfigMap",
            "postgres.yaml:StatefulSet",
            "etcd.yaml:Service",
            "etcd.yaml:StatefulSet",
            "pg-dump-cronjob.yaml:CronJob",
            "job.yaml:Job",
            "daemonset.yaml:DaemonSet",
            "list.json:ConfigMap",
            "list.json:PersistentVolumeClaim",
        ]
    );
}

#[test]
fn a_manifest_for_another_namespace_than_the_requests_is_refused() {
    let mut manifest = edit(&pod(), &[("/metadata/namespace", json!("db"))]);
    let error = fill_namespace(&mut manifest, "default").unwrap_err();
    assert_eq!(
        error.to_string(),
        "the namespace of the provided object (db) does not match the namespace sent on the request (default)"
    );
    let mut namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "db"}});
    fill_namespace(&mut namespace, "default").unwrap();
    assert!(namespace["metadata"].get("namespace").is_none());
}
