//! Shims outlive whoever launched them, and a new handle finds them again.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_runtime::{
    ContainerExit, ContainerId, RecoveredState, Runtime, RuntimeConfig, RuntimeDirs,
};
use common::*;

const CHILD_ENV: &str = "BERTH_TEST_LAUNCHER";

/// Not a test of its own: the body of the launcher child process that
/// `running_containers_and_exits_are_found_after_the_launcher_is_killed` starts and kills.
/// Without the environment variable it does nothing.
#[tokio::test]
async fn launcher_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let [run, data, parent, pod] = parts[..] else {
        panic!("bad {CHILD_ENV}: {spec}");
    };
    let dirs = RuntimeDirs {
        run_dir: PathBuf::from(run),
        data_dir: PathBuf::from(data),
    };
    let mut config = RuntimeConfig::new(dirs, env!("CARGO_BIN_EXE_berth-shim"));
    config.cgroup_parent = parent.to_owned();
    let runtime = Runtime::new(config).unwrap();
    let pod = berth_runtime::PodUid::new(pod).unwrap();
    let log_dir = runtime.dirs().data_dir.join("test-logs");
    let request = |id: &str, script: &str| {
        let mut req = request_template(id, &pod, script);
        req.log = berth_runtime::LogConfig::new(log_dir.join(format!("{id}.log")));
        req
    };
    runtime
        .start_container(request("c-long", "echo up; exec sleep 1000"))
        .await
        .unwrap();
    runtime
        .start_container(request("c-short", "sleep 1; echo bye; exit 3"))
        .await
        .unwrap();
    println!("READY");
    tokio::time::sleep(Duration::from_secs(600)).await;
}

fn request_template(
    id: &str,
    pod: &berth_runtime::PodUid,
    script: &str,
) -> berth_runtime::ContainerRequest {
    berth_runtime::ContainerRequest {
        id: ContainerId::new(id).unwrap(),
        pod: pod.clone(),
        rootfs: berth_runtime::RootfsSource::Overlay {
            lower_dirs: vec![busybox_rootfs().to_path_buf()],
        },
        image: berth_runtime::image::ImageConfig {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            ..Default::default()
        },
        config: berth_runtime::spec::ContainerConfig {
            command: vec!["sh".into(), "-c".into(), script.into()],
            ..Default::default()
        },
        mounts: vec![],
        etc_files: Default::default(),
        log: berth_runtime::LogConfig::new("/dev/null"),
        labels: [("container".to_string(), id.to_string())].into(),
    }
}

#[tokio::test]
async fn running_containers_and_exits_are_found_after_the_launcher_is_killed() {
    let mut t = TestRuntime::new("launcher_killed");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let spec = format!(
        "{}|{}|{}|{}",
        t.dirs().run_dir.display(),
        t.dirs().data_dir.display(),
        t.runtime.cgroup_parent().display(),
        pod
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "launcher_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .env(ROOTFS_ENV, busybox_rootfs())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = lines.next().expect("launcher output").unwrap();
        if line.contains("READY") {
            break;
        }
    }
    // The launcher dies abruptly, as an agent killed with SIGKILL would.
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    let runtime = &t.runtime;
    let found = runtime.recover().unwrap();
    let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec!["c-long", "c-short"]);
    let long = &found[0];
    assert_eq!(long.pod.as_ref(), Some(&pod));
    assert_eq!(
        long.labels.get("container").map(String::as_str),
        Some("c-long")
    );
    let RecoveredState::Running(long_shim) = &long.state else {
        panic!("c-long should still run: {:?}", long.state);
    };
    assert!(process_alive(long_shim.init_pid()));

    // c-short ends on its own while nobody supervises it; its exit is recorded.
    let record = eventually("c-short's exit record", Duration::from_secs(30), || {
        runtime
            .recover()
            .unwrap()
            .into_iter()
            .find(|c| c.id.as_str() == "c-short")
            .and_then(|c| match c.state {
                RecoveredState::Exited(r) => Some(r),
                _ => None,
            })
    })
    .await;
    assert_eq!((record.exit_code, record.signal), (3, None));

    // The recovered handle controls the container like the original one.
    let exit = long_shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
    assert!(
        matches!(exit, ContainerExit::Exited(ref r) if r.signal == Some(9)),
        "{exit:?}"
    );
}

#[tokio::test]
async fn a_killed_shim_is_reported_unknown_and_removal_still_cleans_up() {
    let mut t = TestRuntime::new("shim_killed");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t
        .start(t.request("c-orphan", &pod, "exec sleep 1000"))
        .await;
    let init = shim.init_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = shim.wait().await.unwrap();
    assert!(matches!(exit, ContainerExit::Unknown { .. }), "{exit:?}");
    let found = t.runtime.recover().unwrap();
    assert!(
        matches!(found[0].state, RecoveredState::Unknown { ref reason } if reason.contains("may still be running")),
        "{:?}",
        found[0].state
    );
    // The container itself still runs, orphaned: removal must kill it.
    assert!(process_alive(init));
    let id = ContainerId::new("c-orphan").unwrap();
    t.runtime.remove_container(&id, false).await.unwrap();
    eventually(
        "the orphaned container to die",
        Duration::from_secs(10),
        || (!process_alive(init)).then_some(()),
    )
    .await;
    assert_nothing_left(&t, "c-orphan");
}

