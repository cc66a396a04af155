//! The API handlers against a real state (redb in a temp dir, one-member raft), without HTTP:
//! what kubectl users expect from create, get, list, apply, patch, scale, delete and watch.

use std::sync::Arc;

use berth_agent::api::request::{DeleteOptions, PatchType, Request, Subresource};
use berth_agent::api::{Api, ApiConfig, ApiError, ByteStream, ExecSession, NodeIo, Response};
use berth_agent::objects::Kind;
use berth_agent::objects::selector::Selector;
use berth_agent::state::{State, StateConfig};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

/// A node without pods: logs and exec are not part of these tests.
struct NoNode;

impl NodeIo for NoNode {
    fn logs(
        &self,
        _: Arc<Value>,
        _: berth_agent::api::request::LogOptions,
    ) -> BoxFuture<'static, Result<ByteStream, ApiError>> {
        Box::pin(async { Err(ApiError::bad_request("no node in this test")) })
    }
    fn exec(
        &self,
        _: Arc<Value>,
        _: berth_agent::api::request::ExecOptions,
    ) -> BoxFuture<'static, Result<ExecSession, ApiError>> {
        Box::pin(async { Err(ApiError::bad_request("no node in this test")) })
    }
    fn node_request(
        &self,
        _: &str,
        _: &str,
        _: Value,
    ) -> BoxFuture<'static, Result<Value, ApiError>> {
        Box::pin(async { Err(ApiError::bad_request("no node in this test")) })
    }
}

struct Fixture {
    api: Api,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(StateConfig::new(dir.path(), "node-a"))
        .await
        .unwrap();
    let api = Api::new(
        state,
        Arc::new(NoNode),
        ApiConfig {
            version: "test".into(),
        },
    );
    let f = Fixture { api, _dir: dir };
    f.json(Request::Create {
        kind: Kind::Namespace,
        namespace: String::new(),
        body: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}),
        dry_run: false,
    })
    .await
    .unwrap();
    f
}

impl Fixture {
    async fn json(&self, request: Request) -> Result<(u16, Value), ApiError> {
        match self.api.handle(request).await? {
            Response::Json { code, body, .. } => Ok((code, body)),
            _ => panic!("expected a JSON answer"),
        }
    }

    async fn create(&self, kind: Kind, body: Value) -> Result<(u16, Value), ApiError> {
        self.json(Request::Create {
            kind,
            namespace: "default".into(),
            body,
            dry_run: false,
        })
        .await
    }

    async fn get(&self, kind: Kind, name: &str) -> Result<Value, ApiError> {
        self.json(Request::Get {
            kind,
            namespace: "default".into(),
            name: name.into(),
            subresource: None,
        })
        .await
        .map(|(_, v)| v)
    }

    async fn patch(
        &self,
        kind: Kind,
        name: &str,
        patch_type: PatchType,
        body: Value,
    ) -> Result<Value, ApiError> {
        self.json(Request::Patch {
            kind,
            namespace: "default".into(),
            name: name.into(),
            subresource: None,
            patch_type,
            body,
            dry_run: false,
            field_manager: None,
        })
        .await
        .map(|(_, v)| v)
    }
}

fn pod(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}
    })
}

fn statefulset() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}
        }
    })
}

