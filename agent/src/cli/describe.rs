//! `berth describe`: an object in detail, laid out as kubectl describes it, followed by its
//! events. Pods, StatefulSets, Services and claims have their own layouts; other kinds get
//! the common header and their spec and status.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::args::DescribeArgs;
use super::table::{self, human_duration, map_string, parse_time, str_at};
use super::target::{Targets, collection_path, encode, object_path, parse_targets};
use super::{CliError, Ctx};
use crate::objects::Kind;

mod batch;

/// Lines of `key: value`, aligned as kubectl aligns them: consecutive keys at one indent
/// share a value column.
#[derive(Default)]
struct Doc {
    lines: Vec<Line>,
}

enum Line {
    Field {
        indent: usize,
        key: String,
        value: String,
    },
    Text {
        indent: usize,
        text: String,
    },
}

impl Doc {
    fn field(&mut self, indent: usize, key: &str, value: impl Into<String>) {
        let value = value.into();
        let mut values = value.split('\n');
        let first = values.next().unwrap_or("").to_string();
        self.lines.push(Line::Field {
            indent,
            key: format!("{key}:"),
            value: first,
        });
        for more in values {
            // Continuation lines (labels, annotations) align under the first value.
            self.lines.push(Line::Field {
                indent,
                key: String::new(),
                value: more.to_string(),
            });
        }
    }

    fn text(&mut self, indent: usize, text: impl Into<String>) {
        self.lines.push(Line::Text {
            indent,
            text: text.into(),
        });
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.lines.len() {
            match &self.lines[i] {
                Line::Text { indent, text } => {
                    out.push_str(&" ".repeat(*indent));
                    out.push_str(text);
                    out.push('\n');
                    i += 1;
                }
                Line::Field { .. } => {
                    // Like kubectl's tabwriter: consecutive key/value lines share one value
                    // column whatever their indentation; a plain text line ends the block.
                    let start = i;
                    while i < self.lines.len() && matches!(&self.lines[i], Line::Field { .. }) {
                        i += 1;
                    }
                    let width = self.lines[start..i]
                        .iter()
                        .map(|l| match l {
                            Line::Field { indent, key, .. } => indent + key.len(),
                            Line::Text { .. } => 0,
                        })
                        .max()
                        .unwrap_or(0);
                    for line in &self.lines[start..i] {
                        if let Line::Field { indent, key, value } = line {
                            let cell = format!("{}{key}", " ".repeat(*indent));
                            let text = if value.is_empty() {
                                cell
                            } else {
                                format!("{cell:<width$}  {value}")
                            };
                            out.push_str(text.trim_end());
                            out.push('\n');
                        }
                    }
                }
            }
        }
        out
    }
}

pub async fn describe(ctx: &Ctx, a: DescribeArgs) -> Result<(), CliError> {
    let namespace = a.ns.namespace.clone().unwrap_or_else(|| "default".into());
    let mut objects: Vec<(Kind, Value)> = Vec::new();
    match parse_targets(&a.args)? {
        Targets::Named(named) => {
            for (kind, name) in named {
                objects.push((
                    kind,
                    ctx.client
                        .get(&object_path(kind, &namespace, &name))
                        .await?,
                ));
            }
        }
        Targets::Collections(kinds) => {
            for kind in kinds {
                let ns = (!a.all_namespaces).then_some(namespace.as_str());
                let mut path = collection_path(kind, ns);
                if let Some(sel) = &a.selector {
                    path.push_str(&format!("?labelSelector={}", encode(sel)));
                }
                let list = ctx.client.get(&path).await?;
                for item in list["items"].as_array().into_iter().flatten() {
                    objects.push((kind, item.clone()));
                }
            }
        }
    }
    let now = Utc::now();
    let mut first = true;
    for (kind, object) in objects {
        if !first {
            println!("\n");
        }
        first = false;
        let events = events_for(ctx, &object).await.unwrap_or_default();
        print!("{}", render(kind, &object, &events, now));
    }
    Ok(())
}

/// The events whose involvedObject is this object, oldest first.
async fn events_for(ctx: &Ctx, object: &Value) -> Result<Vec<Value>, CliError> {
    let uid = str_at(object, "/metadata/uid");
    let ns = str_at(object, "/metadata/namespace");
    let ns = if ns.is_empty() { "default" } else { ns };
    let list = ctx
        .client
        .get(&collection_path(Kind::Event, Some(ns)))
        .await?;
    let mut events: Vec<Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| str_at(e, "/involvedObject/uid") == uid)
        .cloned()
        .collect();
    events.sort_by_key(|e| event_last(e));
    Ok(events)
}

