//! Tables as kubectl prints them: one row per object, upper-case headers, columns padded with
//! three spaces, ages in kubectl's human format. Each kind has its own columns; everything
//! here works on Kubernetes-shaped JSON so that it prints exactly what the API returned.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The columns for one kind, with the wide (`-o wide`) extras.
pub struct Columns {
    pub headers: Vec<&'static str>,
    pub wide: Vec<&'static str>,
}

/// A rendered table: header plus rows of cells.
#[derive(Debug, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Renders with kubectl's spacing: each column as wide as its widest cell, three spaces
    /// between columns, no trailing spaces.
    pub fn render(&self, with_headers: bool) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if i >= widths.len() {
                    widths.push(0);
                }
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 < cells.len() {
                    text.push_str(cell);
                    text.extend(std::iter::repeat_n(
                        ' ',
                        widths[i] - cell.chars().count() + 3,
                    ));
                } else {
                    text.push_str(cell);
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        if with_headers {
            line(&self.headers);
        }
        for row in &self.rows {
            line(row);
        }
        out
    }
}

/// Builds the table for objects of one kind (`kind` as in the objects' `kind` field).
pub fn table(
    kind: &str,
    objects: &[Value],
    wide: bool,
    with_namespace: bool,
    now: DateTime<Utc>,
) -> Table {
    let columns = columns(kind);
    let mut headers: Vec<String> = Vec::new();
    if with_namespace {
        headers.push("NAMESPACE".into());
    }
    headers.extend(columns.headers.iter().map(|h| h.to_string()));
    if wide {
        headers.extend(columns.wide.iter().map(|h| h.to_string()));
    }
    let rows = objects
        .iter()
        .map(|object| {
            let mut row = Vec::new();
            if with_namespace {
                row.push(str_at(object, "/metadata/namespace").to_string());
            }
            let (cells, wide_cells) = row_for(kind, object, now);
            row.extend(cells);
            if wide {
                row.extend(wide_cells);
            }
            row
        })
        .collect();
    Table { headers, rows }
}

