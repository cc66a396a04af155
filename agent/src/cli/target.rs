//! Turning kubectl-style arguments (`pods`, `po web-0`, `sts/web`, `po,svc`) into kinds,
//! names and API paths.

use crate::objects::{Kind, KindError};

/// What a `get`/`describe`/`delete` argument list names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    /// Whole collections of these kinds (`get po,svc`).
    Collections(Vec<Kind>),
    /// Named objects, each with its kind (`get po a b`, `get po/a svc/b`).
    Named(Vec<(Kind, String)>),
}

/// A malformed argument list.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Kind(#[from] KindError),
    #[error(
        "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'berth get resource/<resource_name>' instead of 'berth get resource resource/<resource_name>')"
    )]
    Mixed,
    #[error("arguments in resource/name form must have a single resource and name")]
    BadSlash,
    #[error("you must specify the type of resource to get")]
    Empty,
    #[error("names cannot be given with several kinds (\"{0}\"): use KIND/NAME for each")]
    NamesWithSeveralKinds(String),
}

/// Parses `KIND[,KIND] [NAME...]` or `KIND/NAME...`.
pub fn parse_targets(args: &[String]) -> Result<Targets, TargetError> {
    let Some(first) = args.first() else {
        return Err(TargetError::Empty);
    };
    if first.contains('/') {
        let mut named = Vec::new();
        for arg in args {
            let (kind, name) = arg.split_once('/').ok_or(TargetError::Mixed)?;
            if kind.is_empty() || name.is_empty() || name.contains('/') {
                return Err(TargetError::BadSlash);
            }
            named.push((Kind::from_resource(kind)?, name.to_string()));
        }
        return Ok(Targets::Named(named));
    }
    if args[1..].iter().any(|a| a.contains('/')) {
        return Err(TargetError::Mixed);
    }
    let kinds = first
        .split(',')
        .filter(|k| !k.is_empty())
        .map(Kind::from_resource)
        .collect::<Result<Vec<_>, _>>()?;
    if kinds.is_empty() {
        return Err(TargetError::Empty);
    }
    if args.len() == 1 {
        return Ok(Targets::Collections(kinds));
    }
    if kinds.len() > 1 {
        return Err(TargetError::NamesWithSeveralKinds(first.clone()));
    }
    Ok(Targets::Named(
        args[1..].iter().map(|n| (kinds[0], n.clone())).collect(),
    ))
}

/// Parses one `KIND/NAME` (or `KIND NAME` given as two arguments).
pub fn parse_one(args: &[String]) -> Result<(Kind, String), TargetError> {
    match parse_targets(args)? {
        Targets::Named(mut named) if named.len() == 1 => Ok(named.remove(0)),
        _ => Err(TargetError::BadSlash),
    }
}

/// `/api/v1` or `/apis/apps/v1`.
pub fn group_prefix(kind: Kind) -> String {
    let info = kind.info();
    if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    }
}

/// The collection path: namespaced kinds in `namespace` (all namespaces when `None`).
pub fn collection_path(kind: Kind, namespace: Option<&str>) -> String {
    let info = kind.info();
    match (info.namespaced, namespace) {
        (true, Some(ns)) => format!("{}/namespaces/{ns}/{}", group_prefix(kind), info.plural),
        _ => format!("{}/{}", group_prefix(kind), info.plural),
    }
}

/// The path of one object.
pub fn object_path(kind: Kind, namespace: &str, name: &str) -> String {
    let ns = kind.info().namespaced.then_some(namespace);
    format!("{}/{}", collection_path(kind, ns), name)
}

/// `pod`, `statefulset.apps`: how kubectl names a kind in `kind/name` output.
pub fn kind_label(kind: Kind) -> String {
    let info = kind.info();
    let lower = info.kind.to_ascii_lowercase();
    if info.group.is_empty() {
        lower
    } else {
        format!("{lower}.{}", info.group)
    }
}

/// Percent-encodes a query value (labelSelector and friends carry `=`, `,`, `!`, spaces).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn kubectl_argument_forms_parse() {
        assert_eq!(
            parse_targets(&args("po")).unwrap(),
            Targets::Collections(vec![Kind::Pod])
        );
        assert_eq!(
            parse_targets(&args("po,svc")).unwrap(),
            Targets::Collections(vec![Kind::Pod, Kind::Service])
        );
        assert_eq!(
            parse_targets(&args("sts web db")).unwrap(),
            Targets::Named(vec![
                (Kind::StatefulSet, "web".into()),
                (Kind::StatefulSet, "db".into())
            ])
        );
        assert_eq!(
            parse_targets(&args("pod/a statefulsets.apps/b")).unwrap(),
            Targets::Named(vec![
                (Kind::Pod, "a".into()),
                (Kind::StatefulSet, "b".into())
            ])
        );
        assert!(matches!(
            parse_targets(&args("pod pod/a")),
            Err(TargetError::Mixed)
        ));
        assert!(matches!(
            parse_targets(&args("po,svc a")),
            Err(TargetError::NamesWithSeveralKinds(_))
        ));
        assert!(matches!(
            parse_targets(&args("frobs")),
            Err(TargetError::Kind(_))
        ));
        assert!(matches!(
            parse_targets(&args("pod/")),
            Err(TargetError::BadSlash)
        ));
    }

    #[test]
    fn paths_follow_the_api_layout() {
        assert_eq!(
            collection_path(Kind::Pod, Some("db")),
            "/api/v1/namespaces/db/pods"
        );
        assert_eq!(collection_path(Kind::Pod, None), "/api/v1/pods");
        assert_eq!(collection_path(Kind::Node, Some("db")), "/api/v1/nodes");
        assert_eq!(
            object_path(Kind::StatefulSet, "db", "pg"),
            "/apis/apps/v1/namespaces/db/statefulsets/pg"
        );
        assert_eq!(
            object_path(Kind::Namespace, "ignored", "db"),
            "/api/v1/namespaces/db"
        );
        assert_eq!(kind_label(Kind::StatefulSet), "statefulset.apps");
        assert_eq!(encode("app in (a,b)"), "app%20in%20%28a%2Cb%29");
    }
}
