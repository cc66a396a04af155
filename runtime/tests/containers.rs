//! Containers through the shim, as root: output and logs, exec, stop, preStop, claims.

mod common;

use std::time::Duration;

use berth_runtime::logs::{LogFollower, Stream};
use berth_runtime::volumes::VolumeSource;
use berth_runtime::{ContainerExit, ContainerId, ExecError, ExecRequest, VolumeMount};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn exited(exit: ContainerExit) -> berth_runtime::ExitRecord {
    match exit {
        ContainerExit::Exited(r) => r,
        other => panic!("expected an exit record, got {other:?}"),
    }
}

#[tokio::test]
async fn a_started_container_writes_its_output_to_the_log() {
    let mut t = TestRuntime::new("output_log");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t
        .start(t.request(
            "c-out",
            &pod,
            "echo hello; echo oops >&2; printf 'no newline'; exit 3",
        ))
        .await;
    let record = exited(shim.wait().await.unwrap());
    assert_eq!((record.exit_code, record.signal), (3, None));
    assert_eq!(record.reason(), "Error");
    assert!(!record.oom_killed);
    assert!(record.finished_at().unwrap() >= record.started_at().unwrap());
    let lines = berth_runtime::logs::read_log(&t.log_path("c-out"), None).unwrap();
    let text: Vec<(String, Stream)> = lines.iter().map(|l| (l.text(), l.stream)).collect();
    assert!(
        text.contains(&("hello".to_string(), Stream::Stdout)),
        "{text:?}"
    );
    assert!(
        text.contains(&("oops".to_string(), Stream::Stderr)),
        "{text:?}"
    );
    assert!(
        text.contains(&("no newline".to_string(), Stream::Stdout)),
        "{text:?}"
    );
    // The shim is gone once wait returns, and its container is deleted from libcontainer.
    assert!(!process_alive(shim.pid()));
    assert!(!t.dirs().libcontainer_root().join("c-out").exists());
}

#[tokio::test]
async fn long_lines_are_split_into_partial_records_and_joined_on_reading() {
    let mut t = TestRuntime::new("long_lines");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let mut req = t.request(
        "c-long",
        &pod,
        "head -c 5000 /dev/zero | tr '\\0' x; echo; echo end",
    );
    req.log.max_line = 1024;
    let shim = t.start(req).await;
    exited(shim.wait().await.unwrap());
    let raw = std::fs::read_to_string(t.log_path("c-long")).unwrap();
    assert_eq!(
        raw.lines().filter(|l| l.contains(" stdout P ")).count(),
        4,
        "{raw}"
    );
    let lines = log_text(&t.log_path("c-long"));
    assert_eq!(lines, vec!["x".repeat(5000), "end".to_string()]);
}

#[tokio::test]
async fn logs_can_be_followed_while_the_container_runs() {
    let mut t = TestRuntime::new("follow_logs");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t
        .start(t.request(
            "c-follow",
            &pod,
            "i=0; while [ $i -lt 5 ]; do echo line$i; i=$((i+1)); sleep 0.1; done",
        ))
        .await;
    let mut follower = LogFollower::open(t.log_path("c-follow"), None).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let line = tokio::time::timeout(Duration::from_secs(20), follower.next_line())
            .await
            .expect("a line within 20s")
            .unwrap();
        seen.push(line.text());
    }
    assert_eq!(seen, vec!["line0", "line1", "line2", "line3", "line4"]);
    exited(shim.wait().await.unwrap());
}