fn event_last(e: &Value) -> Option<DateTime<Utc>> {
    [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| e.pointer(p).and_then(Value::as_str).and_then(parse_time))
}

/// Renders one object's description (pure, for tests).
pub fn render(kind: Kind, o: &Value, events: &[Value], now: DateTime<Utc>) -> String {
    let mut d = Doc::default();
    d.field(0, "Name", str_at(o, "/metadata/name"));
    if kind.info().namespaced {
        d.field(0, "Namespace", str_at(o, "/metadata/namespace"));
    }
    match kind {
        Kind::Pod => pod(&mut d, o, now),
        Kind::StatefulSet => statefulset(&mut d, o, now),
        Kind::DaemonSet => daemonset(&mut d, o, now),
        Kind::Service => service(&mut d, o),
        Kind::PersistentVolumeClaim => claim(&mut d, o),
        Kind::Job => batch::job(&mut d, o, now),
        Kind::CronJob => batch::cron_job(&mut d, o, now),
        _ => generic(&mut d, o),
    }
    let mut out = d.render();
    out.push_str(&render_events(events, now));
    out
}

fn labels_and_annotations(d: &mut Doc, o: &Value) {
    d.field(0, "Labels", multi_map(o.pointer("/metadata/labels")));
    d.field(
        0,
        "Annotations",
        multi_map(o.pointer("/metadata/annotations")),
    );
}

fn multi_map(map: Option<&Value>) -> String {
    let Some(map) = map.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".into();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            )
        })
        .collect();
    pairs.sort();
    pairs.join("\n")
}

fn time_text(s: &str) -> String {
    parse_time(s)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S %z").to_string())
        .unwrap_or_else(|| s.to_string())
}

fn controlled_by(o: &Value) -> Option<String> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
        .map(|r| {
            format!(
                "{}/{}",
                r["kind"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or("")
            )
        })
}

fn pod(d: &mut Doc, o: &Value, now: DateTime<Utc>) {
    d.field(0, "Priority", "0");
    let node = str_at(o, "/spec/nodeName");
    let host_ip = str_at(o, "/status/hostIP");
    d.field(
        0,
        "Node",
        match (node.is_empty(), host_ip.is_empty()) {
            (true, _) => "<none>".to_string(),
            (false, true) => node.to_string(),
            (false, false) => format!("{node}/{host_ip}"),
        },
    );
    if let Some(start) = o.pointer("/status/startTime").and_then(Value::as_str) {
        d.field(0, "Start Time", time_text(start));
    }
    labels_and_annotations(d, o);
    let summary = table::pod_summary(o, now);
    let phase = str_at(o, "/status/phase");
    if let Some(ts) = o
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
    {
        d.field(
            0,
            "Status",
            format!(
                "Terminating (lasts {})",
                human_duration(now - parse_time(ts).unwrap_or(now))
            ),
        );
        if let Some(grace) = o
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
        {
            d.field(0, "Termination Grace Period", format!("{grace}s"));
        }
    } else {
        d.field(
            0,
            "Status",
            if phase.is_empty() { "Pending" } else { phase },
        );
    }
    if summary.status != phase
        && !summary.status.is_empty()
        && o.pointer("/metadata/deletionTimestamp").is_none()
    {
        d.field(0, "Reason", str_at(o, "/status/reason"));
    }
    let message = str_at(o, "/status/message");
    if !message.is_empty() {
        d.field(0, "Message", message);
    }
    d.field(0, "IP", or_empty(str_at(o, "/status/podIP")));
    if let Some(ips) = o
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        d.text(0, "IPs:");
        for ip in ips {
            d.field(2, "IP", str_at(ip, "/ip"));
        }
    } else {
        d.field(0, "IPs", "<none>");
    }
    if let Some(c) = controlled_by(o) {
        d.field(0, "Controlled By", c);
    }
    let statuses = |key: &str| -> Vec<Value> {
        o.pointer(&format!("/status/{key}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if let Some(init) = o
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        d.text(0, "Init Containers:");
        let st = statuses("initContainerStatuses");
        for c in init {
            container(d, c, &st);
        }
    }
    d.text(0, "Containers:");
    let st = statuses("containerStatuses");
    for c in o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        container(d, c, &st);
    }
    if let Some(conditions) = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        d.text(0, "Conditions:");
        let width = conditions
            .iter()
            .map(|c| str_at(c, "/type").len())
            .max()
            .unwrap_or(4)
            .max(4);
        d.text(2, format!("{:<width$}  Status", "Type"));
        for c in conditions {
            d.text(
                2,
                format!("{:<width$}  {}", str_at(c, "/type"), str_at(c, "/status")),
            );
        }
    }
    // A pod held on an unreachable node by its local claim says so, and how to release it.
    if let Some(pinned) = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter().find(|c| {
                c["type"] == crate::controllers::node_lifecycle::PINNED_CONDITION
                    && c["status"] == "True"
            })
        })
    {
        d.field(0, "Pinned", str_at(pinned, "/message"));
    }
    d.text(0, "Volumes:");
    let volumes = o
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if volumes.is_empty() {
        d.text(2, "<none>");
    }
    for v in &volumes {
        d.text(2, format!("{}:", str_at(v, "/name")));
        volume(d, v);
    }
    d.field(0, "QoS Class", qos_class(o));
    d.field(
        0,
        "Node-Selectors",
        map_string(o.pointer("/spec/nodeSelector")),
    );
    let tolerations: Vec<String> = o
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let mut s = str_at(t, "/key").to_string();
            if !str_at(t, "/value").is_empty() {
                s.push_str(&format!("={}", str_at(t, "/value")));
            }
            if !str_at(t, "/effect").is_empty() {
                s.push_str(&format!(":{}", str_at(t, "/effect")));
            }
            if s.is_empty() {
                s = format!("op={}", str_at(t, "/operator"));
            }
            s
        })
        .collect();
    d.field(
        0,
        "Tolerations",
        if tolerations.is_empty() {
            "<none>".into()
        } else {
            tolerations.join("\n")
        },
    );
}

