//! Measurements of the state (not assertions): propose latency, throughput with concurrent
//! proposers, reopen time, and the resident memory of a process holding 50 pods.
//!
//! Ignored by default; `bench/state/run.sh` runs them in release mode:
//! `cargo test --release -p berth-agent --test state_bench -- --ignored --nocapture --test-threads 1`
//! Set `BERTH_BENCH_DIR` to put the databases on a particular filesystem (default: the
//! system temporary directory).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_agent::state::{Command, ObjectKey, State, StateConfig, Timestamp};
use serde_json::{Value, json};
use tempfile::TempDir;

const RSS_CHILD_ENV: &str = "BERTH_STATE_BENCH_RSS_DIR";

fn bench_dir() -> TempDir {
    match std::env::var_os("BERTH_BENCH_DIR") {
        Some(base) => TempDir::new_in(PathBuf::from(base)).unwrap(),
        None => TempDir::new().unwrap(),
    }
}

fn small_object(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"namespace": "bench", "name": name, "labels": {"app": "bench"}},
        "data": {"key": "value"}
    })
}

/// A pod as a StatefulSet controller would create it, about 2 KiB of JSON.
fn pod(index: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "namespace": "db", "name": format!("pg-{index}"),
            "labels": {
                "app": "pg",
                "statefulset.kubernetes.io/pod-name": format!("pg-{index}"),
                "apps.kubernetes.io/pod-index": index.to_string(),
                "controller-revision-hash": "pg-7d9f8b6c5"
            },
            "annotations": {"berth.dev/restartedAt": "2024-05-01T10:00:00Z"},
            "ownerReferences": []
        },
        "spec": {
            "hostname": format!("pg-{index}"), "subdomain": "pg", "nodeName": "host-a",
            "terminationGracePeriodSeconds": 30,
            "containers": [{
                "name": "postgres", "image": "docker.io/library/postgres:16.2",
                "args": ["-c", "max_connections=200", "-c", "shared_buffers=256MB"],
                "env": [
                    {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg", "key": "password"}}},
                    {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}
                ],
                "ports": [{"name": "pg", "containerPort": 5432, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "postgres"]}, "periodSeconds": 5},
                "livenessProbe": {"tcpSocket": {"port": 5432}, "initialDelaySeconds": 30}
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-pg-{index}")}}]
        }
    })
}

fn pod_status(index: usize, generation: usize) -> Value {
    json!({
        "phase": "Running", "podIP": format!("10.88.0.{}", index + 2), "hostIP": "192.168.1.10",
        "startTime": "2024-05-01T10:00:00Z",
        "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-05-01T10:00:05Z"},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2024-05-01T10:00:05Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-05-01T10:00:00Z"}
        ],
        "containerStatuses": [{
            "name": "postgres", "ready": true, "restartCount": generation,
            "image": "docker.io/library/postgres:16.2", "imageID": "sha256:0123456789abcdef",
            "state": {"running": {"startedAt": "2024-05-01T10:00:01Z"}}
        }]
    })
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by bench/state/run.sh"]
async fn bench_propose_latency_and_throughput() {
    let dir = bench_dir();
    let state = State::open(StateConfig::new(dir.path(), "bench"))
        .await
        .unwrap();
    println!("database directory: {}", dir.path().display());

    // Sequential latency of a small create.
    let mut latencies = Vec::new();
    for index in 0..2000 {
        let command = Command::create(
            small_object(&format!("seq-{index}")),
            format!("uid-seq-{index}"),
            Timestamp::now(),
        );
        let started = Instant::now();
        state.propose(command).await.unwrap();
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "propose latency, small create, 2000 sequential: median {:?}, p90 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );

    // Throughput with concurrent proposers.
    for proposers in [1usize, 4, 16, 64] {
        let per_proposer = 2000 / proposers;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for proposer in 0..proposers {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_proposer);
                for index in 0..per_proposer {
                    let name = format!("c{proposers}-{proposer}-{index}");
                    let command = Command::create(
                        small_object(&name),
                        format!("uid-{name}"),
                        Timestamp::now(),
                    );
                    let began = Instant::now();
                    state.propose(command).await.unwrap();
                    latencies.push(began.elapsed());
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed();
        latencies.sort();
        println!(
            "throughput with {proposers:>2} proposers: {:>6.0} commands/s ({} commands in {:?}; latency median {:?}, p99 {:?})",
            latencies.len() as f64 / elapsed.as_secs_f64(),
            latencies.len(),
            elapsed,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
        );
    }

    let objects = state.list("ConfigMap", Some("bench")).0.len();
    let revision = state.revision();
    state.shutdown().await;
    let size = std::fs::metadata(dir.path().join("state/state.redb"))
        .unwrap()
        .len();

    let started = Instant::now();
    let state = State::open(StateConfig::new(dir.path(), "bench"))
        .await
        .unwrap();
    println!(
        "reopen with {objects} objects at revision {revision} ({} KiB file, integrity check included): {:?}",
        size / 1024,
        started.elapsed()
    );
    state.shutdown().await;
}

fn memory_of_self() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The child of the RSS benchmark: a process that holds 50 pods and reports its memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by bench_rss_with_50_pods as its child"]
async fn bench_rss_child() {
    let Some(dir) = std::env::var_os(RSS_CHILD_ENV) else {
        return;
    };
    let (before, _) = memory_of_self();
    let mut config = StateConfig::new(PathBuf::from(dir), "bench");
    if let Some(history) = std::env::var("BERTH_BENCH_WATCH_HISTORY")
        .ok()
        .and_then(|h| h.parse().ok())
    {
        config.watch_history = history;
    }
    if let Some(cache) = std::env::var("BERTH_BENCH_CACHE")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        config.cache_bytes = cache;
    }
    let history = config.watch_history;
    let state = State::open(config).await.unwrap();
    for index in 0..50 {
        state
            .propose(Command::create(
                pod(index),
                format!("uid-pod-{index}"),
                Timestamp::now(),
            ))
            .await
            .unwrap();
    }
    let (created, _) = memory_of_self();
    // Status churn: 40 status updates per pod fill the watch history with old versions.
    let mut along = Vec::new();
    for round in 0..40 {
        if round % 8 == 0 {
            along.push(memory_of_self().0.to_string());
        }
        for index in 0..50 {
            state
                .propose(Command::UpdateStatus {
                    key: ObjectKey::new("Pod", "db", format!("pg-{index}")),
                    status: pod_status(index, round),
                    precondition_resource_version: None,
                })
                .await
                .unwrap();
        }
    }
    let watch = state.watch(Some("Pod"), None, None).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (churned, peak) = memory_of_self();
    println!(
        "rss-report watch-history={history} before-open={before} after-50-pods={created} after-2000-status-updates={churned} peak={peak} (KiB; every 400 updates: {})",
        along.join(", ")
    );
    drop(watch);
    state.shutdown().await;
}

#[test]
#[ignore = "benchmark: run by bench/state/run.sh"]
fn bench_rss_with_50_pods() {
    let default_history = StateConfig::new("/", "x").watch_history;
    for history in [default_history, 4096] {
        rss_with_50_pods(history);
    }
}

fn rss_with_50_pods(history: usize) {
    let dir = bench_dir();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "bench_rss_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(RSS_CHILD_ENV, dir.path())
        .env("BERTH_BENCH_WATCH_HISTORY", history.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .lines()
        .find_map(|line| {
            line.split_once("rss-report ")
                .map(|(_, rest)| rest.to_string())
        })
        .unwrap_or_else(|| {
            panic!(
                "no report from the child:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    println!("resident memory of a process holding 50 pods: {report}");
}
