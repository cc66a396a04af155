//! Typed API requests: what an HTTP request means, decided without touching state. The HTTP
//! layer builds a [`Request`] from method, path, query and body; the handlers take it from
//! there, so they are tested without HTTP.

use serde_json::Value;

use super::path::{self, ApiPath, ObjectPath};
use super::status::ApiError;
use crate::objects::Kind;
use crate::objects::selector::{FieldSelector, Selector};

/// How a PATCH body is to be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 7386 (`application/merge-patch+json`).
    Merge,
    /// RFC 6902 (`application/json-patch+json`).
    Json,
    /// Kubernetes' strategic merge patch (`application/strategic-merge-patch+json`).
    Strategic,
    /// Apply (`application/apply-patch+yaml`): create or update from a whole manifest.
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<PatchType, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchType::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Options of a DELETE.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation: crate::state::Propagation,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<u64>,
}

/// `GET .../pods/{name}/log` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<usize>,
    pub timestamps: bool,
    pub limit_bytes: Option<u64>,
}

/// `.../pods/{name}/exec` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    pub container: Option<String>,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Which subresource of an object a request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
}

/// One API request, typed.
#[derive(Debug, Clone)]
pub enum Request {
    Version,
    CoreVersions,
    Groups,
    Group {
        group: String,
    },
    Resources {
        group: String,
        version: String,
    },
    Get {
        kind: Kind,
        namespace: String,
        name: String,
        subresource: Option<Subresource>,
    },
    List {
        kind: Kind,
        namespace: Option<String>,
        labels: Selector,
        fields: Option<FieldSelector>,
    },
    Watch {
        kind: Kind,
        namespace: Option<String>,
        labels: Selector,
        fields: Option<FieldSelector>,
        /// Start after this revision; `None` (or "0") sends the current objects first.
        resource_version: Option<u64>,
        bookmarks: bool,
        timeout_seconds: Option<u64>,
    },
    Create {
        kind: Kind,
        namespace: String,
        body: Value,
        dry_run: bool,
    },
    Replace {
        kind: Kind,
        namespace: String,
        name: String,
        subresource: Option<Subresource>,
        body: Value,
        dry_run: bool,
    },
    Patch {
        kind: Kind,
        namespace: String,
        name: String,
        subresource: Option<Subresource>,
        patch_type: PatchType,
        body: Value,
        dry_run: bool,
        field_manager: Option<String>,
    },
    Delete {
        kind: Kind,
        namespace: String,
        name: String,
        options: DeleteOptions,
        dry_run: bool,
    },
    DeleteCollection {
        kind: Kind,
        namespace: Option<String>,
        labels: Selector,
        fields: Option<FieldSelector>,
        options: DeleteOptions,
    },
    Logs {
        namespace: String,
        name: String,
        options: LogOptions,
    },
    Exec {
        namespace: String,
        name: String,
        options: ExecOptions,
    },
}

/// The parts of an HTTP request the API looks at.
pub struct HttpParts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string (without `?`).
    pub query: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// Largest request body accepted (Kubernetes' default is 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Decodes an HTTP request into a [`Request`].
pub fn decode(parts: &HttpParts<'_>) -> Result<Request, ApiError> {
    let Some(api_path) = path::parse(parts.path) else {
        return Err(ApiError::not_found_path(parts.path));
    };
    let query = Query::parse(parts.query)?;
    match api_path {
        ApiPath::Version => only_get(parts, Request::Version),
        ApiPath::CoreVersions => only_get(parts, Request::CoreVersions),
        ApiPath::Groups => only_get(parts, Request::Groups),
        ApiPath::Group { group } => only_get(parts, Request::Group { group }),
        ApiPath::Resources { group, version } => {
            only_get(parts, Request::Resources { group, version })
        }
        ApiPath::Object(object) => decode_object(parts, &query, object),
    }
}

fn only_get(parts: &HttpParts<'_>, request: Request) -> Result<Request, ApiError> {
    if parts.method == "GET" {
        Ok(request)
    } else {
        Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {})",
            parts.method, parts.path
        )))
    }
}