fn container(d: &mut Doc, c: &Value, statuses: &[Value]) {
    let name = str_at(c, "/name");
    let status = statuses.iter().find(|s| str_at(s, "/name") == name);
    d.text(2, format!("{name}:"));
    if let Some(s) = status {
        d.field(4, "Container ID", or_empty(str_at(s, "/containerID")));
    }
    d.field(4, "Image", str_at(c, "/image"));
    if let Some(s) = status {
        d.field(4, "Image ID", or_empty(str_at(s, "/imageID")));
    }
    let ports: Vec<String> = c
        .pointer("/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                p["containerPort"],
                p["protocol"].as_str().unwrap_or("TCP")
            )
        })
        .collect();
    d.field(
        4,
        "Port",
        if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(", ")
        },
    );
    let host_ports: Vec<String> = c
        .pointer("/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "{}/{}",
                p["hostPort"].as_i64().unwrap_or(0),
                p["protocol"].as_str().unwrap_or("TCP")
            )
        })
        .collect();
    d.field(
        4,
        "Host Port",
        if host_ports.is_empty() {
            "<none>".into()
        } else {
            host_ports.join(", ")
        },
    );
    for (key, label) in [("command", "Command"), ("args", "Args")] {
        if let Some(list) = c
            .get(key)
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            d.text(4, format!("{label}:"));
            for arg in list {
                d.text(6, arg.as_str().unwrap_or("").to_string());
            }
        }
    }
    if let Some(s) = status {
        container_state(d, "State", s.get("state"));
        if s.get("lastState")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
        {
            container_state(d, "Last State", s.get("lastState"));
        }
        d.field(
            4,
            "Ready",
            if s["ready"] == true { "True" } else { "False" },
        );
        d.field(
            4,
            "Restart Count",
            s["restartCount"].as_i64().unwrap_or(0).to_string(),
        );
    }
    for (key, label) in [("limits", "Limits"), ("requests", "Requests")] {
        if let Some(m) = c
            .pointer(&format!("/resources/{key}"))
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            d.text(4, format!("{label}:"));
            for (k, v) in m {
                d.field(6, k, v.as_str().unwrap_or(""));
            }
        }
    }
    for (key, label) in [
        ("livenessProbe", "Liveness"),
        ("readinessProbe", "Readiness"),
        ("startupProbe", "Startup"),
    ] {
        if let Some(p) = c.get(key).filter(|p| p.is_object()) {
            d.field(4, label, probe_text(p));
        }
    }
    let env: Vec<(String, String)> = c
        .pointer("/env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| {
            let name = str_at(e, "/name").to_string();
            let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
                v.to_string()
            } else if let Some(r) = e.pointer("/valueFrom/configMapKeyRef") {
                format!(
                    "<set to the key '{}' of config map '{}'>",
                    str_at(r, "/key"),
                    str_at(r, "/name")
                )
            } else if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
                format!(
                    "<set to the key '{}' in secret '{}'>",
                    str_at(r, "/key"),
                    str_at(r, "/name")
                )
            } else if let Some(r) = e.pointer("/valueFrom/fieldRef") {
                format!("({}:{})", str_at(r, "/apiVersion"), str_at(r, "/fieldPath"))
            } else {
                String::new()
            };
            (name, value)
        })
        .collect();
    if env.is_empty() {
        d.field(4, "Environment", "<none>");
    } else {
        d.text(4, "Environment:");
        for (k, v) in env {
            d.field(6, &k, v);
        }
    }
    let mounts: Vec<String> = c
        .pointer("/volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            let mode = if m["readOnly"] == true { "ro" } else { "rw" };
            let sub = str_at(m, "/subPath");
            let sub = if sub.is_empty() {
                String::new()
            } else {
                format!(",path=\"{sub}\"")
            };
            format!(
                "{} from {} ({mode}{sub})",
                str_at(m, "/mountPath"),
                str_at(m, "/name")
            )
        })
        .collect();
    if mounts.is_empty() {
        d.field(4, "Mounts", "<none>");
    } else {
        d.text(4, "Mounts:");
        for m in mounts {
            d.text(6, m);
        }
    }
}