fn columns(kind: &str) -> Columns {
    let (headers, wide): (&[&'static str], &[&'static str]) = match kind {
        "Pod" => (
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        ),
        "Service" => (
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            &["SELECTOR"],
        ),
        "ConfigMap" => (&["NAME", "DATA", "AGE"], &[]),
        "Secret" => (&["NAME", "TYPE", "DATA", "AGE"], &[]),
        "Namespace" => (&["NAME", "STATUS", "AGE"], &[]),
        "StatefulSet" => (&["NAME", "READY", "AGE"], &["CONTAINERS", "IMAGES"]),
        "DaemonSet" => (
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
            ],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        "PersistentVolumeClaim" => (
            &[
                "NAME",
                "STATUS",
                "VOLUME",
                "CAPACITY",
                "ACCESS MODES",
                "STORAGECLASS",
                "NODE",
                "USED",
                "AGE",
            ],
            &["VOLUMEMODE"],
        ),
        "Job" => (
            &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        "CronJob" => (
            &[
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE",
            ],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        "Event" => (
            &["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
            &["SOURCE", "FIRST SEEN", "COUNT", "NAME"],
        ),
        "Node" => (
            &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            &[
                "INTERNAL-IP",
                "POD-CIDR",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
        ),
        "ControllerRevision" => (&["NAME", "CONTROLLER", "REVISION", "AGE"], &[]),
        _ => (&["NAME", "AGE"], &[]),
    };
    Columns {
        headers: headers.to_vec(),
        wide: wide.to_vec(),
    }
}

fn row_for(kind: &str, o: &Value, now: DateTime<Utc>) -> (Vec<String>, Vec<String>) {
    let name = str_at(o, "/metadata/name").to_string();
    let age = age(o, now);
    match kind {
        "Pod" => {
            let summary = pod_summary(o, now);
            (
                vec![name, summary.ready, summary.status, summary.restarts, age],
                vec![
                    or_none(str_at(o, "/status/podIP")),
                    or_none(str_at(o, "/spec/nodeName")),
                    "<none>".into(),
                    "<none>".into(),
                ],
            )
        }
        "Service" => {
            let type_ = str_at(o, "/spec/type");
            let type_ = if type_.is_empty() { "ClusterIP" } else { type_ };
            let cluster_ip = or_none(str_at(o, "/spec/clusterIP"));
            (
                vec![
                    name,
                    type_.to_string(),
                    cluster_ip,
                    "<none>".into(),
                    service_ports(o),
                    age,
                ],
                vec![map_string(o.pointer("/spec/selector"))],
            )
        }
        "ConfigMap" => {
            let data = count(o.get("data")) + count(o.get("binaryData"));
            (vec![name, data.to_string(), age], vec![])
        }
        "Secret" => {
            let type_ = str_at(o, "/type");
            let type_ = if type_.is_empty() { "Opaque" } else { type_ };
            (
                vec![
                    name,
                    type_.to_string(),
                    count(o.get("data")).to_string(),
                    age,
                ],
                vec![],
            )
        }
        "Namespace" => {
            let phase = str_at(o, "/status/phase");
            (
                vec![
                    name,
                    if phase.is_empty() { "Active" } else { phase }.to_string(),
                    age,
                ],
                vec![],
            )
        }
        "StatefulSet" => {
            let ready = int_at(o, "/status/readyReplicas");
            let desired = o
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            let (containers, images) = template_containers(o);
            (
                vec![name, format!("{ready}/{desired}"), age],
                vec![containers, images],
            )
        }
        "DaemonSet" => {
            let (containers, images) = template_containers(o);
            (
                vec![
                    name,
                    int_at(o, "/status/desiredNumberScheduled").to_string(),
                    int_at(o, "/status/currentNumberScheduled").to_string(),
                    int_at(o, "/status/numberReady").to_string(),
                    int_at(o, "/status/updatedNumberScheduled").to_string(),
                    int_at(o, "/status/numberAvailable").to_string(),
                    map_string(o.pointer("/spec/template/spec/nodeSelector")),
                    age,
                ],
                vec![
                    containers,
                    images,
                    selector_string(o.pointer("/spec/selector")),
                ],
            )
        }
        "PersistentVolumeClaim" => {
            // CAPACITY is what the claim got (status), empty until it is bound, as kubectl.
            let capacity = str_at(o, "/status/capacity/storage").to_string();
            let modes = o
                .pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .map(|modes| {
                    modes
                        .iter()
                        .filter_map(Value::as_str)
                        .map(access_mode_short)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let annotation = |key: &str| {
                o.pointer("/metadata/annotations")
                    .and_then(|a| a.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let node = annotation("volume.kubernetes.io/selected-node");
            let used = annotation("berth.io/used-bytes")
                .parse::<u64>()
                .map(human_bytes)
                .unwrap_or_default();
            // A claim is a directory on its node: VOLUME shows where, unless a volume is named.
            let volume = match str_at(o, "/spec/volumeName") {
                "" => annotation("berth.io/directory"),
                named => named.to_string(),
            };
            let status = if o
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|t| !t.is_null())
            {
                "Terminating".to_string()
            } else {
                str_at(o, "/status/phase").to_string()
            };
            (
                vec![
                    name,
                    status,
                    volume,
                    capacity,
                    modes,
                    str_at(o, "/spec/storageClassName").to_string(),
                    node,
                    used,
                    age,
                ],
                vec![or_default(str_at(o, "/spec/volumeMode"), "Filesystem")],
            )
        }
        "Job" => {
            let (containers, images) = template_containers(o);
            (
                vec![
                    name,
                    job_status(o),
                    job_completions(o),
                    job_duration(o, now),
                    age,
                ],
                vec![
                    containers,
                    images,
                    selector_string(o.pointer("/spec/selector")),
                ],
            )
        }
        "CronJob" => {
            let (containers, images) = cronjob_containers(o);
            let last = o
                .pointer("/status/lastScheduleTime")
                .and_then(Value::as_str)
                .and_then(parse_time)
                .map(|t| human_duration(now - t))
                .unwrap_or_else(|| "<none>".into());
            (
                vec![
                    name,
                    str_at(o, "/spec/schedule").to_string(),
                    or_none(str_at(o, "/spec/timeZone")),
                    o.pointer("/spec/suspend")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                        .to_lowercase(),
                    o.pointer("/status/active")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len)
                        .to_string(),
                    last,
                    age,
                ],
                vec![containers, images, "<none>".into()],
            )
        }
        "Event" => {
            let last = event_time(
                o,
                &[
                    "/lastTimestamp",
                    "/eventTime",
                    "/metadata/creationTimestamp",
                ],
            );
            let first = event_time(
                o,
                &[
                    "/firstTimestamp",
                    "/eventTime",
                    "/metadata/creationTimestamp",
                ],
            );
            let object = format!(
                "{}/{}",
                str_at(o, "/involvedObject/kind").to_lowercase(),
                str_at(o, "/involvedObject/name")
            );
            (
                vec![
                    last.map(|t| human_duration(now - t))
                        .unwrap_or_else(|| "<unknown>".into()),
                    str_at(o, "/type").to_string(),
                    str_at(o, "/reason").to_string(),
                    object,
                    str_at(o, "/message").trim().to_string(),
                ],
                vec![
                    str_at(o, "/source/component").to_string(),
                    first
                        .map(|t| human_duration(now - t))
                        .unwrap_or_else(|| "<unknown>".into()),
                    o.get("count")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                        .to_string(),
                    name,
                ],
            )
        }
        "Node" => {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    if c["status"] == "True" {
                        "Ready"
                    } else {
                        "NotReady"
                    }
                })
                .unwrap_or("Unknown");
            let mut status = ready.to_string();
            if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles = node_roles(o);
            let internal_ip = o
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                .and_then(|a| a["address"].as_str())
                .unwrap_or("<none>")
                .to_string();
            (
                vec![
                    name,
                    status,
                    roles,
                    age,
                    str_at(o, "/status/nodeInfo/kubeletVersion").to_string(),
                ],
                vec![
                    internal_ip,
                    or_none(str_at(o, "/spec/podCIDR")),
                    or_unknown(str_at(o, "/status/nodeInfo/osImage")),
                    or_unknown(str_at(o, "/status/nodeInfo/kernelVersion")),
                    or_unknown(str_at(o, "/status/nodeInfo/containerRuntimeVersion")),
                ],
            )
        }
        "ControllerRevision" => {
            let controller = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
                .map(|r| {
                    let kind = r["kind"].as_str().unwrap_or("").to_lowercase();
                    let group = r["apiVersion"]
                        .as_str()
                        .unwrap_or("")
                        .split('/')
                        .next()
                        .unwrap_or("");
                    format!("{kind}.{group}/{}", r["name"].as_str().unwrap_or(""))
                })
                .unwrap_or_else(|| "<none>".into());
            (
                vec![name, controller, int_at(o, "/revision").to_string(), age],
                vec![],
            )
        }
        _ => (vec![name, age], vec![]),
    }
}

/// READY, STATUS and RESTARTS of a pod, computed as kubectl's printPod does.
pub struct PodSummary {
    pub ready: String,
    pub status: String,
    pub restarts: String,
}

/// kubectl's pod STATUS logic (pkg/printers/internalversion/printers.go, printPod).
pub fn pod_summary(pod: &Value, now: DateTime<Utc>) -> PodSummary {
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let init_total = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut reason = str_at(pod, "/status/phase").to_string();
    if !str_at(pod, "/status/reason").is_empty() {
        reason = str_at(pod, "/status/reason").to_string();
    }
    let mut restarts = 0i64;
    let mut ready = 0usize;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let note_restart = |status: &Value, last: &mut Option<DateTime<Utc>>| {
        if let Some(t) = status
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(parse_time)
        {
            *last = Some(last.map_or(t, |l| l.max(t)));
        }
    };
    let mut initializing = false;
    let empty = Vec::new();
    let init_statuses = pod
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for (i, c) in init_statuses.iter().enumerate() {
        restarts += c["restartCount"].as_i64().unwrap_or(0);
        note_restart(c, &mut last_restart);
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = c
            .pointer("/state/waiting/reason")
            .and_then(Value::as_str)
            .unwrap_or("");
        if let Some(t) = terminated {
            if t["exitCode"].as_i64() == Some(0) {
                continue;
            }
            let r = t["reason"].as_str().unwrap_or("");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if t["signal"].as_i64().unwrap_or(0) != 0 {
                format!("Init:Signal:{}", t["signal"])
            } else {
                format!("Init:ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{init_total}");
        }
        initializing = true;
        break;
    }
    let initialized = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Initialized" && c["status"] == "True")
        });
    if !initializing || initialized {
        restarts = 0;
        let mut has_running = false;
        let statuses = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        for c in statuses.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            note_restart(c, &mut last_restart);
            let waiting = c
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = c.pointer("/state/terminated") {
                let r = t["reason"].as_str().unwrap_or("");
                reason = if !r.is_empty() {
                    r.to_string()
                } else if t["signal"].as_i64().unwrap_or(0) != 0 {
                    format!("Signal:{}", t["signal"])
                } else {
                    format!("ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0))
                };
            } else if c["ready"] == true && c.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = pod
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            reason = if pod_ready { "Running" } else { "NotReady" }.to_string();
        }
    }
    let phase = str_at(pod, "/status/phase");
    if pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        if str_at(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    if reason.is_empty() {
        reason = "Pending".into();
    }
    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };
    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
    }
}

fn job_status(o: &Value) -> String {
    let conditions = o.pointer("/status/conditions").and_then(Value::as_array);
    let has = |t: &str| {
        conditions.is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
    };
    if has("Complete") {
        "Complete".into()
    } else if has("Failed") {
        "Failed".into()
    } else if has("FailureTarget") {
        "FailureTarget".into()
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet".into()
    } else if has("Suspended") {
        "Suspended".into()
    } else if o
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        "Terminating".into()
    } else {
        "Running".into()
    }
}

fn job_completions(o: &Value) -> String {
    let succeeded = int_at(o, "/status/succeeded");
    match o.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => {
            let parallelism = o
                .pointer("/spec/parallelism")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        }
    }
}