fn resolve_kind(object: &ObjectPath) -> Result<Kind, ApiError> {
    Kind::ALL
        .iter()
        .copied()
        .find(|k| {
            let info = k.info();
            info.group == object.group
                && info.version == object.version
                && info.plural == object.plural
        })
        .ok_or_else(|| {
            let group_version = if object.group.is_empty() {
                object.version.clone()
            } else {
                format!("{}/{}", object.group, object.version)
            };
            ApiError::not_found_path(&format!(
                "the server could not find the requested resource {}/{}",
                group_version, object.plural
            ))
        })
}

fn decode_object(
    parts: &HttpParts<'_>,
    query: &Query,
    object: ObjectPath,
) -> Result<Request, ApiError> {
    let kind = resolve_kind(&object)?;
    let info = kind.info();
    if !info.namespaced && object.namespace.is_some() {
        return Err(ApiError::not_found_path(parts.path));
    }
    let namespace = object.namespace.clone();
    let ns_or_empty = namespace.clone().unwrap_or_default();
    let dry_run = query.dry_run;
    let subresource = match object.subresource.as_deref() {
        None => None,
        Some("status") if info.status_subresource => Some(Subresource::Status),
        Some("scale") if kind == Kind::StatefulSet => Some(Subresource::Scale),
        Some("log") if kind == Kind::Pod => {
            return match parts.method {
                "GET" => Ok(Request::Logs {
                    namespace: ns_or_empty,
                    name: object.name.expect("subresources have names"),
                    options: query.log_options()?,
                }),
                _ => Err(ApiError::method_not_allowed(
                    "only GET is allowed on pods/log",
                )),
            };
        }
        Some("exec") if kind == Kind::Pod => {
            return match parts.method {
                "GET" | "POST" => Ok(Request::Exec {
                    namespace: ns_or_empty,
                    name: object.name.expect("subresources have names"),
                    options: query.exec_options()?,
                }),
                _ => Err(ApiError::method_not_allowed(
                    "only GET and POST are allowed on pods/exec",
                )),
            };
        }
        Some(other) => {
            return Err(ApiError::not_found_path(&format!(
                "{} has no subresource {other:?}",
                info.plural
            )));
        }
    };
    let labels = match &query.label_selector {
        Some(s) => Selector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
        None => Selector::everything(),
    };
    let fields = match &query.field_selector {
        Some(s) if !s.is_empty() => {
            Some(FieldSelector::parse(s, kind).map_err(|e| ApiError::bad_request(format!("{e}")))?)
        }
        _ => None,
    };
    let body = |parts: &HttpParts<'_>| decode_body(parts);
    match (parts.method, object.name) {
        ("GET", None) if query.watch => Ok(Request::Watch {
            kind,
            namespace,
            labels,
            fields,
            resource_version: query.resource_version_number()?,
            bookmarks: query.allow_watch_bookmarks,
            timeout_seconds: query.timeout_seconds,
        }),
        ("GET", None) => Ok(Request::List {
            kind,
            namespace,
            labels,
            fields,
        }),
        ("GET", Some(name)) if query.watch => {
            // `?watch=true` on an object path watches that object only, as Kubernetes does.
            let fields = FieldSelector::parse(&format!("metadata.name={name}"), kind)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            Ok(Request::Watch {
                kind,
                namespace,
                labels,
                fields: Some(fields),
                resource_version: query.resource_version_number()?,
                bookmarks: query.allow_watch_bookmarks,
                timeout_seconds: query.timeout_seconds,
            })
        }
        ("GET", Some(name)) => Ok(Request::Get {
            kind,
            namespace: ns_or_empty,
            name,
            subresource,
        }),
        ("POST", None) => {
            if info.namespaced && namespace.is_none() {
                return Err(ApiError::method_not_allowed(format!(
                    "POST to /{}: a namespaced object is created under /namespaces/<ns>/",
                    info.plural
                )));
            }
            Ok(Request::Create {
                kind,
                namespace: ns_or_empty,
                body: body(parts)?,
                dry_run,
            })
        }
        ("PUT", Some(name)) => Ok(Request::Replace {
            kind,
            namespace: ns_or_empty,
            name,
            subresource,
            body: body(parts)?,
            dry_run,
        }),
        ("PATCH", Some(name)) => {
            let patch_type = PatchType::from_content_type(parts.content_type.unwrap_or(""))?;
            Ok(Request::Patch {
                kind,
                namespace: ns_or_empty,
                name,
                subresource,
                patch_type,
                body: body(parts)?,
                dry_run,
                field_manager: query.field_manager.clone(),
            })
        }
        ("DELETE", Some(name)) => {
            let options = delete_options(parts, query)?;
            Ok(Request::Delete {
                kind,
                namespace: ns_or_empty,
                name,
                options,
                dry_run,
            })
        }
        ("DELETE", None) => {
            let options = delete_options(parts, query)?;
            Ok(Request::DeleteCollection {
                kind,
                namespace,
                labels,
                fields,
                options,
            })
        }
        (method, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            parts.path
        ))),
    }
}