#[tokio::test]
async fn exec_runs_inside_the_container_with_env_cwd_stdin_and_exit_code() {
    let mut t = TestRuntime::new("exec_basic");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let mut req = t.request("c-exec", &pod, "echo ready; exec sleep 1000");
    req.config.env = vec![("FROM_SPEC".into(), "spec".into())];
    let shim = t.start(req).await;
    wait_for_log_line(&t, "c-exec", "ready").await;

    let (code, out, _) = exec(&t, "c-exec", &["sh", "-c", "echo $FROM_SPEC; exit 7"]).await;
    assert_eq!((code, out.trim()), (7, "spec"));

    let id = ContainerId::new("c-exec").unwrap();
    let req = ExecRequest {
        command: vec!["sh".into(), "-c".into(), "pwd; echo $EXTRA; cat".into()],
        env: vec![("EXTRA".into(), "added".into())],
        working_dir: Some("/tmp".into()),
        stdin: true,
    };
    let mut process = t.runtime.exec(&id, &req).unwrap();
    let mut stdin = process.child.stdin.take().unwrap();
    stdin.write_all(b"from stdin\n").await.unwrap();
    drop(stdin);
    let mut out = String::new();
    process
        .child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let exit = process.wait().await.unwrap();
    assert_eq!(exit.exit_code, 0);
    assert_eq!(out, "/tmp\nadded\nfrom stdin\n");

    // The exec'd process is in the container: same pid namespace as its init (pid 1 is sleep).
    let (_, comm, _) = exec(&t, "c-exec", &["cat", "/proc/1/comm"]).await;
    assert_eq!(comm.trim(), "sleep");
    shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn exec_of_a_missing_command_or_into_a_stopped_container_is_a_clear_error() {
    let mut t = TestRuntime::new("exec_errors");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t.start(t.request("c-exe", &pod, "exec sleep 1000")).await;
    let id = ContainerId::new("c-exe").unwrap();
    let err = t
        .runtime
        .exec_output(
            &id,
            &ExecRequest::new(["no-such-tool"]),
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::StartFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("no-such-tool"), "{err}");

    shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
    let err = t
        .runtime
        .exec_output(&id, &ExecRequest::new(["true"]), Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::NotRunning { .. }), "{err:?}");
}