fn container_state(d: &mut Doc, label: &str, state: Option<&Value>) {
    let Some(state) = state.and_then(Value::as_object) else {
        d.field(4, label, "Waiting");
        return;
    };
    if let Some(r) = state.get("running") {
        d.field(4, label, "Running");
        d.field(6, "Started", time_text(str_at(r, "/startedAt")));
    } else if let Some(t) = state.get("terminated") {
        d.field(4, label, "Terminated");
        d.field(6, "Reason", str_at(t, "/reason"));
        if !str_at(t, "/message").is_empty() {
            d.field(6, "Message", str_at(t, "/message"));
        }
        d.field(
            6,
            "Exit Code",
            t["exitCode"].as_i64().unwrap_or(0).to_string(),
        );
        if let Some(sig) = t["signal"].as_i64().filter(|s| *s != 0) {
            d.field(6, "Signal", sig.to_string());
        }
        d.field(6, "Started", time_text(str_at(t, "/startedAt")));
        d.field(6, "Finished", time_text(str_at(t, "/finishedAt")));
    } else if let Some(w) = state.get("waiting") {
        d.field(4, label, "Waiting");
        if !str_at(w, "/reason").is_empty() {
            d.field(6, "Reason", str_at(w, "/reason"));
        }
        if !str_at(w, "/message").is_empty() {
            d.field(6, "Message", str_at(w, "/message"));
        }
    } else {
        d.field(4, label, "Waiting");
    }
}

/// `exec [cat /ready] delay=0s timeout=1s period=10s #success=1 #failure=3`
fn probe_text(p: &Value) -> String {
    let handler = if let Some(cmd) = p.pointer("/exec/command").and_then(Value::as_array) {
        let words: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
        format!("exec [{}]", words.join(" "))
    } else if let Some(h) = p.get("httpGet") {
        let host = str_at(h, "/host");
        let scheme = str_at(h, "/scheme").to_lowercase();
        let scheme = if scheme.is_empty() {
            "http".into()
        } else {
            scheme
        };
        format!(
            "{scheme}-get {scheme}://{}:{}{}",
            host,
            h["port"]
                .as_i64()
                .map(|p| p.to_string())
                .unwrap_or_else(|| h["port"].as_str().unwrap_or("").into()),
            str_at(h, "/path")
        )
    } else if let Some(t) = p.get("tcpSocket") {
        format!(
            "tcp-socket {}:{}",
            str_at(t, "/host"),
            t["port"]
                .as_i64()
                .map(|p| p.to_string())
                .unwrap_or_else(|| t["port"].as_str().unwrap_or("").into())
        )
    } else {
        "unknown".into()
    };
    let n = |k: &str, default: i64| p.get(k).and_then(Value::as_i64).unwrap_or(default);
    format!(
        "{handler} delay={}s timeout={}s period={}s #success={} #failure={}",
        n("initialDelaySeconds", 0),
        n("timeoutSeconds", 1),
        n("periodSeconds", 10),
        n("successThreshold", 1),
        n("failureThreshold", 3)
    )
}