/// The body as JSON; YAML bodies are accepted too (kubectl sends JSON, curl users send both).
fn decode_body(parts: &HttpParts<'_>) -> Result<Value, ApiError> {
    if parts.body.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(format!(
            "the request body is larger than {MAX_BODY_BYTES} bytes"
        )));
    }
    if parts.body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let media = parts
        .content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let is_yaml = media.ends_with("yaml");
    if !is_yaml {
        if let Ok(v) = serde_json::from_slice::<Value>(parts.body) {
            return Ok(v);
        }
    }
    let text = std::str::from_utf8(parts.body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    let docs = crate::objects::parse::parse_text(
        crate::objects::Origin::Inline("request body".into()),
        text,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()));
    match docs {
        Ok(mut docs) if docs.len() == 1 => Ok(docs.remove(0).value),
        Ok(docs) if docs.is_empty() => {
            Err(ApiError::bad_request("the request body holds no object"))
        }
        Ok(_) => Err(ApiError::bad_request(
            "the request body must hold exactly one object",
        )),
        Err(e) => {
            // Patches and bodies that are not manifests (no kind): plain JSON/YAML parse.
            serde_json::from_slice::<Value>(parts.body).map_err(|_| e)
        }
    }
}

fn delete_options(parts: &HttpParts<'_>, query: &Query) -> Result<DeleteOptions, ApiError> {
    let mut options = DeleteOptions {
        grace_period_seconds: query.grace_period_seconds,
        propagation: parse_propagation(query.propagation_policy.as_deref())?,
        ..DeleteOptions::default()
    };
    if !parts.body.iter().all(u8::is_ascii_whitespace) {
        let body: Value = serde_json::from_slice(parts.body)
            .map_err(|e| ApiError::bad_request(format!("DeleteOptions: {e}")))?;
        if let Some(g) = body.get("gracePeriodSeconds").filter(|v| !v.is_null()) {
            options.grace_period_seconds = Some(g.as_i64().ok_or_else(|| {
                ApiError::bad_request("DeleteOptions.gracePeriodSeconds must be an integer")
            })?);
        }
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            options.propagation = parse_propagation(Some(p))?;
        } else if body.get("orphanDependents") == Some(&Value::Bool(true)) {
            options.propagation = crate::state::Propagation::Orphan;
        }
        if let Some(uid) = body.pointer("/preconditions/uid").and_then(Value::as_str) {
            options.precondition_uid = Some(uid.to_string());
        }
        if let Some(rv) = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            options.precondition_resource_version = Some(rv.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid resourceVersion precondition {rv:?}"))
            })?);
        }
    }
    if let Some(g) = options.grace_period_seconds {
        if g < 0 {
            return Err(ApiError::bad_request(format!(
                "DeleteOptions.gracePeriodSeconds: Invalid value: {g}: must be greater than or equal to 0"
            )));
        }
    }
    Ok(options)
}

fn parse_propagation(value: Option<&str>) -> Result<crate::state::Propagation, ApiError> {
    use crate::state::Propagation;
    match value {
        None | Some("") | Some("Background") => Ok(Propagation::Background),
        Some("Orphan") => Ok(Propagation::Orphan),
        Some("Foreground") => Ok(Propagation::Foreground),
        Some(other) => Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        ))),
    }
}

/// The query parameters the API understands.
#[derive(Debug, Default)]
struct Query {
    label_selector: Option<String>,
    field_selector: Option<String>,
    watch: bool,
    resource_version: Option<String>,
    allow_watch_bookmarks: bool,
    timeout_seconds: Option<u64>,
    dry_run: bool,
    field_manager: Option<String>,
    grace_period_seconds: Option<i64>,
    propagation_policy: Option<String>,
    container: Option<String>,
    follow: bool,
    previous: bool,
    tail_lines: Option<i64>,
    timestamps: bool,
    limit_bytes: Option<u64>,
    command: Vec<String>,
    stdin: bool,
    stdout: Option<bool>,
    stderr: Option<bool>,
    tty: bool,
}