#[tokio::test]
async fn removing_a_running_container_needs_force() {
    let mut t = TestRuntime::new("remove_force");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t.start(t.request("c-busy", &pod, "exec sleep 1000")).await;
    let id = ContainerId::new("c-busy").unwrap();
    let err = t.runtime.remove_container(&id, false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "container c-busy is still running (remove it with force to kill it)"
    );
    t.runtime.remove_container(&id, true).await.unwrap();
    assert!(!process_alive(shim.init_pid()));
    assert!(!process_alive(shim.pid()));
    assert_nothing_left(&t, "c-busy");
    // Idempotent.
    t.runtime.remove_container(&id, true).await.unwrap();
}

#[tokio::test]
async fn shims_move_out_of_the_launchers_cgroup() {
    let mut t = TestRuntime::new("shim_cgroup");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let shim = t.start(t.request("c-cg", &pod, "exec sleep 1000")).await;
    let shims_cgroup = format!("/{}/shims", t.runtime.cgroup_parent().display());
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", shim.pid())).unwrap();
    // In every hierarchy, named ones (name=systemd) and a hybrid host's unified one included,
    // the shim sits in <parent>/shims.
    for line in cgroups.lines() {
        assert!(line.ends_with(&shims_cgroup), "{line} in\n{cgroups}");
    }
    // The container itself is in its own cgroup below the pod's.
    let init = std::fs::read_to_string(format!("/proc/{}/cgroup", shim.init_pid())).unwrap();
    let memory = init.lines().find(|l| l.contains(":memory:")).unwrap();
    assert!(memory.ends_with(&format!("/pod{pod}/c-cg")), "{memory}");
    shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
}

/// A FIFO at `path` (opening it for writing blocks until a reader opens it).
fn fifo(path: &std::path::Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

#[tokio::test]
async fn a_start_given_up_before_its_shim_took_the_lock_never_runs_the_container() {
    let mut t = TestRuntime::new("start_before_lock");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    // The "shim" is a gate that waits on a FIFO, then execs the real shim: the agent has
    // spawned it, but it has not taken its start lock yet.
    let gate = t.tmp.join("gate");
    fifo(&gate);
    let wrapper = t.tmp.join("gated-shim");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nread go < {}\nexec {} \"$@\"\n",
            gate.display(),
            env!("CARGO_BIN_EXE_berth-shim")
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut config = RuntimeConfig::new(t.dirs().clone(), &wrapper);
    config.cgroup_parent = format!("berth-test-{}", t.name);
    let gated = Runtime::new(config).unwrap();
    let request = t.request("c-gated", &pod, "exec sleep 1000");
    let start = tokio::spawn(async move { gated.start_container(request).await });
    // Opening the gate for writing returns once the wrapper waits at it.
    let gate_path = gate.clone();
    let mut gate_writer = tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(gate_path)
            .unwrap()
    })
    .await
    .unwrap();

    // The agent "crashed" here. The next one finds a start that was never confirmed, with no
    // shim holding the lock.
    let found = t.runtime.recover().unwrap();
    assert_eq!(found.len(), 1);
    assert!(
        matches!(
            found[0].state,
            RecoveredState::StartUnconfirmed {
                starting_shim: None,
                ..
            }
        ),
        "{:?}",
        found[0].state
    );
    let id = ContainerId::new("c-gated").unwrap();
    t.runtime.remove_container(&id, false).await.unwrap();
    assert_nothing_left(&t, "c-gated");

    // The late shim goes on: it must find its start given up and start nothing.
    use std::io::Write;
    gate_writer.write_all(b"go\n").unwrap();
    drop(gate_writer);
    let err = start
        .await
        .unwrap()
        .expect_err("the given-up start must fail");
    let message = berth_runtime::shim::error_chain(&err);
    assert!(message.contains("start lock"), "{message}");
    assert_nothing_left(&t, "c-gated");
}

#[tokio::test]
async fn a_shim_still_starting_when_the_agent_stopped_is_killed_by_forced_removal() {
    let mut t = TestRuntime::new("start_mid_start");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    // The container's log is a FIFO nobody reads: the shim blocks opening it, after it took
    // its start lock and wrote its pid file, before it creates the container.
    let log = t.tmp.join("fifo-logs").join("c-mid.log");
    fifo(&log);
    let mut request = t.request("c-mid", &pod, "exec sleep 1000");
    request.log = berth_runtime::LogConfig::new(&log);
    let runtime = t.runtime.clone();
    let start = tokio::spawn(async move { runtime.start_container(request).await });

    let starting = eventually(
        "the shim to hold its start lock",
        Duration::from_secs(30),
        || {
            t.runtime
                .recover()
                .unwrap()
                .into_iter()
                .find_map(|c| match c.state {
                    RecoveredState::StartUnconfirmed {
                        starting_shim: Some(pid),
                        ..
                    } => Some(pid),
                    _ => None,
                })
        },
    )
    .await;
    assert!(process_alive(starting));
    let id = ContainerId::new("c-mid").unwrap();
    let refused = t.runtime.remove_container(&id, false).await;
    assert!(
        matches!(
            refused,
            Err(berth_runtime::ContainerError::StillRunning { .. })
        ),
        "{refused:?}"
    );
    assert!(
        process_alive(starting),
        "removal without force kills nothing"
    );

    t.runtime.remove_container(&id, true).await.unwrap();
    assert!(!process_alive(starting), "the starting shim is killed");
    assert_nothing_left(&t, "c-mid");
    assert!(start.await.unwrap().is_err());
    assert_nothing_left(&t, "c-mid");
}
