//! Benchmark, run by hand (`bench/runtime/run.sh`): container create+start latency through the
//! shim beside `runc run -d` on the same bundle, shim RSS per running container, exec latency.
//! Prints figures; asserts nothing about time.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_runtime::shim::{CgroupFiles, LogConfig, ShimConfig, SpawnOptions};
use berth_runtime::spec::{self, ContainerConfig, EtcFiles, SpecInput, UserDb};
use berth_runtime::{ContainerId, ExecRequest, RootfsSource, Shim};
use common::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn summary(name: &str, v: &[Duration]) {
    let mut s = v.to_vec();
    s.sort();
    println!(
        "{name:<48} n={:<3} median {:>9}  p10 {:>9}  p90 {:>9}",
        s.len(),
        ms(s[s.len() / 2]),
        ms(s[s.len() / 10]),
        ms(s[s.len() * 9 / 10])
    );
}

fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A spec for `sleep 1000` in the pod, rootfs used directly, with a given cgroup path.
fn bench_spec(
    t: &TestRuntime,
    pod: &berth_runtime::PodUid,
    cgroup: &Path,
) -> oci_spec::runtime::Spec {
    let sandbox = t.runtime.sandbox(pod).unwrap();
    let namespaces = sandbox.namespaces();
    let shm = sandbox.shm_path();
    let caps = spec::capabilities::host_bounding_set().unwrap();
    let container = ContainerConfig {
        command: vec!["sleep".into(), "1000".into()],
        ..ContainerConfig::default()
    };
    let image = berth_runtime::image::ImageConfig {
        env: vec!["PATH=/bin".into()],
        ..Default::default()
    };
    let users = UserDb::load(busybox_rootfs()).unwrap();
    spec::build_spec(&SpecInput {
        container: &container,
        image: &image,
        users: &users,
        host_capabilities: &caps,
        rootfs: busybox_rootfs(),
        hostname: Some("bench"),
        namespaces: &namespaces,
        pod_shm: shm.as_deref(),
        etc_files: &EtcFiles::default(),
        mounts: &[],
        cgroups_path: cgroup,
        annotations: Default::default(),
    })
    .unwrap()
}