impl Query {
    fn parse(raw: &str) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("malformed query: {e}")))?;
        let mut q = Query::default();
        let boolean = |key: &str, v: &str| -> Result<bool, ApiError> {
            match v {
                "" | "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                other => Err(ApiError::bad_request(format!(
                    "{key}: invalid boolean {other:?}"
                ))),
            }
        };
        let number = |key: &str, v: &str| -> Result<i64, ApiError> {
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("{key}: invalid integer {v:?}")))
        };
        for (k, v) in pairs {
            match k.as_str() {
                "labelSelector" => q.label_selector = Some(v),
                "fieldSelector" => q.field_selector = Some(v),
                "watch" => q.watch = boolean(&k, &v)?,
                "resourceVersion" => q.resource_version = Some(v),
                "allowWatchBookmarks" => q.allow_watch_bookmarks = boolean(&k, &v)?,
                "timeoutSeconds" => q.timeout_seconds = Some(number(&k, &v)?.max(0) as u64),
                "dryRun" => q.dry_run = v == "All",
                "fieldManager" => q.field_manager = Some(v),
                "gracePeriodSeconds" => q.grace_period_seconds = Some(number(&k, &v)?),
                "propagationPolicy" => q.propagation_policy = Some(v),
                "container" => q.container = Some(v),
                "follow" => q.follow = boolean(&k, &v)?,
                "previous" => q.previous = boolean(&k, &v)?,
                "tailLines" => q.tail_lines = Some(number(&k, &v)?),
                "timestamps" => q.timestamps = boolean(&k, &v)?,
                "limitBytes" => q.limit_bytes = Some(number(&k, &v)?.max(0) as u64),
                "command" => q.command.push(v),
                "stdin" => q.stdin = boolean(&k, &v)?,
                "stdout" => q.stdout = Some(boolean(&k, &v)?),
                "stderr" => q.stderr = Some(boolean(&k, &v)?),
                "tty" => q.tty = boolean(&k, &v)?,
                // Accepted and ignored: paging (the whole list is returned, which the API
                // allows), field validation (berth always validates strictly), pretty.
                _ => {}
            }
        }
        Ok(q)
    }

    fn resource_version_number(&self) -> Result<Option<u64>, ApiError> {
        match self.resource_version.as_deref() {
            None | Some("") | Some("0") => Ok(None),
            Some(rv) => rv
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))),
        }
    }

    fn log_options(&self) -> Result<LogOptions, ApiError> {
        let tail_lines = match self.tail_lines {
            Some(n) if n < 0 => None,
            Some(n) => Some(n as usize),
            None => None,
        };
        Ok(LogOptions {
            container: self.container.clone(),
            follow: self.follow,
            previous: self.previous,
            tail_lines,
            timestamps: self.timestamps,
            limit_bytes: self.limit_bytes,
        })
    }

    fn exec_options(&self) -> Result<ExecOptions, ApiError> {
        if self.command.is_empty() {
            return Err(ApiError::bad_request("you must specify at least 1 command"));
        }
        Ok(ExecOptions {
            container: self.container.clone(),
            command: self.command.clone(),
            stdin: self.stdin,
            stdout: self.stdout.unwrap_or(true),
            stderr: self.stderr.unwrap_or(true),
            tty: self.tty,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path_and_query: &str, body: &str) -> Result<Request, ApiError> {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        decode(&HttpParts {
            method,
            path,
            query,
            content_type: Some("application/json"),
            body: body.as_bytes(),
        })
    }

    #[test]
    fn lists_watches_and_gets_decode() {
        assert!(matches!(
            req("GET", "/api/v1/namespaces/db/pods?labelSelector=app%3Dpg", "").unwrap(),
            Request::List { kind: Kind::Pod, namespace: Some(ns), .. } if ns == "db"
        ));
        assert!(matches!(
            req("GET", "/api/v1/pods?watch=true&resourceVersion=42", "").unwrap(),
            Request::Watch {
                kind: Kind::Pod,
                namespace: None,
                resource_version: Some(42),
                ..
            }
        ));
        assert!(matches!(
            req(
                "GET",
                "/apis/apps/v1/namespaces/db/statefulsets/pg/scale",
                ""
            )
            .unwrap(),
            Request::Get {
                kind: Kind::StatefulSet,
                subresource: Some(Subresource::Scale),
                ..
            }
        ));
        assert!(matches!(
            req(
                "GET",
                "/api/v1/namespaces/db/pods/pg-0/log?tailLines=5&follow=true&container=pg",
                ""
            )
            .unwrap(),
            Request::Logs {
                options: LogOptions {
                    tail_lines: Some(5),
                    follow: true,
                    ..
                },
                ..
            }
        ));
        match req("POST", "/api/v1/namespaces/db/pods/pg-0/exec?command=sh&command=-c&command=echo%20hi&stdin=true", "").unwrap() {
            Request::Exec { options, .. } => {
                assert_eq!(options.command, vec!["sh", "-c", "echo hi"]);
                assert!(options.stdin && options.stdout && options.stderr && !options.tty);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_requests_are_refused_with_kubernetes_errors() {
        let cases = [
            ("GET", "/api/v1/frobs", "", 404),
            ("GET", "/api/v1/namespaces/db/nodes", "", 404),
            ("POST", "/api/v1/pods", "{}", 405),
            ("PUT", "/api/v1/namespaces/db/pods", "{}", 405),
            ("GET", "/api/v1/pods?labelSelector=a%3D%3D%3D", "", 400),
            ("GET", "/api/v1/pods?watch=maybe", "", 400),
            ("GET", "/api/v1/namespaces/db/pods/x/exec", "", 400),
            (
                "DELETE",
                "/api/v1/namespaces/db/pods/x?propagationPolicy=Sideways",
                "",
                400,
            ),
            (
                "DELETE",
                "/api/v1/namespaces/db/pods/x",
                "{\"gracePeriodSeconds\": -3}",
                400,
            ),
            ("POST", "/api/v1/namespaces/db/pods", "", 400),
            ("GET", "/api/v1/namespaces/db/configmaps/x/log", "", 404),
            ("PUT", "/version", "", 405),
        ];
        for (method, path, body, code) in cases {
            let err = req(method, path, body).unwrap_err();
            assert_eq!(err.code, code, "{method} {path}: {err:?}");
        }
    }

    #[test]
    fn patch_types_follow_the_content_type() {
        let decode_patch = |ct: &str| {
            decode(&HttpParts {
                method: "PATCH",
                path: "/api/v1/namespaces/db/pods/x",
                query: "",
                content_type: Some(ct),
                body: b"{\"metadata\":{}}",
            })
        };
        for (ct, want) in [
            ("application/merge-patch+json", PatchType::Merge),
            (
                "application/strategic-merge-patch+json",
                PatchType::Strategic,
            ),
            ("application/apply-patch+yaml", PatchType::Apply),
        ] {
            assert!(
                matches!(decode_patch(ct).unwrap(), Request::Patch { patch_type, .. } if patch_type == want)
            );
        }
        assert_eq!(decode_patch("text/plain").unwrap_err().code, 415);
    }

    #[test]
    fn delete_options_come_from_query_and_body() {
        match req(
            "DELETE",
            "/api/v1/namespaces/db/pods/x?gracePeriodSeconds=5",
            "{\"propagationPolicy\":\"Orphan\",\"preconditions\":{\"uid\":\"u1\"}}",
        )
        .unwrap()
        {
            Request::Delete { options, .. } => {
                assert_eq!(options.grace_period_seconds, Some(5));
                assert_eq!(options.propagation, crate::state::Propagation::Orphan);
                assert_eq!(options.precondition_uid.as_deref(), Some("u1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn yaml_bodies_are_accepted() {
        let body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  mode: '0644'\n";
        let r = decode(&HttpParts {
            method: "POST",
            path: "/api/v1/namespaces/db/configmaps",
            query: "",
            content_type: Some("application/yaml"),
            body: body.as_bytes(),
        })
        .unwrap();
        assert!(matches!(r, Request::Create { body, .. } if body["data"]["mode"] == "0644"));
    }
}
