//! `resources.limits` are enforced by the kernel: memory (OOM kill, reported), CPU (CFS
//! throttling), pids (fork fails).

mod common;

use std::time::Duration;

use berth_runtime::ContainerExit;
use berth_runtime::spec::Resources;
use common::*;

fn first_mount_with(controller: &str) -> String {
    cgroup_mounts()
        .into_iter()
        .map(|m| m.display().to_string())
        .find(|m| {
            m.ends_with(&format!("/{controller}"))
                || m.contains(&format!("{controller},"))
                || m.contains(&format!(",{controller}"))
        })
        .or_else(|| {
            cgroup_mounts()
                .into_iter()
                .map(|m| m.display().to_string())
                .find(|m| m == "/sys/fs/cgroup")
        })
        .expect("controller mounted")
}

#[tokio::test]
async fn memory_past_the_limit_is_oom_killed_and_reported_so() {
    let mut t = TestRuntime::new("memory_oom");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let mut req = t.request(
        "c-hog",
        &pod,
        // The shell itself holds the ever-growing string, so the shell (init) is the victim.
        "echo start; x=a; while true; do x=$x$x; done",
    );
    req.config.resources = Resources {
        memory_limit_bytes: Some(32 << 20),
        ..Resources::default()
    };
    let shim = t.start(req).await;
    let exit = tokio::time::timeout(Duration::from_secs(60), shim.wait())
        .await
        .expect("the OOM killer ends it")
        .unwrap();
    let ContainerExit::Exited(record) = exit else {
        panic!("{exit:?}");
    };
    assert!(record.oom_killed, "{record:?}");
    assert_eq!((record.exit_code, record.signal), (137, Some(9)));
    assert_eq!(record.reason(), "OOMKilled");
    assert!(!record.stop_requested);
}

#[tokio::test]
async fn a_cpu_limit_throttles_a_busy_container() {
    let mut t = TestRuntime::new("cpu_limit");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let mut req = t.request("c-spin", &pod, "while true; do :; done");
    req.config.resources = Resources {
        cpu_limit_millis: Some(100),
        ..Resources::default()
    };
    let shim = t.start(req).await;
    let cpu = container_cgroup(&t, &first_mount_with("cpu"), &pod, "c-spin");
    let (quota, period) = if cpu.join("cpu.max").exists() {
        let text = std::fs::read_to_string(cpu.join("cpu.max")).unwrap();
        let mut parts = text.split_whitespace();
        (
            parts.next().unwrap().to_owned(),
            parts.next().unwrap().to_owned(),
        )
    } else {
        (
            std::fs::read_to_string(cpu.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim()
                .to_owned(),
            std::fs::read_to_string(cpu.join("cpu.cfs_period_us"))
                .unwrap()
                .trim()
                .to_owned(),
        )
    };
    assert_eq!((quota.as_str(), period.as_str()), ("10000", "100000"));
    // The kernel really throttles it.
    eventually(
        "CFS throttling of the busy loop",
        Duration::from_secs(20),
        || {
            let stat = std::fs::read_to_string(cpu.join("cpu.stat")).ok()?;
            let throttled: u64 = stat
                .lines()
                .find_map(|l| l.strip_prefix("nr_throttled "))?
                .trim()
                .parse()
                .ok()?;
            (throttled > 0).then_some(())
        },
    )
    .await;
    shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn a_pids_limit_stops_forks_past_it() {
    let mut t = TestRuntime::new("pids_limit");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let mut req = t.request("c-forks", &pod, "exec sleep 1000");
    req.config.resources = Resources {
        pids_limit: Some(10),
        ..Resources::default()
    };
    let shim = t.start(req).await;
    let pids = container_cgroup(&t, &first_mount_with("pids"), &pod, "c-forks");
    assert_eq!(
        std::fs::read_to_string(pids.join("pids.max"))
            .unwrap()
            .trim(),
        "10"
    );
    // The shell gives up at the first fork the kernel refuses.
    let (code, _, err) = exec(
        &t,
        "c-forks",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 30 ]; do sleep 100 & i=$((i+1)); done; echo all forked",
        ],
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("can't fork"), "{err}");
    let current: u64 = std::fs::read_to_string(pids.join("pids.current"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(current <= 10, "{current} processes");
    shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn the_pod_cgroup_carries_the_pod_limits() {
    let mut t = TestRuntime::new("pod_limits");
    let pod_name = format!("p-{}", t.name);
    let pod = t
        .sandbox_with(berth_runtime::SandboxConfig {
            pod_uid: berth_runtime::PodUid::new(&pod_name).unwrap(),
            hostname: "web-0".into(),
            host_network: false,
            host_ipc: false,
            resources: berth_runtime::cgroup::PodResources {
                cpu_limit_millis: Some(500),
                memory_limit_bytes: Some(256 << 20),
                pids_limit: Some(100),
            },
            shm_size: None,
        })
        .await;
    let mem_mount = first_mount_with("memory");
    let pod_dir = std::path::Path::new(&mem_mount)
        .join(t.runtime.cgroup_parent())
        .join(format!("pod{pod}"));
    let limit = std::fs::read_to_string(pod_dir.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(pod_dir.join("memory.max")))
        .unwrap();
    assert_eq!(limit.trim(), (256u64 << 20).to_string());
}
