//! The helpers other parts of berth use: kind lookup, label and field selectors, quantities,
//! generated names and CronJob schedules.

use std::collections::BTreeMap;

use berth_agent::objects::kinds::{Kind, KindError};
use berth_agent::objects::names::generate_name;
use berth_agent::objects::quantity::{self, Quantity};
use berth_agent::objects::schedule;
use berth_agent::objects::selector::{FieldSelector, Selector};
use berth_agent::objects::{Object, ObjectKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::json;

#[test]
fn resources_resolve_by_every_name_kubectl_accepts() {
    let cases: &[(&str, Kind)] = &[
        ("po", Kind::Pod),
        ("pods", Kind::Pod),
        ("Pod", Kind::Pod),
        ("svc", Kind::Service),
        ("cm", Kind::ConfigMap),
        ("secret", Kind::Secret),
        ("sts", Kind::StatefulSet),
        ("statefulsets.apps", Kind::StatefulSet),
        ("StatefulSet.apps", Kind::StatefulSet),
        ("statefulsets.v1.apps", Kind::StatefulSet),
        ("ds", Kind::DaemonSet),
        ("pvc", Kind::PersistentVolumeClaim),
        ("ns", Kind::Namespace),
        ("no", Kind::Node),
        ("ev", Kind::Event),
        ("events", Kind::Event),
        ("events.events.k8s.io", Kind::EventsEvent),
        ("cj", Kind::CronJob),
        ("cronjobs.batch", Kind::CronJob),
        ("jobs", Kind::Job),
        ("controllerrevisions", Kind::ControllerRevision),
    ];
    for (name, kind) in cases {
        assert_eq!(Kind::from_resource(name), Ok(*kind), "{name}");
    }
    for unknown in ["deploy", "deployments", "statefulsets.batch", "ingress"] {
        assert_eq!(
            Kind::from_resource(unknown),
            Err(KindError::UnknownResource {
                resource: unknown.to_owned()
            })
        );
    }
    assert_eq!(
        Kind::from_resource("deploy").unwrap_err().to_string(),
        "the server doesn't have a resource type \"deploy\""
    );
}

#[test]
fn the_registry_knows_scope_status_and_api_version() {
    let cases: &[(Kind, &str, &str, bool, bool)] = &[
        (Kind::Pod, "v1", "pods", true, true),
        (Kind::Namespace, "v1", "namespaces", false, true),
        (Kind::Node, "v1", "nodes", false, true),
        (Kind::ConfigMap, "v1", "configmaps", true, false),
        (Kind::EventsEvent, "events.k8s.io/v1", "events", true, false),
        (Kind::StatefulSet, "apps/v1", "statefulsets", true, true),
        (
            Kind::ControllerRevision,
            "apps/v1",
            "controllerrevisions",
            true,
            false,
        ),
        (Kind::CronJob, "batch/v1", "cronjobs", true, true),
    ];
    for (kind, api_version, plural, namespaced, status) in cases {
        let info = kind.info();
        assert_eq!(
            (
                info.api_version(),
                info.plural,
                info.namespaced,
                info.status_subresource
            ),
            (api_version.to_string(), *plural, *namespaced, *status),
            "{kind}"
        );
    }
    assert_eq!(Kind::StatefulSet.qualified_kind(), "StatefulSet.apps");
    assert_eq!(Kind::Pod.qualified_resource(), "pods");
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn label_selectors_parse_and_match_as_kubectl_l_does() {
    let web = labels(&[("app", "web"), ("tier", "frontend"), ("replicas", "3")]);
    let db = labels(&[("app", "db"), ("canary", "")]);
    let cases: &[(&str, bool, bool)] = &[
        ("", true, true),
        ("app=web", true, false),
        ("app==web", true, false),
        ("app!=web", false, true),
        ("app in (web,db)", true, true),
        ("app in ( web , cache )", true, false),
        ("app notin (web)", false, true),
        ("missing notin (x)", true, true),
        ("missing!=x", true, true),
        ("canary", false, true),
        ("!canary", true, false),
        ("app=web,tier=frontend", true, false),
        ("app=web,!tier", false, false),
        ("replicas>2", true, false),
        ("replicas<2", false, false),
        ("example.com/role=x", false, false),
    ];
    for (text, matches_web, matches_db) in cases {
        let selector = Selector::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            (selector.matches(&web), selector.matches(&db)),
            (*matches_web, *matches_db),
            "{text}"
        );
    }
    let errors: &[(&str, &str)] = &[
        (
            "app in web",
            "unable to parse requirement: found '', expected: '(' in \"app in web\"",
        ),
        (
            "app=web,",
            "unable to parse requirement: found '', expected: !, identifier, or 'end of string' in \"app=web,\"",
        ),
        (
            "app=we b",
            "unable to parse requirement: found 'b', expected: ',' in \"app=we b\"",
        ),
        (
            "-app=web",
            "invalid label key \"-app\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        (
            "app=-web",
            "invalid label value: \"-web\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        (
            "n>x",
            "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer, found \"x\" in \"n>x\"",
        ),
    ];
    for (text, expected) in errors {
        assert_eq!(
            Selector::parse(text).unwrap_err().to_string(),
            *expected,
            "{text}"
        );
    }
}

#[test]
fn label_selector_objects_match_like_the_controllers_do() {
    let selector: LabelSelector = serde_json::from_value(json!({
        "matchLabels": {"app": "etcd"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["db", "cache"]},
            {"key": "canary", "operator": "DoesNotExist"}
        ]
    }))
    .unwrap();
    let selector = Selector::from_label_selector(Some(&selector)).unwrap();
    assert!(selector.matches(&labels(&[("app", "etcd"), ("tier", "db")])));
    assert!(!selector.matches(&labels(&[("app", "etcd"), ("tier", "web")])));
    assert!(!selector.matches(&labels(&[("app", "etcd"), ("tier", "db"), ("canary", "1")])));
    assert_eq!(selector.to_string(), "app=etcd,tier in (cache,db),!canary");
    // A missing selector selects nothing; an empty one selects everything.
    assert!(
        !Selector::from_label_selector(None)
            .unwrap()
            .matches(&labels(&[]))
    );
    assert!(
        Selector::from_label_selector(Some(&LabelSelector::default()))
            .unwrap()
            .matches(&labels(&[("any", "thing")]))
    );
    let bad: LabelSelector =
        serde_json::from_value(json!({"matchExpressions": [{"key": "a", "operator": "In"}]}))
            .unwrap();
    assert_eq!(
        Selector::from_label_selector(Some(&bad))
            .unwrap_err()
            .to_string(),
        "for 'in', 'notin' operators, values set can't be empty (key \"a\")"
    );
}