fn volume(d: &mut Doc, v: &Value) {
    if let Some(c) = v.get("persistentVolumeClaim") {
        d.field(
            4,
            "Type",
            "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
        );
        d.field(4, "ClaimName", str_at(c, "/claimName"));
        d.field(
            4,
            "ReadOnly",
            if c["readOnly"] == true {
                "true"
            } else {
                "false"
            },
        );
    } else if let Some(e) = v.get("emptyDir") {
        d.field(
            4,
            "Type",
            "EmptyDir (a temporary directory that shares a pod's lifetime)",
        );
        d.field(4, "Medium", str_at(e, "/medium"));
        d.field(4, "SizeLimit", or_unset(str_at(e, "/sizeLimit")));
    } else if let Some(h) = v.get("hostPath") {
        d.field(4, "Type", "HostPath (bare host directory volume)");
        d.field(4, "Path", str_at(h, "/path"));
        d.field(4, "HostPathType", str_at(h, "/type"));
    } else if let Some(c) = v.get("configMap") {
        d.field(4, "Type", "ConfigMap (a volume populated by a ConfigMap)");
        d.field(4, "Name", str_at(c, "/name"));
        d.field(
            4,
            "Optional",
            if c["optional"] == true {
                "true"
            } else {
                "false"
            },
        );
    } else if let Some(s) = v.get("secret") {
        d.field(4, "Type", "Secret (a volume populated by a Secret)");
        d.field(4, "SecretName", str_at(s, "/secretName"));
        d.field(
            4,
            "Optional",
            if s["optional"] == true {
                "true"
            } else {
                "false"
            },
        );
    } else if v.get("projected").is_some() {
        d.field(
            4,
            "Type",
            "Projected (a volume that contains injected data from multiple sources)",
        );
    } else if v.get("downwardAPI").is_some() {
        d.field(
            4,
            "Type",
            "DownwardAPI (a volume populated by information about the pod)",
        );
    } else {
        d.field(4, "Type", "<unknown>");
    }
}

fn qos_class(o: &Value) -> String {
    if let Some(q) = o.pointer("/status/qosClass").and_then(Value::as_str) {
        return q.to_string();
    }
    let containers = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let any = containers.iter().any(|c| {
        c.pointer("/resources/limits")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
            || c.pointer("/resources/requests")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
    });
    if !any {
        return "BestEffort".into();
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = c.pointer(&format!("/resources/limits/{r}"));
            let request = c.pointer(&format!("/resources/requests/{r}")).or(limit);
            limit.is_some() && limit == request
        })
    });
    if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

fn statefulset(d: &mut Doc, o: &Value, now: DateTime<Utc>) {
    if let Some(t) = o
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
    {
        d.field(0, "CreationTimestamp", time_text(t));
    }
    d.field(
        0,
        "Selector",
        table::selector_string(o.pointer("/spec/selector")),
    );
    labels_and_annotations(d, o);
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        d.field(
            0,
            "Status",
            "Terminating (pods stop in reverse ordinal order, each gone before the next)",
        );
    }
    let desired = o
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    d.field(
        0,
        "Replicas",
        format!(
            "{desired} desired | {} total",
            o.pointer("/status/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        ),
    );
    let start = o
        .pointer("/spec/ordinals/start")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    d.field(
        0,
        "Ordinals",
        if desired > 0 {
            format!("{start} to {}", start + desired - 1)
        } else {
            "<none>".to_string()
        },
    );
    d.field(0, "Service Name", or_unset(str_at(o, "/spec/serviceName")));
    d.field(
        0,
        "Update Strategy",
        or_default(str_at(o, "/spec/updateStrategy/type"), "RollingUpdate"),
    );
    if let Some(p) = o
        .pointer("/spec/updateStrategy/rollingUpdate/partition")
        .and_then(Value::as_i64)
    {
        d.field(2, "Partition", p.to_string());
    }
    if let Some(m) = o.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable") {
        d.field(
            2,
            "Max Unavailable",
            m.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| m.to_string()),
        );
    }
    d.field(
        0,
        "Pod Management Policy",
        or_default(str_at(o, "/spec/podManagementPolicy"), "OrderedReady"),
    );
    d.field(
        0,
        "Min Ready Seconds",
        o.pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string(),
    );
    d.field(
        0,
        "Claim Retention",
        format!(
            "whenDeleted: {}, whenScaled: {}",
            or_default(
                str_at(o, "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted"),
                "Retain"
            ),
            or_default(
                str_at(o, "/spec/persistentVolumeClaimRetentionPolicy/whenScaled"),
                "Retain"
            )
        ),
    );
    d.field(
        0,
        "Pods Status",
        format!(
            "{} Ready / {} Available / {} Current / {} Updated",
            o.pointer("/status/readyReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            o.pointer("/status/availableReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            o.pointer("/status/currentReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            o.pointer("/status/updatedReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        ),
    );
    d.field(
        0,
        "Current Revision",
        or_empty(str_at(o, "/status/currentRevision")),
    );
    d.field(
        0,
        "Update Revision",
        or_empty(str_at(o, "/status/updateRevision")),
    );
    let generation = o
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let observed = o
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if observed < generation {
        d.field(
            0,
            "Observed Generation",
            format!("{observed} (the controller has not seen generation {generation} yet)"),
        );
    }
    d.text(0, "Pod Template:");
    d.field(
        2,
        "Labels",
        multi_map(o.pointer("/spec/template/metadata/labels")),
    );
    if let Some(annotations) = o
        .pointer("/spec/template/metadata/annotations")
        .filter(|a| a.as_object().is_some_and(|m| !m.is_empty()))
    {
        d.field(2, "Annotations", multi_map(Some(annotations)));
    }
    d.text(2, "Containers:");
    for c in o
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        container(d, c, &[]);
    }
    let claims = o
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if claims.is_empty() {
        d.field(0, "Volume Claims", "<none>");
    } else {
        d.text(0, "Volume Claims:");
        let set_name = str_at(o, "/metadata/name");
        for c in claims {
            let name = str_at(&c, "/metadata/name");
            d.field(2, "Name", name);
            d.field(2, "StorageClass", str_at(&c, "/spec/storageClassName"));
            d.field(2, "Labels", multi_map(c.pointer("/metadata/labels")));
            d.field(
                2,
                "Annotations",
                multi_map(c.pointer("/metadata/annotations")),
            );
            d.field(
                2,
                "Capacity",
                str_at(&c, "/spec/resources/requests/storage"),
            );
            let modes: Vec<&str> = c
                .pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            d.field(2, "Access Modes", format!("[{}]", modes.join(" ")));
            d.field(2, "Claims", format!("{name}-{set_name}-<ordinal>"));
        }
    }
    conditions(d, o, now);
}

