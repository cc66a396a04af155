//! The Kubernetes REST path grammar, parsed into what a request is about. Pure: no lookups
//! of kinds here (see [`super::request`] for that).
//!
//! ```text
//! /api/v1/{plural}                                  list (all namespaces or cluster-scoped)
//! /api/v1/{plural}/{name}[/{subresource}]           cluster-scoped object
//! /api/v1/namespaces/{ns}/{plural}                  list in a namespace
//! /api/v1/namespaces/{ns}/{plural}/{name}[/{sub}]   namespaced object
//! /apis/{group}/{version}/...                       the same for named groups
//! /api, /apis, /api/v1, /apis/{group}[/{version}], /version   discovery
//! ```

/// What a request path designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiPath {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group { group: String },
    /// `/api/v1` or `/apis/{group}/{version}`
    Resources { group: String, version: String },
    /// A resource collection or object.
    Object(ObjectPath),
}

/// A path to a collection or to one object (and maybe its subresource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath {
    pub group: String,
    pub version: String,
    pub plural: String,
    /// Set when the path had `/namespaces/{ns}/` before the resource.
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses a request path (without query). `None` when it is not part of the API.
pub fn parse(path: &str) -> Option<ApiPath> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    if segments.iter().any(|s| s.is_empty()) && path != "/" {
        return None;
    }
    match segments.as_slice() {
        ["version"] => Some(ApiPath::Version),
        ["api"] => Some(ApiPath::CoreVersions),
        ["apis"] => Some(ApiPath::Groups),
        ["api", version] => Some(ApiPath::Resources {
            group: String::new(),
            version: version.to_string(),
        }),
        ["apis", group] => Some(ApiPath::Group {
            group: group.to_string(),
        }),
        ["apis", group, version] => Some(ApiPath::Resources {
            group: group.to_string(),
            version: version.to_string(),
        }),
        ["api", version, rest @ ..] => object_path("", version, rest),
        ["apis", group, version, rest @ ..] => object_path(group, version, rest),
        _ => None,
    }
}

fn object_path(group: &str, version: &str, rest: &[&str]) -> Option<ApiPath> {
    let make = |namespace: Option<&str>, plural: &str, name: Option<&str>, sub: Option<&str>| {
        Some(ApiPath::Object(ObjectPath {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
        }))
    };
    match rest {
        // `/namespaces/{ns}/...` names a namespace's contents, except for the namespace object
        // itself and its own subresources (`/namespaces/{ns}/status`, `/finalize`), which are
        // cluster-scoped paths.
        ["namespaces", ns, sub @ ("status" | "finalize")] if group.is_empty() => {
            make(None, "namespaces", Some(ns), Some(sub))
        }
        ["namespaces", ns, plural] => make(Some(ns), plural, None, None),
        ["namespaces", ns, plural, name] => make(Some(ns), plural, Some(name), None),
        ["namespaces", ns, plural, name, sub] => make(Some(ns), plural, Some(name), Some(sub)),
        [plural] => make(None, plural, None, None),
        [plural, name] => make(None, plural, Some(name), None),
        [plural, name, sub] => make(None, plural, Some(name), Some(sub)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(
        group: &str,
        plural: &str,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Option<ApiPath> {
        Some(ApiPath::Object(ObjectPath {
            group: group.into(),
            version: if group.is_empty() {
                "v1".into()
            } else {
                "v1".into()
            },
            plural: plural.into(),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }))
    }

    #[test]
    fn paths_parse_as_kubernetes_routes_them() {
        let cases = [
            ("/version", Some(ApiPath::Version)),
            ("/api", Some(ApiPath::CoreVersions)),
            ("/apis", Some(ApiPath::Groups)),
            (
                "/apis/apps",
                Some(ApiPath::Group {
                    group: "apps".into(),
                }),
            ),
            (
                "/api/v1",
                Some(ApiPath::Resources {
                    group: "".into(),
                    version: "v1".into(),
                }),
            ),
            (
                "/apis/apps/v1/",
                Some(ApiPath::Resources {
                    group: "apps".into(),
                    version: "v1".into(),
                }),
            ),
            ("/api/v1/pods", obj("", "pods", None, None, None)),
            (
                "/api/v1/namespaces",
                obj("", "namespaces", None, None, None),
            ),
            (
                "/api/v1/namespaces/kube",
                obj("", "namespaces", None, Some("kube"), None),
            ),
            (
                "/api/v1/namespaces/kube/status",
                obj("", "namespaces", None, Some("kube"), Some("status")),
            ),
            (
                "/api/v1/namespaces/default/pods",
                obj("", "pods", Some("default"), None, None),
            ),
            (
                "/api/v1/namespaces/default/pods/web-0",
                obj("", "pods", Some("default"), Some("web-0"), None),
            ),
            (
                "/api/v1/namespaces/default/pods/web-0/log",
                obj("", "pods", Some("default"), Some("web-0"), Some("log")),
            ),
            ("/api/v1/nodes/n1", obj("", "nodes", None, Some("n1"), None)),
            (
                "/apis/apps/v1/namespaces/db/statefulsets/pg/scale",
                obj(
                    "apps",
                    "statefulsets",
                    Some("db"),
                    Some("pg"),
                    Some("scale"),
                ),
            ),
            (
                "/apis/batch/v1/jobs",
                obj("batch", "jobs", None, None, None),
            ),
            ("/", None),
            ("/healthz", None),
            ("/api/v1/namespaces/default/pods/web-0/log/extra", None),
            ("/api//pods", None),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
    }
}
