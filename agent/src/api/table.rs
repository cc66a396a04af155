//! Server-side printing: kubectl asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and
//! prints the columns the server gives. berth's columns are the ones its own CLI prints
//! ([`crate::cli::table`]), as `meta.k8s.io/v1` Tables with wide columns at priority 1.

use chrono::Utc;
use serde_json::{Value, json};

use crate::cli::table;
use crate::objects::Kind;

/// Does this Accept header ask for a Table?
pub fn wants_table(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.contains(&"as=Table") && params.iter().any(|p| p.starts_with("g=meta.k8s.io"))
        })
    })
}

/// The Table for a list (`items`) or a single object of `kind`.
pub fn to_table(kind: Kind, body: &Value) -> Value {
    let objects: Vec<Value> = match body.get("items").and_then(Value::as_array) {
        Some(items) => items.clone(),
        None => vec![body.clone()],
    };
    let t = table::table(kind.info().kind, &objects, true, false, Utc::now());
    let narrow = table::table(kind.info().kind, &[], false, false, Utc::now())
        .headers
        .len();
    let columns: Vec<Value> = t
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (type_, format) = match h.as_str() {
                "NAME" => ("string", "name"),
                "AGE" | "LAST SEEN" | "FIRST SEEN" | "DURATION" | "LAST SCHEDULE" => ("string", ""),
                "RESTARTS" | "COUNT" | "DATA" => ("string", ""),
                _ => ("string", ""),
            };
            json!({
                "name": title(h),
                "type": type_,
                "format": format,
                "description": "",
                "priority": if i < narrow { 0 } else { 1 },
            })
        })
        .collect();
    let rows: Vec<Value> = t
        .rows
        .iter()
        .zip(objects.iter())
        .map(|(cells, object)| {
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": object.get("metadata").cloned().unwrap_or(Value::Null),
                },
            })
        })
        .collect();
    let resource_version = body
        .pointer("/metadata/resourceVersion")
        .cloned()
        .unwrap_or(json!(""));
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// kubectl upper-cases column names itself; Kubernetes sends them capitalised ("Name").
fn title(header: &str) -> String {
    header
        .split(' ')
        .map(|w| {
            let lower = w.to_lowercase();
            let mut c = lower.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_headers_are_recognised() {
        assert!(wants_table(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        )));
        assert!(!wants_table(Some("application/json")));
        assert!(!wants_table(None));
    }

    #[test]
    fn a_pod_list_becomes_a_table_with_wide_columns_at_priority_one() {
        let list = json!({"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": [
            {"metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
             "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running"}}
        ]});
        let t = to_table(Kind::Pod, &list);
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(&names[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
        assert_eq!(t["columnDefinitions"][0]["priority"], 0);
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["cells"][0], "web-0");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web-0");
    }
}