#[test]
fn stored_objects_match_label_selectors_through_object_kind() {
    let value = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "db", "uid": "u1", "labels": {"app": "web"}}, "spec": {"containers": []}});
    let selector = Selector::parse("app=web").unwrap();
    assert!(selector.matches(&value.labels()));
    let object = Object::from_value(&value).unwrap();
    assert_eq!(
        (
            object.kind_name(),
            object.name(),
            object.namespace(),
            object.uid(),
            object.label("app")
        ),
        ("Pod", "web-0", Some("db"), Some("u1"), Some("web"))
    );
    assert_eq!(
        (
            value.kind_name(),
            value.name(),
            value.namespace(),
            value.uid(),
            value.label("app")
        ),
        ("Pod", "web-0", Some("db"), Some("u1"), Some("web"))
    );
}

#[test]
fn field_selectors_select_by_name_namespace_node_and_phase() {
    let scheduled = json!({"kind": "Pod", "metadata": {"name": "web-0", "namespace": "db"}, "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}});
    let pending = json!({"kind": "Pod", "metadata": {"name": "web-1", "namespace": "db"}, "spec": {}, "status": {"phase": "Pending"}});
    let cases: &[(&str, bool, bool)] = &[
        ("metadata.name=web-0", true, false),
        ("metadata.namespace==db", true, true),
        ("metadata.namespace!=db", false, false),
        ("spec.nodeName=node-1", true, false),
        ("spec.nodeName=", false, true),
        ("status.phase!=Running", false, true),
        ("status.phase=Running,spec.nodeName=node-1", true, false),
    ];
    for (text, first, second) in cases {
        let selector = FieldSelector::parse(text, Kind::Pod).unwrap();
        assert_eq!(
            (selector.matches(&scheduled), selector.matches(&pending)),
            (*first, *second),
            "{text}"
        );
    }
    assert_eq!(
        FieldSelector::parse("spec.nodeName=x", Kind::Service)
            .unwrap_err()
            .to_string(),
        "field label not supported: spec.nodeName"
    );
    assert_eq!(
        FieldSelector::parse("status.phase", Kind::Pod)
            .unwrap_err()
            .to_string(),
        "invalid field selector \"status.phase\": \"status.phase\" has no operator (=, == or !=)"
    );
}

#[test]
fn quantities_parse_exactly_with_every_kubernetes_suffix() {
    let millicores: &[(&str, i128)] = &[
        ("1", 1000),
        ("500m", 500),
        ("0.5", 500),
        ("1.5", 1500),
        ("2.25", 2250),
        ("0.1m", 1),
        ("100u", 1),
        ("1k", 1_000_000),
        ("1e3", 1_000_000),
        ("+2", 2000),
        (".5", 500),
        ("0", 0),
    ];
    for (text, expected) in millicores {
        assert_eq!(quantity::cpu_millis(text), Ok(*expected), "{text}");
    }
    let bytes: &[(&str, i128)] = &[
        ("1Ki", 1024),
        ("1Mi", 1 << 20),
        ("1.5Gi", 1_610_612_736),
        ("2Ti", 2 << 40),
        ("1Pi", 1 << 50),
        ("1Ei", 1 << 60),
        ("1k", 1000),
        ("1M", 1_000_000),
        ("20G", 20_000_000_000),
        ("1T", 1_000_000_000_000),
        ("1P", 1_000_000_000_000_000),
        ("1E", 1_000_000_000_000_000_000),
        ("128974848", 128_974_848),
        ("129e6", 129_000_000),
        ("123Mi", 128_974_848),
        ("1n", 1),
        ("1E-3", 1),
        ("2.5", 3),
    ];
    for (text, expected) in bytes {
        assert_eq!(quantity::bytes(text), Ok(*expected), "{text}");
    }
    let garbage: &[(&str, &str)] = &[
        (
            "",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            "Gi",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            "1GB",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            "1.2.3",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        (
            " 1",
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        ("1Mm", "unable to parse quantity's suffix"),
        ("1e", "unable to parse quantity's suffix"),
        (
            "99999999999999999999999999999999999999999",
            "quantity \"99999999999999999999999999999999999999999\" is too large",
        ),
    ];
    for (text, expected) in garbage {
        assert_eq!(
            Quantity::parse(text).unwrap_err().to_string(),
            *expected,
            "{text:?}"
        );
    }
}

#[test]
fn quantities_compare_by_value_whatever_their_suffix() {
    let q = |s: &str| Quantity::parse(s).unwrap();
    assert_eq!(q("1Gi"), q("1024Mi"));
    assert_eq!(q("1"), q("1000m"));
    assert_eq!(q("1e3"), q("1k"));
    assert!(q("1G") < q("1Gi"));
    assert!(q("500m") < q("1"));
    assert!(q("-1") < q("0"));
    assert!(q("1Ei") > q("1E"));
    assert_eq!(q("1.5Gi").to_string(), "1610612736");
    assert_eq!(q("250m").to_string(), "0.25");
}

#[test]
fn generated_names_take_the_prefix_and_five_chosen_characters() {
    assert_eq!(generate_name("backup-", 0), "backup-bbbbb");
    assert_eq!(generate_name("backup-", 26), "backup-9bbbb");
    assert_eq!(generate_name("backup-", 27), "backup-bcbbb");
    assert_ne!(generate_name("backup-", 1), generate_name("backup-", 2));
    let name = generate_name(&"x".repeat(100), u64::MAX);
    assert_eq!(name.len(), 63);
    assert!(name.starts_with(&"x".repeat(58)));
}

#[test]
fn cron_schedules_compute_the_next_run_in_their_time_zone() {
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let cases: &[(&str, Option<&str>, &str, &str)] = &[
        (
            "*/15 * * * *",
            None,
            "2024-03-01T10:07:00Z",
            "2024-03-01T10:15:00Z",
        ),
        (
            "0 3 * * *",
            None,
            "2024-03-01T03:00:00Z",
            "2024-03-02T03:00:00Z",
        ),
        (
            "@hourly",
            None,
            "2024-03-01T10:59:59Z",
            "2024-03-01T11:00:00Z",
        ),
        (
            "@weekly",
            None,
            "2024-03-01T00:00:00Z",
            "2024-03-03T00:00:00Z",
        ),
        (
            "@yearly",
            None,
            "2024-03-01T00:00:00Z",
            "2025-01-01T00:00:00Z",
        ),
        (
            "0 9 * jan,jul mon-fri",
            None,
            "2024-03-01T00:00:00Z",
            "2024-07-01T09:00:00Z",
        ),
        (
            "0 0 ? * sun",
            None,
            "2024-03-01T00:00:00Z",
            "2024-03-03T00:00:00Z",
        ),
        (
            "30 2 * * *",
            Some("America/New_York"),
            "2024-07-01T00:00:00Z",
            "2024-07-01T06:30:00Z",
        ),
        (
            "@every 90m",
            None,
            "2024-03-01T10:00:30Z",
            "2024-03-01T11:30:30Z",
        ),
    ];
    for (text, zone, after, expected) in cases {
        let parsed = schedule::parse(text, *zone).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            parsed.next_after(at(after)),
            Some(at(expected)),
            "{text} after {after}"
        );
    }
}
