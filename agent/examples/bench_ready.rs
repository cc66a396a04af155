//! Benchmark (run by hand through bench/agent/run.sh): time from creating a one-container pod
//! (image imported, exec readiness probe that passes at once) to its Ready condition, as seen
//! by a watch on the API; then the agent's resident memory idle and with N running pods.
//!
//!   bench_ready SOCKET AGENT_PID IMAGE [ROUNDS] [PODS]

use std::time::{Duration, Instant};

use berth_agent::cli::client::Client;
use futures_util::StreamExt;
use hyper::Method;
use serde_json::{Value, json};

fn pod(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "ready"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c", "image": image, "command": ["sleep", "3600"],
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 10}
            }]
        }
    })
}

fn ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// `VmRSS` of `pid` with its anonymous and file-backed (mostly the binary's code) parts.
fn rss_kib(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    format!(
        "{} KiB (anonymous {} KiB, file-backed {} KiB)",
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:")
    )
}

async fn delete_all(client: &Client) {
    let _ = client
        .json(
            Method::DELETE,
            "/api/v1/namespaces/default/pods?labelSelector=bench%3Dready",
            None,
            Some(&json!({"gracePeriodSeconds": 0})),
        )
        .await;
    loop {
        let list = client
            .get("/api/v1/namespaces/default/pods?labelSelector=bench%3Dready")
            .await
            .unwrap();
        if list["items"].as_array().is_none_or(Vec::is_empty) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let socket = &args[1];
    let agent_pid: u32 = args[2].parse().expect("agent pid");
    let image = &args[3];
    let rounds: usize = args.get(4).map_or(20, |r| r.parse().unwrap());
    let pods: usize = args.get(5).map_or(50, |r| r.parse().unwrap());
    let client = Client::new(socket);

    let mut samples = Vec::new();
    for i in 0..rounds {
        let name = format!("ready-{i}");
        let list = client.get("/api/v1/namespaces/default/pods").await.unwrap();
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let mut events = Box::pin(
            client
                .watch(&format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3D{name}"))
                .await
                .unwrap(),
        );
        let start = Instant::now();
        client
            .json(
                Method::POST,
                "/api/v1/namespaces/default/pods",
                None,
                Some(&pod(&name, image)),
            )
            .await
            .unwrap();
        while let Some(event) = events.next().await {
            if ready(&event.unwrap()["object"]) {
                break;
            }
        }
        let took = start.elapsed();
        samples.push(took);
        eprintln!("round {i}: {:.1} ms", took.as_secs_f64() * 1000.0);
        delete_all(&client).await;
    }
    samples.sort();
    let median = samples[samples.len() / 2];
    println!(
        "apply -> Ready, median of {rounds}: {:.1} ms (min {:.1}, max {:.1})",
        median.as_secs_f64() * 1000.0,
        samples[0].as_secs_f64() * 1000.0,
        samples[samples.len() - 1].as_secs_f64() * 1000.0
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("agent RSS idle: {}", rss_kib(agent_pid));
    for i in 0..pods {
        client
            .json(
                Method::POST,
                "/api/v1/namespaces/default/pods",
                None,
                Some(&pod(&format!("ready-{i}"), image)),
            )
            .await
            .unwrap();
    }
    loop {
        let list = client
            .get("/api/v1/namespaces/default/pods?labelSelector=bench%3Dready")
            .await
            .unwrap();
        let n = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| ready(p))
            .count();
        if n == pods {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let probes run a few rounds with everything up, and the agent's 30 s memory trim pass.
    tokio::time::sleep(Duration::from_secs(35)).await;
    println!("agent RSS with {pods} running pods: {}", rss_kib(agent_pid));
    delete_all(&client).await;
}
