//! Host-gw routes: every host watches Node objects and routes each other node's pod CIDR via
//! that node's address.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use tokio::sync::watch;

use crate::network::NodeNetwork;
use crate::state::State;

/// The (node address, pod CIDR) of every node but `this_node` that has both. Pure.
pub fn peers_of(nodes: &[std::sync::Arc<Value>], this_node: &str) -> Vec<(IpAddr, IpNet)> {
    let mut peers: Vec<(IpAddr, IpNet)> = nodes
        .iter()
        .filter(|node| node.pointer("/metadata/name").and_then(Value::as_str) != Some(this_node))
        .filter_map(|node| {
            let cidr: IpNet = node.pointer("/spec/podCIDR")?.as_str()?.parse().ok()?;
            let address: IpAddr = node
                .pointer("/status/addresses")?
                .as_array()?
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))?
                .get("address")?
                .as_str()?
                .parse()
                .ok()?;
            Some((address, cidr))
        })
        .collect();
    peers.sort();
    peers
}

/// Keeps the routes current until shutdown.
pub async fn run(
    state: State,
    network: NodeNetwork,
    this_node: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut changes = state.subscribe_changes();
    let mut current: Option<Vec<(IpAddr, IpNet)>> = None;
    loop {
        let (nodes, _) = state.list("Node", None);
        let peers = peers_of(&nodes, &this_node);
        if current.as_ref() != Some(&peers) {
            match network.set_peers(peers.clone()).await {
                Ok(()) => {
                    tracing::info!(peers = ?peers, "routes to peer pod networks updated");
                    current = Some(peers);
                }
                Err(error) => {
                    tracing::warn!(error = %crate::kubelet::images::error_chain(&error), "updating routes to peer pod networks failed")
                }
            }
        }
        if !crate::controllers::next_change(
            &mut changes,
            &mut shutdown,
            Some(std::time::Duration::from_secs(30)),
        )
        .await
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn peers_are_the_other_nodes_with_an_address_and_a_pod_cidr() {
        let node = |name: &str, ip: Option<&str>, cidr: Option<&str>| {
            let mut n = json!({"metadata": {"name": name}, "spec": {}, "status": {}});
            if let Some(ip) = ip {
                n["status"]["addresses"] = json!([{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]);
            }
            if let Some(cidr) = cidr {
                n["spec"]["podCIDR"] = json!(cidr);
            }
            Arc::new(n)
        };
        let nodes = vec![
            node("a", Some("10.0.0.1"), Some("10.244.0.0/24")),
            node("b", Some("10.0.0.2"), Some("10.244.1.0/24")),
            node("c", None, Some("10.244.2.0/24")),
            node("d", Some("10.0.0.4"), None),
        ];
        assert_eq!(
            peers_of(&nodes, "a"),
            vec![(
                "10.0.0.2".parse().unwrap(),
                "10.244.1.0/24".parse().unwrap()
            )]
        );
    }
}
