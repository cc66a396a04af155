//! Leader-only tasks: the controllers and the voter rebalancer run while this host leads
//! and stop as soon as it does not (a watch of raft metrics). The kubelet, DNS feed and pod
//! network run on every host.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;

use super::voters::{MemberView, plan_voters};
use crate::state::State;
use crate::state::raft::NodeId;

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
        if tokio::time::timeout(Duration::from_secs(2), &mut Box::pin(async { task.await }))
            .await
            .is_err()
        {
            tracing::warn!("a leader-only task did not stop within 2s");
        }
    }
}

/// Promotes caught-up learners (and demotes surplus voters) as [`plan_voters`] says.
async fn rebalance(state: State, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REBALANCE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let metrics = state.raft().metrics().borrow().clone();
        if metrics.current_leader != Some(state.node_id()) {
            continue;
        }
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = metrics.last_log_index.unwrap_or(0);
        let replication = metrics.replication.clone().unwrap_or_default();
        let views: Vec<MemberView> = membership
            .nodes()
            .map(|(id, _)| {
                let matched = replication
                    .get(id)
                    .cloned()
                    .flatten()
                    .map(|log| log.index)
                    .unwrap_or(0);
                MemberView {
                    id: *id,
                    voter: voters.contains(id),
                    caught_up: *id == state.node_id() || matched + CAUGHT_UP_ENTRIES >= last,
                }
            })
            .collect();
        let Some(planned) = plan_voters(&views, state.node_id()) else {
            continue;
        };
        tracing::info!(?voters, ?planned, "changing the raft voters");
        match tokio::time::timeout(
            Duration::from_secs(10),
            state.raft().change_membership(planned, true),
        )
        .await
        {
            Ok(Ok(_)) => tracing::info!("raft voters changed"),
            Ok(Err(error)) => tracing::warn!(%error, "changing the raft voters failed"),
            Err(_) => tracing::warn!("changing the raft voters did not finish within 10s"),
        }
    }
}