#[tokio::test]
async fn a_created_pod_is_defaulted_versioned_and_readable() {
    let f = fixture().await;
    let (code, created) = f
        .create(Kind::Pod, pod("web", json!({"app": "web"})))
        .await
        .unwrap();
    assert_eq!(code, 201);
    assert_eq!(created["kind"], "Pod");
    assert_eq!(created["spec"]["restartPolicy"], "Always");
    assert_eq!(
        created["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(
        created["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| rv.parse::<u64>().is_ok())
    );
    let got = f.get(Kind::Pod, "web").await.unwrap();
    assert_eq!(got, created);
}

#[tokio::test]
async fn errors_speak_kubernetes() {
    let f = fixture().await;
    f.create(Kind::Pod, pod("web", json!({}))).await.unwrap();
    let again = f
        .create(Kind::Pod, pod("web", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        (again.code, again.reason, again.message.as_str()),
        (409, "AlreadyExists", "pods \"web\" already exists")
    );

    let mut no_image = pod("bad", json!({}));
    no_image["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("image");
    let invalid = f.create(Kind::Pod, no_image).await.unwrap_err();
    assert_eq!(invalid.code, 422);
    assert_eq!(
        invalid.message,
        "Pod \"bad\" is invalid: spec.containers[0].image: Required value"
    );
    assert_eq!(
        invalid.to_status()["details"]["causes"][0]["field"],
        "spec.containers[0].image"
    );

    let mut typo = pod("typo", json!({}));
    typo["spec"]["containers"][0]["imagee"] = json!("x");
    let unknown = f.create(Kind::Pod, typo).await.unwrap_err();
    assert_eq!(unknown.code, 400);
    assert!(
        unknown
            .message
            .contains("unknown field \"spec.containers[0].imagee\""),
        "{}",
        unknown.message
    );

    let missing_ns = f
        .json(Request::Create {
            kind: Kind::Pod,
            namespace: "nowhere".into(),
            body: pod("x", json!({})),
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (missing_ns.code, missing_ns.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );

    let gone = f.get(Kind::Pod, "ghost").await.unwrap_err();
    assert_eq!(
        (gone.code, gone.message.as_str()),
        (404, "pods \"ghost\" not found")
    );

    // Nothing half-created: only the one good pod exists.
    let list = f
        .api
        .list(Kind::Pod, Some("default"), &Selector::everything(), None);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn lists_filter_by_label_selector() {
    let f = fixture().await;
    f.create(Kind::Pod, pod("a", json!({"app": "web", "tier": "front"})))
        .await
        .unwrap();
    f.create(Kind::Pod, pod("b", json!({"app": "web"})))
        .await
        .unwrap();
    f.create(Kind::Pod, pod("c", json!({"app": "db"})))
        .await
        .unwrap();
    let names = |sel: &str| {
        let list = f.api.list(
            Kind::Pod,
            Some("default"),
            &Selector::parse(sel).unwrap(),
            None,
        );
        assert_eq!(list["kind"], "PodList");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("app=web"), vec!["a", "b"]);
    assert_eq!(names("app in (db,web),!tier"), vec!["b", "c"]);
    assert_eq!(names("app!=web"), vec!["c"]);
}

#[tokio::test]
async fn apply_creates_then_updates_and_keeps_what_others_changed() {
    let f = fixture().await;
    let applied = f
        .patch(Kind::StatefulSet, "web", PatchType::Apply, statefulset())
        .await
        .unwrap();
    assert_eq!(applied["spec"]["replicas"], 1);
    let first_rv = applied["metadata"]["resourceVersion"].clone();

    // Re-applying the same manifest changes nothing.
    let same = f
        .patch(Kind::StatefulSet, "web", PatchType::Apply, statefulset())
        .await
        .unwrap();
    assert_eq!(same["metadata"]["resourceVersion"], first_rv);

    // `scale` sets replicas; a later apply of a manifest without replicas keeps them.
    let (_, scale) = f
        .json(Request::Patch {
            kind: Kind::StatefulSet,
            namespace: "default".into(),
            name: "web".into(),
            subresource: Some(Subresource::Scale),
            patch_type: PatchType::Merge,
            body: json!({"spec": {"replicas": 3}}),
            dry_run: false,
            field_manager: None,
        })
        .await
        .unwrap();
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(3))
    );
    let mut changed = statefulset();
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    let updated = f
        .patch(Kind::StatefulSet, "web", PatchType::Apply, changed)
        .await
        .unwrap();
    assert_eq!(updated["spec"]["replicas"], 3);
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.37"
    );
    assert_eq!(updated["metadata"]["generation"], 3);
}

#[tokio::test]
async fn an_immutable_field_change_is_refused_and_nothing_changes() {
    let f = fixture().await;
    f.patch(Kind::StatefulSet, "web", PatchType::Apply, statefulset())
        .await
        .unwrap();
    let before = f.get(Kind::StatefulSet, "web").await.unwrap();
    let err = f
        .patch(
            Kind::StatefulSet,
            "web",
            PatchType::Merge,
            json!({"spec": {"serviceName": "other"}}),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, 422, "{}", err.message);
    assert!(
        err.message
            .starts_with("StatefulSet.apps \"web\" is invalid: spec: Forbidden"),
        "{}",
        err.message
    );
    assert_eq!(f.get(Kind::StatefulSet, "web").await.unwrap(), before);
}

#[tokio::test]
async fn a_replace_with_a_stale_resource_version_conflicts() {
    let f = fixture().await;
    let (_, cm) = f
        .create(Kind::ConfigMap, json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}))
        .await
        .unwrap();
    let mut newer = cm.clone();
    newer["data"]["a"] = json!("2");
    f.json(Request::Replace {
        kind: Kind::ConfigMap,
        namespace: "default".into(),
        name: "c".into(),
        subresource: None,
        body: newer,
        dry_run: false,
    })
    .await
    .unwrap();
    let mut stale = cm;
    stale["data"]["a"] = json!("3");
    let err = f
        .json(Request::Replace {
            kind: Kind::ConfigMap,
            namespace: "default".into(),
            name: "c".into(),
            subresource: None,
            body: stale,
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!((err.code, err.reason), (409, "Conflict"));
    assert_eq!(f.get(Kind::ConfigMap, "c").await.unwrap()["data"]["a"], "2");
}

#[tokio::test]
async fn a_bound_pod_is_deleted_gracefully_and_an_unbound_one_at_once() {
    let f = fixture().await;
    let mut bound = pod("bound", json!({}));
    bound["spec"]["nodeName"] = json!("node-a");
    f.create(Kind::Pod, bound).await.unwrap();
    f.create(Kind::Pod, pod("loose", json!({}))).await.unwrap();
    let delete = |name: &str, grace: Option<i64>| Request::Delete {
        kind: Kind::Pod,
        namespace: "default".into(),
        name: name.into(),
        options: DeleteOptions {
            grace_period_seconds: grace,
            ..DeleteOptions::default()
        },
        dry_run: false,
    };
    let (code, terminating) = f.json(delete("bound", None)).await.unwrap();
    assert_eq!(code, 202);
    assert_eq!(terminating["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(
        f.get(Kind::Pod, "bound").await.is_ok(),
        "kept until the kubelet confirms"
    );
    let (code, _) = f.json(delete("loose", None)).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(f.get(Kind::Pod, "loose").await.unwrap_err().code, 404);
    // The kubelet's final delete with grace 0 removes it.
    f.json(delete("bound", Some(0))).await.unwrap();
    assert_eq!(f.get(Kind::Pod, "bound").await.unwrap_err().code, 404);
}

#[tokio::test]
async fn a_dry_run_validates_and_changes_nothing() {
    let f = fixture().await;
    let (code, would) = f
        .json(Request::Create {
            kind: Kind::Pod,
            namespace: "default".into(),
            body: pod("dry", json!({})),
            dry_run: true,
        })
        .await
        .unwrap();
    assert_eq!(code, 201);
    assert_eq!(would["metadata"]["name"], "dry");
    assert_eq!(f.get(Kind::Pod, "dry").await.unwrap_err().code, 404);
}

#[tokio::test]
async fn a_filtered_watch_reports_objects_leaving_the_selection_as_deleted() {
    let f = fixture().await;
    let (_, list) = (
        0,
        f.api
            .list(Kind::Pod, Some("default"), &Selector::everything(), None),
    );
    let rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let response = f
        .api
        .handle(Request::Watch {
            kind: Kind::Pod,
            namespace: Some("default".into()),
            labels: Selector::parse("app=web").unwrap(),
            fields: None,
            resource_version: Some(rv),
            bookmarks: false,
            timeout_seconds: None,
        })
        .await
        .unwrap();
    let Response::Watch(mut events) = response else {
        panic!("expected a watch")
    };
    f.create(Kind::Pod, pod("w", json!({"app": "web"})))
        .await
        .unwrap();
    f.create(Kind::Pod, pod("other", json!({"app": "db"})))
        .await
        .unwrap();
    f.patch(
        Kind::Pod,
        "w",
        PatchType::Merge,
        json!({"metadata": {"labels": {"app": "api"}}}),
    )
    .await
    .unwrap();
    let next = |e: Option<Value>| {
        let e = e.expect("an event");
        (
            e["type"].as_str().unwrap().to_string(),
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };
    let timeout = std::time::Duration::from_secs(5);
    assert_eq!(
        next(tokio::time::timeout(timeout, events.next()).await.unwrap()),
        ("ADDED".into(), "w".into())
    );
    assert_eq!(
        next(tokio::time::timeout(timeout, events.next()).await.unwrap()),
        ("DELETED".into(), "w".into())
    );
}