fn daemonset(d: &mut Doc, o: &Value, now: DateTime<Utc>) {
    d.field(
        0,
        "Selector",
        table::selector_string(o.pointer("/spec/selector")),
    );
    d.field(
        0,
        "Node-Selector",
        map_string(o.pointer("/spec/template/spec/nodeSelector")),
    );
    labels_and_annotations(d, o);
    let count = |field: &str| {
        o.pointer(&format!("/status/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string()
    };
    d.field(
        0,
        "Desired Number of Nodes Scheduled",
        count("desiredNumberScheduled"),
    );
    d.field(
        0,
        "Current Number of Nodes Scheduled",
        count("currentNumberScheduled"),
    );
    d.field(
        0,
        "Number of Nodes Scheduled with Up-to-date Pods",
        count("updatedNumberScheduled"),
    );
    d.field(
        0,
        "Number of Nodes Scheduled with Available Pods",
        count("numberAvailable"),
    );
    d.field(
        0,
        "Number of Nodes Misscheduled",
        count("numberMisscheduled"),
    );
    d.field(
        0,
        "Pods Status",
        format!(
            "{} Ready / {} Unavailable",
            count("numberReady"),
            count("numberUnavailable")
        ),
    );
    d.field(
        0,
        "Update Strategy",
        or_default(str_at(o, "/spec/updateStrategy/type"), "RollingUpdate"),
    );
    for (path, label) in [
        ("maxUnavailable", "Max Unavailable"),
        ("maxSurge", "Max Surge"),
    ] {
        if let Some(m) = o.pointer(&format!("/spec/updateStrategy/rollingUpdate/{path}")) {
            d.field(
                2,
                label,
                m.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| m.to_string()),
            );
        }
    }
    d.field(
        0,
        "Min Ready Seconds",
        o.pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string(),
    );
    let generation = o
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let observed = o
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if observed < generation {
        d.field(
            0,
            "Observed Generation",
            format!("{observed} (the controller has not seen generation {generation} yet)"),
        );
    }
    d.text(0, "Pod Template:");
    d.field(
        2,
        "Labels",
        multi_map(o.pointer("/spec/template/metadata/labels")),
    );
    d.text(2, "Containers:");
    for c in o
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        container(d, c, &[]);
    }
    conditions(d, o, now);
}

