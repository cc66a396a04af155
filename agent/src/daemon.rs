//! `berth agent`: opens the state, adopts what the runtime still runs, starts the kubelet,
//! the controllers, the DNS server and the API, tells systemd it is ready, and on SIGTERM or
//! SIGINT stops all of that again without stopping a single container.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use berth_runtime::image::ImageStore;
use berth_runtime::{Runtime, RuntimeConfig, RuntimeDirs};
use tokio::sync::watch;

use crate::api::{Api, ApiConfig};
use crate::cluster::identity::Identity;
use crate::cluster::pki::PkiDir;
use crate::cluster::{Cluster, join, leadership, peer, routes};
use crate::config::{AgentConfig, LogFormat};
use crate::controllers;
use crate::kubelet::images::Images;
use crate::kubelet::node_io::KubeletIo;
use crate::kubelet::{Kubelet, NodeContext, NodeSettings, node};
use crate::state::raft::TlsSlot;
use crate::state::{State, StateConfig};

/// Sets up logging: plain lines (journald adds its own timestamps when it captures stderr),
/// or JSON. `RUST_LOG` (or `BERTH_LOG`) filters, default `info`.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("BERTH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,hickory_proto=warn,openraft=warn".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr);
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
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("securing {}", dir.display()))?;
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    // The cluster identity: loaded, founded (first host), or obtained by joining.
    let advertise_ip = match join::advertise_ip(config.advertise_address) {
        Some(ip) => ip,
        None => {
            tracing::warn!(
                "no address for peers found (no default route): using 127.0.0.1; set --advertise-address for other hosts to join"
            );
            IpAddr::from([127, 0, 0, 1])
        }
    };
    let advertise = std::net::SocketAddr::new(advertise_ip, config.listen.port()).to_string();
    let pki = PkiDir::new(&config.data_dir);
    let mut identity = Identity::load(&pki, &config.node_name, advertise_ip)
        .context("loading the cluster certificates")?;
    match (&identity, &config.join) {
        (Some(_), Some((server, _))) => {
            tracing::warn!(%server, "this host is already in a cluster: --join is ignored")
        }
        (None, None) => {
            let given = config.pod_cidr_given.then_some(config.pod_cidr);
            let founded = Identity::found(
                &pki,
                &config.node_name,
                advertise_ip,
                config.cluster_cidr,
                given,
            )
            .context("creating the cluster CA")?;
            tracing::info!(ca_sha256 = %founded.ca.fingerprint(), pod_cidr = %founded.record.pod_cidr, "founded a new cluster");
            identity = Some(founded);
        }
        _ => {}
    }
    let peer_tls = TlsSlot::default();
    if let Some(identity) = &identity {
        *peer_tls.write().expect("TLS slot lock") = Some(
            identity
                .peer_client_config()
                .context("loading the node certificate")?,
        );
    }
    let mut state_config = StateConfig::new(&config.data_dir, &config.node_name);
    state_config.advertise_address = advertise.clone();
    state_config.bootstrap = identity.as_ref().is_some_and(|i| i.record.founder);
    state_config.peer_tls = peer_tls.clone();
    let state = State::open(state_config)
        .await
        .with_context(|| format!("opening the cluster state in {}", config.data_dir.display()))?;
    let identity = match identity {
        Some(identity) => identity,
        None => {
            let (server, token) = config.join.clone().expect("a host without identity joins");
            tracing::info!(%server, node_id = state.node_id(), %advertise, "joining the cluster");
            match join::join(
                &pki,
                &server,
                &token,
                &config.node_name,
                state.node_id(),
                &advertise,
            )
            .await
            {
                Ok((identity, members)) => {
                    tracing::info!(members = members.len(), pod_cidr = %identity.record.pod_cidr, "joined the cluster as a learner");
                    *peer_tls.write().expect("TLS slot lock") = Some(
                        identity
                            .peer_client_config()
                            .context("loading the node certificate")?,
                    );
                    identity
                }
                Err(error) => {
                    state.shutdown().await;
                    return Err(error).with_context(|| format!("joining the cluster at {server}"));
                }
            }
        }
    };
    let pod_cidr = identity.record.pod_cidr;
    if config.pod_cidr_given && pod_cidr != config.pod_cidr {
        tracing::warn!(given = %config.pod_cidr, assigned = %pod_cidr, "--pod-cidr is ignored: the cluster assigned this host's pod CIDR");
    }
    let cluster = Cluster::new(state.clone(), identity.clone());

    // The peer port: raft, joins, forwarded writes, and (once it exists) the API over TLS.
    let late_api: Arc<std::sync::OnceLock<Api>> = Arc::default();
    let peer_listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding the peer port {} (--listen)", config.listen))?;
    let peer_router = peer::router(cluster.clone(), late_api.clone());
    let peer_server = tokio::spawn(peer::serve(
        peer_listener,
        identity
            .server_config()
            .context("loading the node certificate")?,
        peer_router,
        shutdown_rx.clone(),
    ));
    tracing::info!(listen = %config.listen, %advertise, "peer port serving");

    // A restarted or joining member needs a leader before it can write.
    let leader = state
        .raft()
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.current_leader.is_some(), "a raft leader is known")
        .await;
    if leader.is_err() {
        tracing::warn!(
            "no raft leader after 30s (no quorum): starting anyway; writes fail until a majority of hosts is up"
        );
    }
    if let Err(error) = crate::controllers::namespace::ensure(&state, "default")
        .await
        .context("creating the default namespace")
    {
        tracing::warn!(error = %format!("{error:#}"), "cannot create the default namespace now");
    }

    let mut runtime_config = RuntimeConfig::new(
        RuntimeDirs {
            run_dir: config.run_dir.clone(),
            data_dir: config.data_dir.clone(),
        },
        &config.shim_path,
    );
    runtime_config.cgroup_parent = config.cgroup_parent.clone();
    if !config.shim_path.exists() {
        anyhow::bail!(
            "the shim {} does not exist (set --shim-path)",
            config.shim_path.display()
        );
    }
    let runtime = Runtime::new(runtime_config).context("setting up the container runtime")?;
    let images =
        Images::new(ImageStore::open(&config.data_dir).context("opening the image store")?);
    let events = crate::events::start(state.clone());

    let host_ip = Some(advertise_ip.to_string());
    if let Err(error) = node::register(
        &state,
        &config.node_name,
        host_ip.as_deref(),
        Some(&pod_cidr.to_string()),
    )
    .await
    {
        tracing::warn!(error = %crate::kubelet::images::error_chain(&error), "registering this node failed; the heartbeat retries");
    }

    // The pod network: the bridge holds the pods' gateway, where DNS listens for them.
    let mut network_config = crate::network::NetworkConfig::new(pod_cidr);
    network_config.bridge = config.bridge.clone();
    network_config.nft_table = if config.bridge == "berth0" {
        "berth".to_string()
    } else {
        config.bridge.clone()
    };
    let network = crate::network::NodeNetwork::start(state.clone(), network_config)
        .await
        .with_context(|| {
            format!(
                "setting up the pod network {} on bridge {}",
                pod_cidr, config.bridge
            )
        })?;
    let gateway = network.gateway();
    tracing::info!(%pod_cidr, bridge = %config.bridge, %gateway, "pod network ready");
    tokio::spawn(routes::run(
        state.clone(),
        network.clone(),
        config.node_name.clone(),
        shutdown_rx.clone(),
    ));

    // DNS: the authority follows pods and services; the server answers the pods on the
    // gateway and anyone on the extra listen addresses; recursion only for loopback, this
    // node and the pod network.
    let mut allowed: Vec<ipnet::IpNet> = vec![
        "127.0.0.0/8".parse().expect("valid"),
        "::1/128".parse().expect("valid"),
    ];
    allowed.push(ipnet::IpNet::V4(identity.record.cluster_cidr));
    allowed.push(ipnet::IpNet::V4(pod_cidr));
    allowed.push(ipnet::IpNet::from(advertise_ip));
    let dns = crate::dns::start(
        &config,
        state.clone(),
        crate::dns::Listen {
            gateway: std::net::SocketAddr::new(gateway, 53),
            allowed,
            pod_networks: vec![ipnet::IpNet::V4(pod_cidr)],
        },
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
            network: Some(Arc::new(crate::kubelet::network_hook::Hook(
                network.clone(),
            ))),
        },
    );
    // The heartbeat raises the node's fence when it cannot commit for most of the grace
    // period; the kubelet then stops this node's stateful pods (see kubelet::node::Fence).
    tokio::spawn(node::heartbeat_with(
        state.clone(),
        config.node_name.clone(),
        host_ip.clone(),
        Some(pod_cidr.to_string()),
        node::FenceSettings {
            grace: config.node_monitor_grace,
        },
        node_context.fence.clone(),
        shutdown_rx.clone(),
    ));
    let kubelet =
        Kubelet::start(node_context, shutdown_rx.clone()).context("adopting running containers")?;

    // This node's claims: directories, size limits, Bound, usage (on every host).
    let claim_node = crate::claims::node::ClaimNode::new(
        state.clone(),
        events.clone(),
        config.node_name.clone(),
        RuntimeDirs {
            run_dir: config.run_dir.clone(),
            data_dir: config.data_dir.clone(),
        },
    );
    tokio::spawn(crate::claims::node::run(claim_node, shutdown_rx.clone()));

    // Controllers run only while this host leads.
    let node_monitor = controllers::node_lifecycle::Settings::with_grace(config.node_monitor_grace);
    let controller_context = controllers::Context {
        state: state.clone(),
        events: events.clone(),
        node_name: config.node_name.clone(),
    };
    let leader_tasks = tokio::spawn(leadership::run(
        state.clone(),
        shutdown_rx.clone(),
        move |stop| controllers::start_all_with(controller_context.clone(), node_monitor, stop),
    ));

    let listener = crate::api::server::bind(&config.socket)
        .with_context(|| format!("binding the API socket {}", config.socket.display()))?;
    let api = Api::new(
        state.clone(),
        Arc::new(KubeletIo {
            node: kubelet.node().clone(),
        }),
        ApiConfig {
            version: env!("CARGO_PKG_VERSION").into(),
        },
    );
    let _ = late_api.set(api.clone());
    let mut api_shutdown = shutdown_rx.clone();
    let server = tokio::spawn(crate::api::server::serve(
        crate::api::server::RootOnly::new(listener, config.socket.clone()),
        api,
        Some(peer::admin_routes(cluster.clone())),
        async move {
            let _ = api_shutdown.wait_for(|s| *s).await;
        },
    ));
    tracing::info!(socket = %config.socket.display(), "API serving");
    notify_systemd(&[sd_notify::NotifyState::Ready]);
    let watchdog = watchdog(shutdown_rx.clone());
    let _trim = trim_memory(shutdown_rx.clone());

    wait_for_signal().await;
    tracing::info!("stopping (containers keep running)");
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), leader_tasks).await;
    let _ = tokio::time::timeout(Duration::from_secs(3), peer_server).await;
    watchdog.abort();
    dns.shutdown().await;
    // Let in-flight writes (status, events) settle, then close the database cleanly.
    tokio::time::sleep(Duration::from_millis(100)).await;
    state.shutdown().await;
    let _ = std::fs::remove_file(&config.socket);
    tracing::info!("stopped");
    Ok(())
}

fn notify_systemd(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "notifying systemd failed");
        }
    }
}

/// Keeps glibc from holding on to freed memory: two malloc arenas instead of one per thread
/// (the agent's work is I/O, not allocation-bound). Call before any thread starts.
pub fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator tunable; the process has one thread here.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Every 30 s, hands memory freed since (image imports and pulls free large buffers, a burst
/// of pods frees their workers' state) back to the kernel, so RSS follows what is in use.
fn trim_memory(mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(30)) => {
                    #[cfg(target_env = "gnu")]
                    // SAFETY: malloc_trim only returns free heap pages to the kernel.
                    let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    })
}

/// Pings systemd's watchdog at half its interval while the agent runs.
fn watchdog(mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(interval) = sd_notify::watchdog_enabled() else {
            return;
        };
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
