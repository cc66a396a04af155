//! Leader-only tasks: the controllers and the membership task (forgotten hosts leave the
//! raft group, voters are re-balanced) run while this host leads
//! and stop as soon as it does not (a watch of raft metrics). The kubelet, DNS feed and pod
//! network run on every host.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use openraft::ChangeMembers;

use super::members::{MemberFacts, plan_membership};
use crate::state::State;
use crate::state::raft::{Member, NodeId};

/// A learner within this many entries of the leader's log counts as caught up.
const CAUGHT_UP_ENTRIES: u64 = 50;
/// How often the leader reconsiders the voters.
const REBALANCE_EVERY: Duration = Duration::from_secs(2);

/// Runs `start` each time this host becomes leader, with a shutdown receiver that turns true
/// when leadership is lost (or the agent stops); returns when `shutdown` turns true, after
/// stopping what it started.
pub async fn run<F>(state: State, mut shutdown: watch::Receiver<bool>, mut start: F)
where
    F: FnMut(watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>>,
{
    let mut metrics = state.raft().metrics();
    let node_id = state.node_id();
    let mut running: Option<(watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)> = None;
    loop {
        let leading = metrics.borrow_and_update().current_leader == Some(node_id);
        match (leading, running.is_some()) {
            (true, false) => {
                tracing::info!(node_id, "this host leads: starting the controllers");
                let (tx, rx) = watch::channel(false);
                let mut tasks = start(rx.clone());
                tasks.push(tokio::spawn(rebalance(state.clone(), rx)));
                running = Some((tx, tasks));
            }
            (false, true) => {
                tracing::info!(
                    node_id,
                    "this host no longer leads: stopping the controllers"
                );
                stop(running.take()).await;
            }
            _ => {}
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => if *shutdown.borrow() { break },
        }
    }
    stop(running.take()).await;
}

async fn stop(running: Option<(watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)>) {
    let Some((tx, tasks)) = running else { return };
    let _ = tx.send(true);
    for task in tasks {
        if tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .is_err()
        {
            tracing::warn!("a leader-only task did not stop within 2s");
        }
    }
}

/// Keeps the raft membership as [`plan_membership`] says: removes members whose Node is gone
/// (forgotten hosts), promotes caught-up learners and demotes surplus voters. Looks again
/// after every state change (a Node delete takes effect at once) and every
/// [`REBALANCE_EVERY`] (replication progress is not a state change).
async fn rebalance(state: State, mut shutdown: watch::Receiver<bool>) {
    let mut changes = state.subscribe_changes();
    // When this leader first saw each member without a Node.
    let mut forgotten_since: BTreeMap<NodeId, Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REBALANCE_EVERY) => {}
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let metrics = state.raft().metrics().borrow().clone();
        if metrics.current_leader != Some(state.node_id()) {
            continue;
        }
        // The membership takes effect when its entry is appended, the Nodes when theirs are
        // applied: a new leader that has not applied up to the membership entry could miss
        // the Node of a host admitted just before it (its Node entry precedes its learner
        // entry) and take it for forgotten.
        let applied = metrics.last_applied.map(|log| log.index);
        let membership_at = metrics
            .membership_config
            .log_id()
            .as_ref()
            .map(|log| log.index);
        if applied < membership_at {
            continue;
        }
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = metrics.last_log_index.unwrap_or(0);
        let replication = metrics.replication.clone().unwrap_or_default();
        let (nodes, _) = state.list("Node", None);
        let node_names: BTreeSet<&str> = nodes
            .iter()
            .filter_map(|n| n.pointer("/metadata/name").and_then(|v| v.as_str()))
            .collect();
        // Pods are counted only when some member lacks its Node (this runs on every write).
        let any_forgotten = membership
            .nodes()
            .any(|(_, m)| !node_names.contains(m.name.as_str()));
        let pods = if any_forgotten {
            state.list("Pod", None).0
        } else {
            Vec::new()
        };
        let mut bound: BTreeMap<&str, usize> = BTreeMap::new();
        for pod in &pods {
            if let Some(node) = pod.pointer("/spec/nodeName").and_then(|v| v.as_str()) {
                *bound.entry(node).or_default() += 1;
            }
        }
        forgotten_since.retain(|id, _| {
            membership
                .get_node(id)
                .is_some_and(|m| !node_names.contains(m.name.as_str()))
        });
        let facts: Vec<MemberFacts> = membership
            .nodes()
            .map(|(id, member)| {
                let matched = replication
                    .get(id)
                    .cloned()
                    .flatten()
                    .map(|log| log.index)
                    .unwrap_or(0);
                let has_node = node_names.contains(member.name.as_str());
                let forgotten_for = if has_node {
                    Duration::ZERO
                } else {
                    forgotten_since
                        .entry(*id)
                        .or_insert_with(Instant::now)
                        .elapsed()
                };
                MemberFacts {
                    id: *id,
                    voter: voters.contains(id),
                    caught_up: *id == state.node_id() || matched + CAUGHT_UP_ENTRIES >= last,
                    has_node,
                    bound_pods: bound.get(member.name.as_str()).copied().unwrap_or(0),
                    forgotten_for,
                }
            })
            .collect();
        let Some(plan) = plan_membership(&facts, state.node_id()) else {
            continue;
        };
        let names = |ids: &BTreeSet<NodeId>| -> Vec<String> {
            ids.iter()
                .map(|id| match membership.get_node(id) {
                    Some(member) => format!("{} ({id})", member.name),
                    None => id.to_string(),
                })
                .collect()
        };
        if plan.voters != voters {
            tracing::info!(voters = ?names(&voters), planned = ?names(&plan.voters), "changing the raft voters");
            if !change(
                &state,
                ChangeMembers::ReplaceAllVoters(plan.voters.clone()),
                true,
            )
            .await
            {
                pause(&mut shutdown).await;
                continue;
            }
        }
        if !plan.remove.is_empty() {
            tracing::info!(members = ?names(&plan.remove), "removing hosts whose Node is gone (forgotten) from the raft group");
            if change(
                &state,
                ChangeMembers::RemoveNodes(plan.remove.clone()),
                false,
            )
            .await
            {
                tracing::info!(members = ?names(&plan.remove), "forgotten hosts are no longer raft members");
            } else {
                pause(&mut shutdown).await;
            }
        }
    }
}

/// Waits [`REBALANCE_EVERY`] (or until shutdown) after a failed change, so that a stream of
/// state changes does not retry it at once.
async fn pause(shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(REBALANCE_EVERY) => {}
        _ = shutdown.changed() => {}
    }
}

/// Commits one membership change; false (logged) when it failed or did not finish in time.
async fn change(state: &State, change: ChangeMembers<NodeId, Member>, retain: bool) -> bool {
    match tokio::time::timeout(
        Duration::from_secs(10),
        state.raft().change_membership(change, retain),
    )
    .await
    {
        Ok(Ok(_)) => {
            tracing::info!("raft membership changed");
            true
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "changing the raft membership failed");
            false
        }
        Err(_) => {
            tracing::warn!("changing the raft membership did not finish within 10s");
            false
        }
    }
}