fn job_duration(o: &Value, now: DateTime<Utc>) -> String {
    let Some(start) = o
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
    else {
        return String::new();
    };
    let end = o
        .pointer("/status/completionTime")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .unwrap_or(now);
    human_duration(end - start)
}

fn template_containers(o: &Value) -> (String, String) {
    containers_at(o.pointer("/spec/template/spec/containers"))
}

fn cronjob_containers(o: &Value) -> (String, String) {
    containers_at(o.pointer("/spec/jobTemplate/spec/template/spec/containers"))
}

fn containers_at(containers: Option<&Value>) -> (String, String) {
    let Some(list) = containers.and_then(Value::as_array) else {
        return ("<none>".into(), "<none>".into());
    };
    let names: Vec<&str> = list.iter().filter_map(|c| c["name"].as_str()).collect();
    let images: Vec<&str> = list.iter().filter_map(|c| c["image"].as_str()).collect();
    (names.join(","), images.join(","))
}

fn service_ports(o: &Value) -> String {
    let Some(ports) = o.pointer("/spec/ports").and_then(Value::as_array) else {
        return "<none>".into();
    };
    if ports.is_empty() {
        return "<none>".into();
    }
    ports
        .iter()
        .map(|p| {
            let port = p["port"].as_i64().unwrap_or(0);
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(node_port) if node_port != 0 => format!("{port}:{node_port}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn node_roles(o: &Value) -> String {
    let mut roles: Vec<String> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

/// `RWO`, `ROX`, `RWX`, `RWOP`: access modes as kubectl abbreviates them.
pub fn access_mode_short(mode: &str) -> &str {
    match mode {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        other => other,
    }
}

fn event_time(o: &Value, pointers: &[&str]) -> Option<DateTime<Utc>> {
    pointers
        .iter()
        .find_map(|p| o.pointer(p).and_then(Value::as_str).and_then(parse_time))
}

/// `a=b,c=d`, sorted by key, or `<none>`.
pub fn map_string(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object) else {
        return "<none>".into();
    };
    if map.is_empty() {
        return "<none>".into();
    }
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// A LabelSelector as kubectl prints it.
pub fn selector_string(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return "<none>".into();
    };
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        let mut pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        pairs.sort();
        parts.extend(pairs);
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            parts.push(match e["operator"].as_str().unwrap_or("") {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                op => format!("{key} {op}"),
            });
        }
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// The string at a JSON pointer, or "".
pub fn str_at<'a>(o: &'a Value, pointer: &str) -> &'a str {
    o.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int_at(o: &Value, pointer: &str) -> i64 {
    o.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn count(map: Option<&Value>) -> usize {
    map.and_then(Value::as_object).map_or(0, |m| m.len())
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        "<unknown>".into()
    } else {
        s.to_string()
    }
}

fn or_default(s: &str, default: &str) -> String {
    if s.is_empty() {
        default.to_string()
    } else {
        s.to_string()
    }
}

fn age(o: &Value, now: DateTime<Utc>) -> String {
    o.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_time)
        .map(|t| human_duration(now - t))
        .unwrap_or_else(|| "<unknown>".into())
}

/// Parses an RFC 3339 timestamp as Kubernetes writes them.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Bytes as `ls -h`-like text with binary units: 0, 512B, 4.0Ki, 12Mi.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    value /= 1024.0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// kubectl's age format (k8s.io/apimachinery/pkg/util/duration.HumanDuration).
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        parse_time("2026-01-01T12:00:00Z").unwrap()
    }

    #[test]
    fn human_duration_matches_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (8 * 3600, "8h"),
            (47 * 3600, "47h"),
            (48 * 3600, "2d"),
            (3 * 86400 + 5 * 3600, "3d5h"),
            (30 * 86400, "30d"),
            (2 * 365 * 86400, "2y"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(chrono::Duration::seconds(secs)),
                want,
                "{secs}s"
            );
        }
    }

    #[test]
    fn table_pads_columns_with_three_spaces_and_no_trailing_blanks() {
        let t = Table {
            headers: vec!["NAME".into(), "READY".into(), "AGE".into()],
            rows: vec![
                vec!["web-0".into(), "1/1".into(), "5s".into()],
                vec!["w".into(), "".into(), "".into()],
            ],
        };
        assert_eq!(
            t.render(true),
            "NAME    READY   AGE\nweb-0   1/1     5s\nw\n"
        );
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "web-0", "creationTimestamp": "2026-01-01T11:59:00Z"},
            "spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "i"}]},
            "status": status,
        })
    }

    #[test]
    fn pod_status_column_follows_kubectl() {
        let cases = [
            (json!({"phase": "Pending"}), "Pending", "0/1", "0"),
            (
                json!({"phase": "Pending", "initContainerStatuses": [{"restartCount": 0, "state": {"running": {}}}]}),
                "Init:0/1",
                "0/1",
                "0",
            ),
            (
                json!({"phase": "Pending", "initContainerStatuses": [{"restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T11:59:30Z"}}}]}),
                "Init:CrashLoopBackOff",
                "0/1",
                "2 (30s ago)",
            ),
            (
                json!({"phase": "Running",
                  "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                  "initContainerStatuses": [{"restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                  "containerStatuses": [{"ready": true, "restartCount": 1, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": "2026-01-01T11:58:00Z"}}}]}),
                "Running",
                "1/1",
                "1 (2m ago)",
            ),
            (
                json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                  "containerStatuses": [{"ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}),
                "CrashLoopBackOff",
                "0/1",
                "3",
            ),
            (
                json!({"phase": "Failed", "conditions": [{"type": "Initialized", "status": "True"}],
                  "containerStatuses": [{"ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 2, "reason": ""}}}]}),
                "ExitCode:2",
                "0/1",
                "0",
            ),
        ];
        for (status, want_status, want_ready, want_restarts) in cases {
            let s = pod_summary(&pod(status.clone()), now());
            assert_eq!(
                (s.status.as_str(), s.ready.as_str(), s.restarts.as_str()),
                (want_status, want_ready, want_restarts),
                "{status}"
            );
        }
    }

    #[test]
    fn a_pod_being_deleted_is_terminating() {
        let mut p = pod(
            json!({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
            "containerStatuses": [{"ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T12:00:30Z");
        assert_eq!(pod_summary(&p, now()).status, "Terminating");
    }

    #[test]
    fn pods_table_has_kubectl_columns_and_wide_extras() {
        let p = pod(
            json!({"phase": "Running", "podIP": "10.244.0.5", "conditions": [{"type": "Initialized", "status": "True"}],
            "containerStatuses": [{"ready": true, "restartCount": 0, "state": {"running": {}}}]}),
        );
        let text = table("Pod", &[p.clone()], false, false, now()).render(true);
        assert_eq!(
            text,
            "NAME    READY   STATUS    RESTARTS   AGE\nweb-0   1/1     Running   0          60s\n"
        );
        let wide = table("Pod", &[p], true, true, now()).render(true);
        assert!(wide.starts_with("NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE   IP           NODE     NOMINATED NODE   READINESS GATES\n"), "{wide}");
    }

    #[test]
    fn services_show_ports_and_headless_cluster_ip() {
        let svc = json!({"metadata": {"name": "db", "creationTimestamp": "2026-01-01T10:00:00Z"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        let text = table("Service", &[svc], false, false, now()).render(true);
        assert_eq!(
            text,
            "NAME   TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)           AGE\ndb     ClusterIP   None         <none>        5432/TCP,53/UDP   120m\n"
        );
    }

    #[test]
    fn selectors_print_as_kubectl() {
        let s = json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]}, {"key": "g", "operator": "DoesNotExist"}]});
        assert_eq!(selector_string(Some(&s)), "a=1,b=2,t in (x,y),!g");
    }

    #[test]
    fn claims_show_their_node_directory_and_bytes_used() {
        let bound = json!({"metadata": {"name": "data-web-0", "creationTimestamp": "2026-01-01T11:00:00Z",
                "annotations": {"volume.kubernetes.io/selected-node": "n1", "berth.io/used-bytes": "5242880",
                                "berth.io/directory": "/var/lib/berth/volumes/claims/data-web-0"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
        let pending = json!({"metadata": {"name": "data-web-1", "creationTimestamp": "2026-01-01T11:00:00Z"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}});
        let text = table(
            "PersistentVolumeClaim",
            &[bound, pending],
            false,
            false,
            now(),
        )
        .render(true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "NAME         STATUS    VOLUME                                     CAPACITY   ACCESS MODES   STORAGECLASS   NODE   USED    AGE"
        );
        assert_eq!(
            lines[1],
            "data-web-0   Bound     /var/lib/berth/volumes/claims/data-web-0   1Gi        RWO                           n1     5.0Mi   60m"
        );
        assert_eq!(
            lines[2],
            "data-web-1   Pending                                                         RWO                                          60m"
        );
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(4096), "4.0Ki");
        assert_eq!(human_bytes(12 * 1024 * 1024), "12Mi");
    }
}
