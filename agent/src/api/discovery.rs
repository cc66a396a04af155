//! Discovery documents (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}`),
//! built from the kinds registry so that kubectl finds every kind berth serves.

use serde_json::{Value, json};

use super::status::ApiError;
use crate::objects::Kind;

/// The Kubernetes version berth's API corresponds to (the k8s-openapi feature it is built with).
pub const KUBERNETES_VERSION: (&str, &str) = ("1", "34");

pub fn version(berth_version: &str) -> Value {
    json!({
        "major": KUBERNETES_VERSION.0,
        "minor": KUBERNETES_VERSION.1,
        "gitVersion": format!("v{}.{}.0-berth.{berth_version}", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("linux/{}", std::env::consts::ARCH),
    })
}

pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
}

/// The named groups: every group of a served kind except core.
fn group_names() -> Vec<&'static str> {
    let mut groups: Vec<&'static str> = Vec::new();
    for kind in Kind::ALL {
        let group = kind.info().group;
        if !group.is_empty() && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

fn group_doc(group: &str) -> Value {
    let version = json!({"groupVersion": format!("{group}/v1"), "version": "v1"});
    json!({"name": group, "versions": [version.clone()], "preferredVersion": version})
}

pub fn groups() -> Value {
    let groups: Vec<Value> = group_names().into_iter().map(group_doc).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(group: &str) -> Result<Value, ApiError> {
    if !group_names().contains(&group) {
        return Err(ApiError::not_found_path(&format!("/apis/{group}")));
    }
    let mut doc = group_doc(group);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Ok(doc)
}

pub fn resources(group: &str, version: &str) -> Result<Value, ApiError> {
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut resources = Vec::new();
    for kind in Kind::ALL {
        let info = kind.info();
        if info.group != group || info.version != version {
            continue;
        }
        let verbs = json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]);
        let mut resource = json!({
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": verbs,
        });
        if !info.short_names.is_empty() {
            resource["shortNames"] = json!(info.short_names);
        }
        if matches!(
            kind,
            Kind::StatefulSet | Kind::DaemonSet | Kind::Job | Kind::CronJob
        ) {
            resource["categories"] = json!(["all"]);
        }
        if kind == Kind::Pod || kind == Kind::Service {
            resource["categories"] = json!(["all"]);
        }
        resources.push(resource);
        if info.status_subresource {
            resources.push(json!({"name": format!("{}/status", info.plural), "singularName": "", "namespaced": info.namespaced, "kind": info.kind, "verbs": ["get", "patch", "update"]}));
        }
        if kind == Kind::StatefulSet {
            resources.push(json!({"name": "statefulsets/scale", "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
        if kind == Kind::Pod {
            resources.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
            resources.push(json!({"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]}));
        }
    }
    if resources.is_empty() {
        return Err(ApiError::not_found_path(&format!("/apis/{group_version}")));
    }
    Ok(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a protobuf message into (field number, bytes) pairs; only length-delimited
    /// fields, which is all a Swagger document skeleton holds.
    fn fields(mut bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        fn varint(bytes: &mut &[u8]) -> u64 {
            let (mut value, mut shift) = (0u64, 0);
            loop {
                let b = bytes[0];
                *bytes = &bytes[1..];
                value |= u64::from(b & 0x7f) << shift;
                if b < 0x80 {
                    return value;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let key = varint(&mut bytes);
            assert_eq!(key & 7, 2, "wire type of field {}", key >> 3);
            let len = varint(&mut bytes) as usize;
            out.push((key >> 3, bytes[..len].to_vec()));
            bytes = &bytes[len..];
        }
        out
    }

    #[test]
    fn the_openapi_v2_protobuf_is_a_swagger_2_document_with_info_and_empty_paths() {
        let document = fields(&openapi_v2_protobuf());
        assert_eq!(
            document,
            vec![
                (1, b"2.0".to_vec()),
                (2, document[1].1.clone()),
                (8, Vec::new())
            ]
        );
        let info = fields(&document[1].1);
        assert_eq!(info[0], (1, b"berth".to_vec()));
        assert_eq!(info[1], (2, env!("CARGO_PKG_VERSION").as_bytes().to_vec()));
        // The JSON form says the same.
        let json = openapi_v2();
        assert_eq!(json["swagger"], "2.0");
        assert_eq!(json["paths"], json!({}));
        assert!(json.get("definitions").is_none());
    }

    #[test]
    fn protobuf_lengths_over_127_take_two_varint_bytes() {
        let mut out = Vec::new();
        protobuf_bytes(&mut out, 9, &[7u8; 300]);
        assert_eq!(&out[..3], &[9 << 3 | 2, 0xac, 0x02]);
        assert_eq!(fields(&out), vec![(9, vec![7u8; 300])]);
    }

    #[test]
    fn discovery_lists_every_served_kind_once() {
        let core = resources("", "v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for want in [
            "pods",
            "pods/log",
            "pods/exec",
            "services",
            "configmaps",
            "secrets",
            "namespaces",
            "nodes",
            "events",
            "persistentvolumeclaims",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let apps = resources("apps", "v1").unwrap();
        assert!(
            apps["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "statefulsets" && r["shortNames"][0] == "sts")
        );
        let groups = groups();
        let group_names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert_eq!(group_names, vec!["events.k8s.io", "apps", "batch"]);
        assert_eq!(resources("extensions", "v1beta1").unwrap_err().code, 404);
    }
}

/// `/openapi/v3`: the index of group-version documents.
pub fn openapi_index() -> Value {
    let mut paths = serde_json::Map::new();
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".into())];
    for g in group_names() {
        gvs.push((g.to_string(), "v1".into()));
    }
    for (group, version) in gvs {
        let path = if group.is_empty() {
            format!("api/{version}")
        } else {
            format!("apis/{group}/{version}")
        };
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}")}),
        );
    }
    json!({"paths": paths})
}

/// The media type of an OpenAPI v2 document in protocol buffers, as kube-apiserver serves it.
pub const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// `/openapi/v2` as JSON: a Swagger 2.0 document with no definitions.
///
/// kubectl before 1.27 (Debian 12 ships 1.20) fetches this document before `apply`, `create`
/// and `replace` to validate objects on the client, and refuses to go on when the server has
/// none. A document without definitions is the honest answer for berth: the client finds no
/// schema for a kind, so it skips its own validation and leaves it to the server, whose strict
/// decoding rejects unknown and invalid fields with the field's path; and `apply` computes its
/// strategic merge patches from the types compiled into kubectl, as it does for any kind
/// the document does not describe.
pub fn openapi_v2() -> Value {
    json!({"swagger": "2.0", "info": {"title": "berth", "version": env!("CARGO_PKG_VERSION")}, "paths": {}})
}

/// [`openapi_v2`] encoded as gnostic's `openapi.v2.Document` message, which is what kubectl
/// asks for (`Accept:` [`OPENAPI_V2_PROTOBUF`]): `swagger` (field 1), `info` (field 2: `title`
/// 1, `version` 2) and an empty `paths` (field 8).
pub fn openapi_v2_protobuf() -> Vec<u8> {
    let mut info = Vec::new();
    protobuf_bytes(&mut info, 1, b"berth");
    protobuf_bytes(&mut info, 2, env!("CARGO_PKG_VERSION").as_bytes());
    let mut document = Vec::new();
    protobuf_bytes(&mut document, 1, b"2.0");
    protobuf_bytes(&mut document, 2, &info);
    protobuf_bytes(&mut document, 8, &[]);
    document
}

/// Appends a length-delimited field (wire type 2: strings and embedded messages).
fn protobuf_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    protobuf_varint(out, u64::from(field) << 3 | 2);
    protobuf_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn protobuf_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`: a minimal OpenAPI v3 document
/// with one PATCH operation per kind that declares the `fieldValidation` query parameter and
/// the kind's group-version-kind. That is what kubectl looks for to know that the server
/// validates fields strictly itself (berth always does), so `kubectl apply` needs no
/// `--validate=false`. It is not a full schema: berth's strict decoding is the validation.
pub fn openapi_group(path: &str) -> Result<Value, ApiError> {
    let rest = path.trim_start_matches("/openapi/v3/");
    let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return Err(ApiError::not_found_path(path)),
    };
    let mut paths = serde_json::Map::new();
    for kind in Kind::ALL {
        let info = kind.info();
        if info.group != group || info.version != version {
            continue;
        }
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let object_path = if info.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", info.plural)
        } else {
            format!("{prefix}/{}/{{name}}", info.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": info.kind});
        let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        paths.insert(
            object_path,
            json!({
                "patch": {
                    "operationId": format!("patch{}", info.kind),
                    "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": {"200": {"description": "OK"}},
                },
            }),
        );
    }
    if paths.is_empty() {
        return Err(ApiError::not_found_path(path));
    }
    Ok(
        json!({"openapi": "3.0.0", "info": {"title": "berth", "version": env!("CARGO_PKG_VERSION")}, "paths": paths, "components": {"schemas": {}}}),
    )
}
