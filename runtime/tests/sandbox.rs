//! Pod sandboxes: shared namespaces, the pod hostname, hostNetwork, and a teardown that leaves
//! nothing behind.

mod common;

use std::time::Duration;

use berth_runtime::cgroup::PodResources;
use berth_runtime::volumes::{Projection, StorageMedium, VolumeSource};
use berth_runtime::{ContainerId, PodUid, SandboxConfig, SandboxError, VolumeMount};
use common::*;

async fn ns_links(t: &TestRuntime, id: &str) -> Vec<String> {
    let (_, out, _) = exec(
        t,
        id,
        &[
            "sh",
            "-c",
            "for n in net uts ipc pid; do readlink /proc/1/ns/$n; done",
        ],
    )
    .await;
    out.lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn containers_of_a_pod_share_net_uts_ipc_and_see_the_pod_hostname() {
    let mut t = TestRuntime::new("shared_ns");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let a = t.start(t.request("c-a", &pod, "exec sleep 1000")).await;
    let b = t.start(t.request("c-b", &pod, "exec sleep 1000")).await;
    let (la, lb) = (ns_links(&t, "c-a").await, ns_links(&t, "c-b").await);
    assert_eq!(la[..3], lb[..3], "net, uts and ipc are shared");
    assert_ne!(la[3], lb[3], "each container has its own pid namespace");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(la[0], host_net.display().to_string());

    for id in ["c-a", "c-b"] {
        let (_, host, _) = exec(&t, id, &["hostname"]).await;
        assert_eq!(host.trim(), "web-0");
        let (_, env, _) = exec(&t, id, &["sh", "-c", "echo $HOSTNAME"]).await;
        assert_eq!(env.trim(), "web-0");
    }
    // Loopback is up and usable between the pod's containers: both see the same lo.
    let (_, lo, _) = exec(&t, "c-a", &["ip", "-o", "link", "show", "lo"]).await;
    assert!(lo.contains("UP") || lo.contains("LOWER_UP"), "{lo}");
    let (_, links, _) = exec(&t, "c-a", &["ls", "/sys/class/net"]).await;
    assert_eq!(links.split_whitespace().collect::<Vec<_>>(), vec!["lo"]);
    // IPC is shared: /dev/shm is the pod's.
    exec(&t, "c-a", &["sh", "-c", "echo hi > /dev/shm/note"]).await;
    let (_, note, _) = exec(&t, "c-b", &["cat", "/dev/shm/note"]).await;
    assert_eq!(note.trim(), "hi");
    a.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
    b.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn a_host_network_pod_sees_the_hosts_interfaces() {
    let mut t = TestRuntime::new("host_network");
    let pod = t
        .sandbox_with(SandboxConfig {
            pod_uid: PodUid::new(format!("p-{}", t.name)).unwrap(),
            hostname: "ignored".into(),
            host_network: true,
            host_ipc: false,
            resources: PodResources::default(),
            shm_size: None,
        })
        .await;
    let shim = t.start(t.request("c-host", &pod, "exec sleep 1000")).await;
    let (_, links, _) = exec(&t, "c-host", &["ls", "/sys/class/net"]).await;
    let mut host_links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    host_links.sort();
    let mut seen: Vec<String> = links.split_whitespace().map(str::to_owned).collect();
    seen.sort();
    assert_eq!(seen, host_links);
    let (_, net, _) = exec(&t, "c-host", &["readlink", "/proc/1/ns/net"]).await;
    assert_eq!(
        net.trim(),
        std::fs::read_link("/proc/self/ns/net")
            .unwrap()
            .display()
            .to_string()
    );
    assert!(t.runtime.sandbox(&pod).unwrap().netns_path().is_none());
    shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn sandbox_teardown_leaves_nothing_behind_and_can_be_repeated() {
    let mut t = TestRuntime::new("teardown");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let sandbox = t.runtime.sandbox(&pod).unwrap();
    let cache = t
        .runtime
        .prepare_volume(
            &pod,
            "cache",
            VolumeSource::EmptyDir {
                medium: StorageMedium::Memory,
                size_limit: None,
            },
            None,
        )
        .await
        .unwrap();
    let secret = t
        .runtime
        .prepare_volume(
            &pod,
            "creds",
            VolumeSource::Secret(Projection {
                data: [("k".to_string(), b"v".to_vec())].into(),
                items: None,
                default_mode: None,
            }),
            None,
        )
        .await
        .unwrap();
    let mut shims = Vec::new();
    for id in ["c-t1", "c-t2"] {
        let mut req = t.request(id, &pod, "exec sleep 1000");
        req.mounts = vec![
            VolumeMount {
                volume_path: cache.path.clone(),
                mount_path: "/cache".into(),
                sub_path: None,
                read_only: false,
            },
            VolumeMount {
                volume_path: secret.path.clone(),
                mount_path: "/secret".into(),
                sub_path: None,
                read_only: true,
            },
        ];
        shims.push(t.start(req).await);
    }
    // Something extra running inside the pod, started by exec.
    let extra = t
        .runtime
        .exec(
            &ContainerId::new("c-t1").unwrap(),
            &berth_runtime::ExecRequest::new(["sleep", "1000"]),
        )
        .unwrap();

    // A crash midway through an earlier teardown: one namespace already unmounted.
    let uts = sandbox.dir().join("ns/uts");
    nix::mount::umount2(&uts, nix::mount::MntFlags::MNT_DETACH).unwrap();

    // The agent's pod teardown: sandbox (kills everything), containers, volumes.
    t.runtime.remove_sandbox(&pod).await.unwrap();
    for shim in &shims {
        let exit = tokio::time::timeout(Duration::from_secs(20), shim.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(exit, berth_runtime::ContainerExit::Exited(_)),
            "{exit:?}"
        );
        t.runtime.remove_container(shim.id(), false).await.unwrap();
    }
    extra.wait().await.ok();
    t.runtime.remove_pod_volumes(&pod).await.unwrap();

    // Processes.
    for shim in &shims {
        assert!(!process_alive(shim.pid()), "shim {} still runs", shim.pid());
        assert!(
            !process_alive(shim.init_pid()),
            "init {} still runs",
            shim.init_pid()
        );
    }
    // Mounts: nothing of the test's directories, the sandbox or the containers.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let tmp = t.tmp.display().to_string();
    let leftover: Vec<&str> = mounts.lines().filter(|l| l.contains(&tmp)).collect();
    assert!(leftover.is_empty(), "mounts left: {leftover:#?}");
    // Namespace files and directories.
    assert!(!sandbox.dir().exists(), "{} left", sandbox.dir().display());
    assert!(!t.dirs().pod_data_dir(&pod).exists());
    // Cgroups: no pod cgroup in any hierarchy.
    for parent in t.cgroup_parent_dirs() {
        let pod_cg = parent.join(format!("pod{pod}"));
        assert!(!pod_cg.exists(), "cgroup {} left", pod_cg.display());
    }
    for id in ["c-t1", "c-t2"] {
        assert_nothing_left(&t, id);
    }
    // Again, and again: idempotent.
    t.runtime.remove_sandbox(&pod).await.unwrap();
    t.runtime.remove_pod_volumes(&pod).await.unwrap();
}

#[tokio::test]
async fn sandboxes_are_unique_and_bad_hostnames_create_nothing() {
    let mut t = TestRuntime::new("sandbox_errors");
    let pod = t.sandbox(&format!("p-{}", t.name), "web-0").await;
    let again = t
        .runtime
        .create_sandbox(SandboxConfig {
            pod_uid: pod.clone(),
            hostname: "web-0".into(),
            host_network: false,
            host_ipc: false,
            resources: PodResources::default(),
            shm_size: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(again, SandboxError::AlreadyExists { .. }),
        "{again}"
    );
    // The failed second create did not disturb the first.
    assert!(
        t.runtime
            .sandbox(&pod)
            .unwrap()
            .dir()
            .join("ns/net")
            .exists()
    );

    let bad = PodUid::new(format!("bad-{}", t.name)).unwrap();
    let err = t
        .runtime
        .create_sandbox(SandboxConfig {
            pod_uid: bad.clone(),
            hostname: "Not_A_Hostname".into(),
            host_network: false,
            host_ipc: false,
            resources: PodResources::default(),
            shm_size: None,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"Not_A_Hostname\""), "{err}");
    assert!(!t.dirs().sandbox_dir(&bad).exists());
    for parent in t.cgroup_parent_dirs() {
        assert!(!parent.join(format!("pod{bad}")).exists());
    }
}