fn service(d: &mut Doc, o: &Value) {
    labels_and_annotations(d, o);
    d.field(0, "Selector", map_string(o.pointer("/spec/selector")));
    d.field(0, "Type", or_default(str_at(o, "/spec/type"), "ClusterIP"));
    d.field(0, "IP Family Policy", "SingleStack");
    d.field(0, "IP", or_default(str_at(o, "/spec/clusterIP"), "None"));
    for p in o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = str_at(p, "/name");
        d.field(
            0,
            "Port",
            format!(
                "{}  {}/{}",
                or_unset(name),
                p["port"],
                p["protocol"].as_str().unwrap_or("TCP")
            ),
        );
        let target = p.get("targetPort").map(|t| {
            t.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| t.to_string())
        });
        d.field(
            0,
            "TargetPort",
            format!(
                "{}/{}",
                target.unwrap_or_default(),
                p["protocol"].as_str().unwrap_or("TCP")
            ),
        );
    }
    d.field(
        0,
        "Session Affinity",
        or_default(str_at(o, "/spec/sessionAffinity"), "None"),
    );
    d.field(
        0,
        "Publish Not Ready",
        if o.pointer("/spec/publishNotReadyAddresses") == Some(&Value::Bool(true)) {
            "true"
        } else {
            "false"
        },
    );
}