fn write_json(path: &Path, value: &impl serde::Serialize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

#[tokio::test]
#[ignore = "benchmark: run with bench/runtime/run.sh"]
async fn bench_container_start_exec_and_shim_rss() {
    let runs = env_usize("BENCH_RUNS", 50);
    let rss_count = env_usize("BENCH_RSS_CONTAINERS", 20);
    let mut t = TestRuntime::new("bench");
    let pod = t.sandbox(&format!("p-{}", t.name), "bench").await;
    let layout = t.runtime.cgroup_layout().clone();
    let parent = t.runtime.cgroup_parent().to_path_buf();
    let cgroup_for = |id: &str| {
        PathBuf::from("/")
            .join(&parent)
            .join(format!("pod{pod}"))
            .join(id)
    };

    // 1. The shim on a prepared bundle vs `runc run -d` on the same bundle, interleaved.
    let runc_root = t.tmp.join("runc-root");
    let mut shim_times = Vec::new();
    let mut runc_times = Vec::new();
    let options = SpawnOptions {
        shim_path: PathBuf::from(env!("CARGO_BIN_EXE_berth-shim")),
        start_timeout: Duration::from_secs(60),
    };
    for i in 0..runs {
        // berth-shim
        let id = ContainerId::new(format!("bs{i}")).unwrap();
        let dir = t.dirs().shim_dir(&id);
        let cg = cgroup_for(id.as_str());
        let rel = cg.strip_prefix("/").unwrap();
        write_json(&dir.join("bundle/config.json"), &bench_spec(&t, &pod, &cg));
        // As the agent does before spawning a shim: the shim takes this lock for its life.
        std::fs::File::create(dir.join("start.lock")).unwrap();
        write_json(
            &dir.join("shim-config.json"),
            &ShimConfig {
                id: id.clone(),
                pod: Some(pod.clone()),
                bundle: dir.join("bundle"),
                libcontainer_root: t.dirs().libcontainer_root(),
                log: LogConfig::new(t.tmp.join(format!("logs/{id}.log"))),
                cgroup: CgroupFiles {
                    procs: layout.procs_files(rel),
                    oom_events: layout.oom_events_file(rel),
                },
                labels: Default::default(),
                shim_cgroup_procs: Vec::new(),
                // The same bundle as runc's: libcontainer compiles its seccomp profile, as
                // runc does. The precompiled program shows in the start_container figure.
                seccomp_program: None,
            },
        );
        let start = Instant::now();
        let shim = Shim::spawn(id.clone(), dir, &options).await.unwrap();
        shim_times.push(start.elapsed());
        shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
        t.runtime.remove_container(&id, true).await.unwrap();

        // runc
        let rid = format!("rc{i}-{}", std::process::id());
        let bundle = t.tmp.join(format!("runc-bundle-{i}"));
        write_json(
            &bundle.join("config.json"),
            &bench_spec(&t, &pod, &cgroup_for(&rid)),
        );
        let start = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(&rid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        runc_times.push(start.elapsed());
        assert!(status.success(), "runc run failed");
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["delete", "-f", &rid])
            .status();
        let _ = std::fs::remove_dir_all(&bundle);
    }

    // 2. The whole start_container (overlay rootfs + spec + shim), as the agent calls it.
    let mut full_times = Vec::new();
    for i in 0..runs {
        let mut req = t.request(&format!("full{i}"), &pod, "");
        req.config.command = vec!["sleep".into(), "1000".into()];
        let start = Instant::now();
        let shim = t.start(req).await;
        full_times.push(start.elapsed());
        shim.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
        t.runtime.remove_container(shim.id(), true).await.unwrap();
    }

    // 3. Shim memory with many containers running (each logging a line every 100 ms, so the
    //    monitor's whole log path is exercised), and exec latency.
    let mut shims = Vec::new();
    for i in 0..rss_count {
        let mut req = t.request(
            &format!("rss{i}"),
            &pod,
            "while true; do echo tick; echo tock >&2; sleep 0.1; done",
        );
        req.rootfs = RootfsSource::Directory(busybox_rootfs().to_path_buf());
        shims.push(t.start(req).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut rss: Vec<(u64, u64, u64)> = shims
        .iter()
        .map(|s| {
            (
                status_kib(s.pid(), "VmRSS"),
                status_kib(s.pid(), "RssAnon"),
                status_kib(s.pid(), "RssFile"),
            )
        })
        .collect();
    rss.sort();
    let pss: Vec<u64> = shims
        .iter()
        .map(|s| {
            std::fs::read_to_string(format!("/proc/{}/smaps_rollup", s.pid()))
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("Pss:"))
                        .and_then(|v| v.split_whitespace().next()?.parse().ok())
                })
                .unwrap_or(0)
        })
        .collect();

    let exec_id = shims[0].id().clone();
    let mut exec_times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let out = t
            .runtime
            .exec_output(
                &exec_id,
                &ExecRequest::new(["true"]),
                Duration::from_secs(20),
            )
            .await
            .unwrap();
        exec_times.push(start.elapsed());
        assert_eq!(out.exit.exit_code, 0);
    }

    // runc exec on a runc container, for context.
    let rid = format!("rcx-{}", std::process::id());
    let bundle = t.tmp.join("runc-exec-bundle");
    write_json(
        &bundle.join("config.json"),
        &bench_spec(&t, &pod, &cgroup_for(&rid)),
    );
    let ok = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "-d", "--bundle"])
        .arg(&bundle)
        .arg(&rid)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    let mut runc_exec_times = Vec::new();
    if ok {
        for _ in 0..runs {
            let start = Instant::now();
            Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["exec", &rid, "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .unwrap();
            runc_exec_times.push(start.elapsed());
        }
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["delete", "-f", &rid])
            .status();
    }

    println!();
    println!(
        "berth runtime benchmark ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    summary("create+start: berth-shim on a bundle", &shim_times);
    summary("create+start: runc run -d, same bundle", &runc_times);
    summary(
        "create+start: Runtime::start_container (overlay)",
        &full_times,
    );
    summary("exec `true`: Runtime::exec_output", &exec_times);
    if !runc_exec_times.is_empty() {
        summary("exec `true`: runc exec", &runc_exec_times);
    }
    let n = rss.len();
    println!(
        "shim VmRSS with {n} running: min {} KiB, median {} KiB, max {} KiB (RssAnon median {} KiB, RssFile median {} KiB); Pss median {} KiB",
        rss[0].0,
        rss[n / 2].0,
        rss[n - 1].0,
        {
            let mut a: Vec<u64> = rss.iter().map(|r| r.1).collect();
            a.sort();
            a[n / 2]
        },
        {
            let mut f: Vec<u64> = rss.iter().map(|r| r.2).collect();
            f.sort();
            f[n / 2]
        },
        {
            let mut p = pss.clone();
            p.sort();
            p[n / 2]
        }
    );
    println!(
        "median ratio runc/berth-shim: {:.2}",
        median(runc_times.clone()).as_secs_f64() / median(shim_times.clone()).as_secs_f64()
    );
    for s in &shims {
        s.stop(libc::SIGKILL, Duration::ZERO).await.unwrap();
    }
}
