//! Bad input gets a clear error naming the thing, and leaves nothing half-created.

mod common;

use berth_runtime::volumes::VolumeSource;
use berth_runtime::{ContainerError, ContainerId, PodUid, RootfsSource, VolumeMount};
use common::*;

fn chain(e: &ContainerError) -> String {
    berth_runtime::shim::error_chain(e)
}

#[tokio::test]
async fn a_command_missing_from_the_image_fails_the_start_and_leaves_nothing() {
    let mut t = TestRuntime::new("cmd_missing");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let mut req = t.request("c-nocmd", &pod, "");
    req.config.command = vec!["/usr/bin/not-in-this-image".into(), "--flag".into()];
    let err = t.runtime.start_container(req).await.unwrap_err();
    let msg = chain(&err);
    assert!(msg.contains("not-in-this-image"), "{msg}");
    assert!(msg.contains("c-nocmd"), "{msg}");
    assert_nothing_left(&t, "c-nocmd");
    assert!(t.runtime.recover().unwrap().is_empty());
    // The id is free again.
    let shim = t.start(t.request("c-nocmd", &pod, "true")).await;
    shim.wait().await.unwrap();
}

#[tokio::test]
async fn a_mount_path_outside_the_rootfs_is_refused_by_name() {
    let mut t = TestRuntime::new("mount_outside");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let vol = t
        .runtime
        .prepare_volume(
            &pod,
            "v",
            VolumeSource::EmptyDir {
                medium: Default::default(),
                size_limit: None,
            },
            None,
        )
        .await
        .unwrap();
    for bad in ["/../../etc", "/data/../../../root", "relative/path", "/"] {
        let mut req = t.request("c-escape", &pod, "true");
        req.mounts = vec![VolumeMount {
            volume_path: vol.path.clone(),
            mount_path: bad.into(),
            sub_path: None,
            read_only: false,
        }];
        let err = t.runtime.start_container(req).await.unwrap_err();
        let msg = chain(&err);
        assert!(msg.contains(&format!("{bad:?}")), "{msg}");
        assert!(matches!(err, ContainerError::Spec { .. }), "{msg}");
        assert_nothing_left(&t, "c-escape");
    }
}

#[tokio::test]
async fn a_sub_path_escaping_its_volume_is_refused_by_name() {
    let mut t = TestRuntime::new("subpath_escape");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let vol = t
        .runtime
        .prepare_volume(
            &pod,
            "v",
            VolumeSource::EmptyDir {
                medium: Default::default(),
                size_limit: None,
            },
            None,
        )
        .await
        .unwrap();
    std::os::unix::fs::symlink("/etc", vol.path.join("evil")).unwrap();
    for bad in ["evil/passwd", "../x"] {
        let mut req = t.request("c-sub", &pod, "true");
        req.mounts = vec![VolumeMount {
            volume_path: vol.path.clone(),
            mount_path: "/data".into(),
            sub_path: Some(bad.into()),
            read_only: false,
        }];
        let err = t.runtime.start_container(req).await.unwrap_err();
        let msg = chain(&err);
        assert!(msg.contains(&format!("subPath {bad:?}")), "{msg}");
        assert_nothing_left(&t, "c-sub");
    }
}

#[tokio::test]
async fn a_missing_rootfs_is_named_and_nothing_is_created() {
    let mut t = TestRuntime::new("rootfs_missing");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let missing = t.tmp.join("no-such-rootfs");
    for rootfs in [
        RootfsSource::Directory(missing.clone()),
        RootfsSource::Overlay {
            lower_dirs: vec![busybox_rootfs().to_path_buf(), missing.clone()],
        },
    ] {
        let mut req = t.request("c-norootfs", &pod, "true");
        req.rootfs = rootfs;
        let err = t.runtime.start_container(req).await.unwrap_err();
        let msg = chain(&err);
        assert!(msg.contains(&missing.display().to_string()), "{msg}");
        assert_nothing_left(&t, "c-norootfs");
    }
}

#[tokio::test]
async fn invalid_ids_are_refused_before_anything_is_created() {
    let t = TestRuntime::new("invalid_id");
    for bad in ["../escape", "a/b", "", ".hidden", "has space"] {
        let err = ContainerId::new(bad).unwrap_err().to_string();
        assert!(err.starts_with("container id"), "{err}");
        assert!(bad.is_empty() || err.contains(&format!("{bad:?}")), "{err}");
        assert!(PodUid::new(bad).is_err());
    }
    // Nothing of them can reach the runtime: ids only exist validated, also from JSON.
    assert!(serde_json::from_str::<ContainerId>("\"../escape\"").is_err());
    assert_eq!(std::fs::read_dir(t.dirs().shims_dir()).unwrap().count(), 0);
}

#[tokio::test]
async fn starting_without_a_sandbox_or_twice_is_an_error() {
    let mut t = TestRuntime::new("no_sandbox");
    let ghost = PodUid::new(format!("ghost-{}", t.name)).unwrap();
    let err = t
        .runtime
        .start_container(t.request("c-ghost", &ghost, "true"))
        .await
        .unwrap_err();
    assert!(matches!(err, ContainerError::NoSandbox { .. }), "{err}");
    assert!(err.to_string().contains(ghost.as_str()));
    assert_nothing_left(&t, "c-ghost");

    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t.start(t.request("c-twice", &pod, "exec sleep 1000")).await;
    let err = t
        .runtime
        .start_container(t.request("c-twice", &pod, "true"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "container c-twice already exists");
    // The running one is untouched.
    assert!(shim.is_alive());
    shim.stop(libc::SIGKILL, std::time::Duration::ZERO)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unknown_image_user_is_named_and_nothing_is_left() {
    let mut t = TestRuntime::new("unknown_user");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let mut req = t.request("c-nouser", &pod, "true");
    req.image.user = Some("postgres".into());
    let err = t.runtime.start_container(req).await.unwrap_err();
    assert!(chain(&err).contains("user \"postgres\""), "{}", chain(&err));
    assert_nothing_left(&t, "c-nouser");
}
