//! `berth agent`: opens the state, adopts what the runtime still runs, starts the kubelet,
//! the controllers, the DNS server and the API, tells systemd it is ready, and on SIGTERM or
//! SIGINT stops all of that again without stopping a single container.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use berth_runtime::image::ImageStore;
use berth_runtime::{Runtime, RuntimeConfig, RuntimeDirs};
use serde_json::json;
use tokio::sync::watch;

use crate::api::{Api, ApiConfig};
use crate::config::{AgentConfig, LogFormat};
use crate::controllers;
use crate::kubelet::images::Images;
use crate::kubelet::node_io::KubeletIo;
use crate::kubelet::{Kubelet, NodeContext, NodeSettings, node};
use crate::state::{Command, State, StateConfig, Timestamp};

/// Sets up logging: plain lines (journald adds its own timestamps when it captures stderr),
/// or JSON. `RUST_LOG` (or `BERTH_LOG`) filters, default `info`.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("BERTH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,hickory_proto=warn,openraft=warn".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::io::stderr);
    match (format, under_journald) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Plain, true) => builder.without_time().init(),
        (LogFormat::Plain, false) => builder.init(),
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), node = %config.node_name, data_dir = %config.data_dir.display(),
        run_dir = %config.run_dir.display(), "berth agent starting");
    for dir in [&config.data_dir, &config.run_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(|| format!("securing {}", dir.display()))?;
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let state = State::open(StateConfig::new(&config.data_dir, &config.node_name))
        .await
        .with_context(|| format!("opening the cluster state in {}", config.data_dir.display()))?;
    ensure_namespace(&state, "default").await?;

    let mut runtime_config = RuntimeConfig::new(
        RuntimeDirs { run_dir: config.run_dir.clone(), data_dir: config.data_dir.clone() },
        &config.shim_path,
    );
    runtime_config.cgroup_parent = config.cgroup_parent.clone();
    if !config.shim_path.exists() {
        anyhow::bail!("the shim {} does not exist (set --shim-path)", config.shim_path.display());
    }
    let runtime = Runtime::new(runtime_config).context("setting up the container runtime")?;
    let images = Images::new(ImageStore::open(&config.data_dir).context("opening the image store")?);
    let events = crate::events::start(state.clone());

    let host_ip = node::host_ip();
    node::register(&state, &config.node_name, host_ip.as_deref(), Some(&config.pod_cidr.to_string())).await.context("registering this node")?;
    tokio::spawn(node::heartbeat(state.clone(), config.node_name.clone(), host_ip.clone(), Some(config.pod_cidr.to_string()), shutdown_rx.clone()));

    // The pod network: the bridge holds the pods' gateway, where DNS listens for them.
    let mut network_config = crate::network::NetworkConfig::new(config.pod_cidr);
    network_config.bridge = config.bridge.clone();
    network_config.nft_table = if config.bridge == "berth0" { "berth".to_string() } else { config.bridge.clone() };
    let network = crate::network::NodeNetwork::start(state.clone(), network_config)
        .await
        .with_context(|| format!("setting up the pod network {} on bridge {}", config.pod_cidr, config.bridge))?;
    let gateway = network.gateway();
    tracing::info!(pod_cidr = %config.pod_cidr, bridge = %config.bridge, %gateway, "pod network ready");

    // DNS: the authority follows pods and services; the server answers the pods on the
    // gateway and anyone on the extra listen addresses; recursion only for loopback, this
    // node and the pod network.
    let mut allowed: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().expect("valid"), "::1/128".parse().expect("valid")];
    allowed.push(ipnet::IpNet::V4(config.pod_cidr));
    if let Some(ip) = host_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()) {
        allowed.push(ipnet::IpNet::from(ip));
    }
    let dns = crate::dns::start(
        &config,
        state.clone(),
        crate::dns::Listen { gateway: std::net::SocketAddr::new(gateway, 53), allowed, pod_networks: vec![ipnet::IpNet::V4(config.pod_cidr)] },
        shutdown_rx.clone(),
    )
    .await
    .context("starting the DNS server")?;
    let cluster_dns: Vec<IpAddr> = vec![gateway];

    let node_context = NodeContext::new(
        state.clone(),
        runtime,
        images,
        events.clone(),
        NodeSettings {
            node_name: config.node_name.clone(),
            data_dir: config.data_dir.clone(),
            run_dir: config.run_dir.clone(),
            cluster_domain: config.cluster_domain.clone(),
            host_ip: host_ip.clone(),
            cluster_dns,
            network: Some(Arc::new(crate::kubelet::network_hook::Hook(network.clone()))),
        },
    );
    let kubelet = Kubelet::start(node_context, shutdown_rx.clone()).context("adopting running containers")?;

    let controllers = controllers::start_all(
        controllers::Context { state: state.clone(), events: events.clone(), node_name: config.node_name.clone() },
        shutdown_rx.clone(),
    );

    let listener = crate::api::server::bind(&config.socket).with_context(|| format!("binding the API socket {}", config.socket.display()))?;
    let api = Api::new(state.clone(), Arc::new(KubeletIo { node: kubelet.node().clone() }), ApiConfig { version: env!("CARGO_PKG_VERSION").into() });
    let mut api_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(crate::api::server::serve(
        crate::api::server::RootOnly::new(listener, config.socket.clone()),
        api,
        async move {
            let _ = api_shutdown.wait_for(|s| *s).await;
        },
    ));
    tracing::info!(socket = %config.socket.display(), "API serving");
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    let watchdog = watchdog(shutdown_rx.clone());

    wait_for_signal().await;
    tracing::info!("stopping (containers keep running)");
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    for c in controllers {
        let _ = tokio::time::timeout(Duration::from_secs(2), c).await;
    }
    watchdog.abort();
    dns.shutdown().await;
    // Let in-flight writes (status, events) settle, then close the database cleanly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    state.shutdown().await;
    let _ = std::fs::remove_file(&config.socket);
    tracing::info!("stopped");
    Ok(())
}

async fn ensure_namespace(state: &State, name: &str) -> anyhow::Result<()> {
    if state.get("Namespace", "", name).is_some() {
        return Ok(());
    }
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {}, "status": {"phase": "Active"}});
    match state.propose(Command::create(ns, uuid::Uuid::new_v4().to_string(), Timestamp::now())).await {
        Ok(_) | Err(crate::state::ProposeError::Rejected(_)) => Ok(()),
        Err(e) => Err(e).context("creating the default namespace"),
    }
}

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "notifying systemd failed");
        }
    }
}

/// Pings systemd's watchdog at half its interval while the agent runs.
fn watchdog(mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(interval) = sd_notify::watchdog_enabled() else { return };
        let period = interval / 2;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => notify_systemd(&[sd_notify::NotifyState::Watchdog]),
                _ = shutdown.changed() => return,
            }
        }
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