#[tokio::test]
async fn an_exec_past_its_timeout_is_killed() {
    let mut t = TestRuntime::new("exec_timeout");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t.start(t.request("c-slow", &pod, "exec sleep 1000")).await;
    let id = ContainerId::new("c-slow").unwrap();
    let err = t
        .runtime
        .exec_output(
            &id,
            &ExecRequest::new(["sh", "-c", "echo $$ > /tmp/exec.pid; exec sleep 1000"]),
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ExecError::Timeout { .. }), "{err:?}");
    // The timed-out process is gone from the container: only pid 1 still runs sleep.
    let (_, procs, _) = exec(&t, "c-slow", &["sh", "-c", "cat /proc/[0-9]*/comm"]).await;
    assert_eq!(
        procs.lines().filter(|c| *c == "sleep").count(),
        1,
        "{procs}"
    );
    shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn stopping_a_container_that_traps_sigterm_records_its_clean_exit() {
    let mut t = TestRuntime::new("stop_trap");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t
        .start(t.request(
            "c-trap",
            &pod,
            "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ))
        .await;
    wait_for_log_line(&t, "c-trap", "ready").await;
    let record = exited(
        shim.stop(libc::SIGTERM, Duration::from_secs(30))
            .await
            .unwrap(),
    );
    assert_eq!((record.exit_code, record.signal), (0, None));
    assert!(record.stop_requested);
    assert_eq!(record.reason(), "Completed");
    assert!(log_text(&t.log_path("c-trap")).contains(&"got TERM".to_string()));
}

#[tokio::test]
async fn stopping_a_container_that_ignores_sigterm_kills_it_after_the_grace_period() {
    let mut t = TestRuntime::new("stop_ignore");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    // A PID 1 without a handler does not get SIGTERM at all.
    let shim = t
        .start(t.request(
            "c-stubborn",
            &pod,
            "echo ready; while true; do sleep 0.1; done",
        ))
        .await;
    wait_for_log_line(&t, "c-stubborn", "ready").await;
    let record = exited(
        shim.stop(libc::SIGTERM, Duration::from_millis(500))
            .await
            .unwrap(),
    );
    assert_eq!((record.exit_code, record.signal), (137, Some(9)));
    assert!(record.stop_requested);
    assert!(!record.oom_killed);
}

#[tokio::test]
async fn the_pre_stop_hook_runs_before_the_stop_signal() {
    let mut t = TestRuntime::new("pre_stop");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t
        .start(t.request(
            "c-hook",
            &pod,
            "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.1; done",
        ))
        .await;
    wait_for_log_line(&t, "c-hook", "ready").await;
    let hook = ExecRequest::new(["sh", "-c", "echo pre-stop > /proc/1/fd/1"]);
    let exit = t
        .runtime
        .stop_container(&shim, libc::SIGTERM, Duration::from_secs(30), Some(&hook))
        .await
        .unwrap();
    assert_eq!(exited(exit).exit_code, 0);
    let lines = log_text(&t.log_path("c-hook"));
    let pre = lines
        .iter()
        .position(|l| l == "pre-stop")
        .expect("hook output");
    let term = lines
        .iter()
        .position(|l| l == "got TERM")
        .expect("trap output");
    assert!(pre < term, "{lines:?}");
}

#[tokio::test]
async fn data_in_a_claim_survives_its_container() {
    let mut t = TestRuntime::new("claim_data");
    let pod = t.sandbox(&format!("p-{}", t.name), "db-0").await;
    let volume = t
        .runtime
        .prepare_volume(
            &pod,
            "data",
            VolumeSource::Claim {
                claim: format!("data-db-0-{}", t.name),
            },
            None,
        )
        .await
        .unwrap();
    let mount = VolumeMount {
        volume_path: volume.path.clone(),
        mount_path: "/var/lib/db".into(),
        sub_path: None,
        read_only: false,
    };
    let mut first = t.request("c-writer", &pod, "echo precious > /var/lib/db/file");
    first.mounts = vec![mount.clone()];
    exited(t.start(first).await.wait().await.unwrap());
    t.runtime
        .remove_container(&ContainerId::new("c-writer").unwrap(), false)
        .await
        .unwrap();
    assert_nothing_left(&t, "c-writer");

    let mut second = t.request("c-reader", &pod, "cat /var/lib/db/file");
    second.mounts = vec![mount];
    let record = exited(t.start(second).await.wait().await.unwrap());
    assert_eq!(record.exit_code, 0);
    assert_eq!(log_text(&t.log_path("c-reader")), vec!["precious"]);
    // The claim is not the pod's: removing the pod's volumes keeps it.
    t.runtime.remove_pod_volumes(&pod).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(volume.path.join("file")).unwrap(),
        "precious\n"
    );
}

#[tokio::test]
async fn read_only_mounts_and_sub_paths_are_honoured() {
    let mut t = TestRuntime::new("ro_subpath");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let volume = t
        .runtime
        .prepare_volume(
            &pod,
            "scratch",
            VolumeSource::EmptyDir {
                medium: berth_runtime::volumes::StorageMedium::Disk,
                size_limit: None,
            },
            None,
        )
        .await
        .unwrap();
    let mut req = t.request(
        "c-mounts",
        &pod,
        "echo sub > /sub/f && ( (echo no > /ro/x) 2>/dev/null && echo writable || echo read-only)",
    );
    req.mounts = vec![
        VolumeMount {
            volume_path: volume.path.clone(),
            mount_path: "/ro".into(),
            sub_path: None,
            read_only: true,
        },
        VolumeMount {
            volume_path: volume.path.clone(),
            mount_path: "/sub".into(),
            sub_path: Some("nested/dir".into()),
            read_only: false,
        },
    ];
    exited(t.start(req).await.wait().await.unwrap());
    assert_eq!(log_text(&t.log_path("c-mounts")), vec!["read-only"]);
    assert_eq!(
        std::fs::read_to_string(volume.path.join("nested/dir/f")).unwrap(),
        "sub\n"
    );
}

#[tokio::test]
async fn a_container_runs_as_the_image_user_with_its_groups() {
    let mut t = TestRuntime::new("image_user");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let mut req = t.request("c-user", &pod, "id -u; id -g; id -G; echo $HOME");
    req.image.user = Some("app".into());
    exited(t.start(req).await.wait().await.unwrap());
    assert_eq!(
        log_text(&t.log_path("c-user")),
        vec!["1000", "1000", "1000 3000", "/home/app"]
    );
}