fn claim(d: &mut Doc, o: &Value) {
    let annotation = |key: &str| -> String {
        o.pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    d.field(0, "StorageClass", str_at(o, "/spec/storageClassName"));
    let deleting = o
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    d.field(
        0,
        "Status",
        if deleting {
            "Terminating".to_string()
        } else {
            str_at(o, "/status/phase").to_string()
        },
    );
    d.field(0, "Volume", str_at(o, "/spec/volumeName"));
    labels_and_annotations(d, o);
    let finalizers: Vec<&str> = o
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    d.field(0, "Finalizers", format!("[{}]", finalizers.join(" ")));
    d.field(0, "Capacity", str_at(o, "/status/capacity/storage"));
    let modes: Vec<&str> = o
        .pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    d.field(
        0,
        "Access Modes",
        modes
            .iter()
            .map(|m| table::access_mode_short(m))
            .collect::<Vec<_>>()
            .join(","),
    );
    d.field(
        0,
        "VolumeMode",
        or_default(str_at(o, "/spec/volumeMode"), "Filesystem"),
    );
    let node = annotation("volume.kubernetes.io/selected-node");
    d.field(
        0,
        "Node",
        or_default(&node, "<none> (waiting for the first pod that uses it)"),
    );
    d.field(
        0,
        "Directory",
        or_default(&annotation("berth.io/directory"), "<not created yet>"),
    );
    let used = annotation("berth.io/used-bytes").parse::<u64>().ok();
    d.field(
        0,
        "Used",
        match used {
            Some(bytes) => match table::parse_time(&annotation("berth.io/used-bytes-at")) {
                Some(at) => format!(
                    "{} ({bytes} bytes, measured {})",
                    table::human_bytes(bytes),
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                None => format!("{} ({bytes} bytes)", table::human_bytes(bytes)),
            },
            None => "<unknown>".to_string(),
        },
    );
    let quota = annotation("berth.io/quota");
    d.field(
        0,
        "Size Limit",
        or_default(&quota, "<decided when the claim is bound to a node>"),
    );
    d.field(
        0,
        "Used By",
        or_default(&annotation("berth.io/used-by"), "<none>"),
    );
}

fn generic(d: &mut Doc, o: &Value) {
    labels_and_annotations(d, o);
    if let Some(c) = controlled_by(o) {
        d.field(0, "Controlled By", c);
    }
    for section in ["spec", "data", "status"] {
        if let Some(v) = o.get(section).filter(|v| !v.is_null()) {
            d.text(0, format!("{}:", capitalize(section)));
            for line in super::yaml_out::to_yaml(v).lines() {
                d.text(2, line.to_string());
            }
        }
    }
}

fn conditions(d: &mut Doc, o: &Value, now: DateTime<Utc>) {
    let Some(conditions) = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return;
    };
    d.text(0, "Conditions:");
    d.text(2, "Type  Status  Reason  Age  Message");
    for c in conditions {
        let age = c
            .pointer("/lastTransitionTime")
            .and_then(Value::as_str)
            .and_then(parse_time)
            .map(|t| human_duration(now - t))
            .unwrap_or_default();
        d.text(
            2,
            format!(
                "{}  {}  {}  {age}  {}",
                str_at(c, "/type"),
                str_at(c, "/status"),
                str_at(c, "/reason"),
                str_at(c, "/message")
            ),
        );
    }
}

fn render_events(events: &[Value], now: DateTime<Utc>) -> String {
    if events.is_empty() {
        return "Events:  <none>\n".into();
    }
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|e| {
            let count = e["count"].as_i64().unwrap_or(1);
            let last = event_last(e)
                .map(|t| human_duration(now - t))
                .unwrap_or_default();
            let first = [
                "/firstTimestamp",
                "/eventTime",
                "/metadata/creationTimestamp",
            ]
            .iter()
            .find_map(|p| e.pointer(p).and_then(Value::as_str).and_then(parse_time))
            .map(|t| human_duration(now - t))
            .unwrap_or_default();
            let age = if count > 1 {
                format!("{last} (x{count} over {first})")
            } else {
                last
            };
            [
                str_at(e, "/type").to_string(),
                str_at(e, "/reason").to_string(),
                age,
                or_default(
                    str_at(e, "/source/component"),
                    str_at(e, "/reportingComponent"),
                ),
                str_at(e, "/message").trim().to_string(),
            ]
        })
        .collect();
    let headers = ["Type", "Reason", "Age", "From", "Message"];
    let dashes = ["----", "------", "----", "----", "-------"];
    let mut widths = dashes.map(str::len);
    for r in &rows {
        for (i, cell) in r.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = "  ".to_string();
        for (i, c) in cells.iter().enumerate() {
            if i < 4 {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                s.push_str(c);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = "Events:\n".to_string();
    out.push_str(&line(headers));
    out.push_str(&line(dashes));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    out
}

fn or_empty(s: &str) -> String {
    s.to_string()
}

fn or_unset(s: &str) -> String {
    if s.is_empty() {
        "<unset>".into()
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

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_description_has_kubectl_sections() {
        let now = parse_time("2026-01-01T12:00:00Z").unwrap();
        let pod = json!({
            "metadata": {"name": "web-0", "namespace": "default", "uid": "u1", "labels": {"app": "web", "b": "2"},
                "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": true}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "busybox",
                "readinessProbe": {"exec": {"command": ["cat", "/ready"]}, "periodSeconds": 2},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}]},
            "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}], "hostIP": "192.0.2.2",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T11:59:00Z"}}}]}
        });
        let events = vec![
            json!({"type": "Normal", "reason": "Started", "message": "Started container web",
            "source": {"component": "kubelet"}, "lastTimestamp": "2026-01-01T11:59:00Z", "count": 1}),
        ];
        let text = render(Kind::Pod, &pod, &events, now);
        for want in [
            "Name:         web-0\n",
            "Node:         n1/192.0.2.2\n",
            "Labels:       app=web\n              b=2\n",
            "  IP:           10.244.0.5\nControlled By:  StatefulSet/web\n",
            "    Readiness:      exec [cat /ready] delay=0s timeout=1s period=2s #success=1 #failure=3\n",
            "      /data from data (rw)\n",
            "    ClaimName:   data-web-0\n",
            "  Type    Reason   Age   From     Message\n",
            "  ----    ------   ----  ----     -------\n",
            "  Normal  Started  60s   kubelet  Started container web\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn no_events_says_none() {
        assert_eq!(render_events(&[], Utc::now()), "Events:  <none>\n");
    }

    #[test]
    fn a_daemonset_description_counts_nodes_and_a_pinned_pod_says_how_to_release_it() {
        let now = parse_time("2026-01-01T12:00:00Z").unwrap();
        let ds = json!({"metadata": {"name": "agent", "namespace": "default", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"observedGeneration": 2, "desiredNumberScheduled": 3, "currentNumberScheduled": 3, "updatedNumberScheduled": 2,
                "numberAvailable": 2, "numberReady": 2, "numberUnavailable": 1, "numberMisscheduled": 1}});
        let out = render(Kind::DaemonSet, &ds, &[], now);
        for line in [
            "Desired Number of Nodes Scheduled:",
            "Number of Nodes Misscheduled:",
            "disk=ssd",
            "Max Surge:",
            "25%",
            "2 Ready / 1 Unavailable",
        ] {
            assert!(out.contains(line), "{line:?} missing:\n{out}");
        }
        let pod = json!({"metadata": {"name": "web-1", "namespace": "default"}, "spec": {"nodeName": "n2", "containers": []},
            "status": {"conditions": [{"type": "PinnedToLostNode", "status": "True", "message": "node n2 is unreachable; `berth node forget n2`"}]}});
        let out = render(Kind::Pod, &pod, &[], now);
        assert!(
            out.contains("Pinned:") && out.contains("berth node forget n2"),
            "{out}"
        );
    }
}
