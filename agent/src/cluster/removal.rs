//! A host notices that it was removed from the cluster (forgotten while its agent ran, or
//! started again after it was forgotten) and says so in its log.
//!
//! A removed host may never learn it from its own log: the leader stops replicating to it
//! once the membership without it is committed. So every [`CHECK_EVERY`] a host that does
//! not lead asks the members it knows for their view ([`MEMBERSHIP_PATH`], open to every
//! node certificate, removed ones included) and believes the host that leads. Nothing else
//! changes: a removed host's writes are refused by the leader
//! ([`super::members::proposal_refusal`]), so its heartbeat fails and it fences its stateful
//! pods; it never counts toward quorum again.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::Inner;
use super::members::removed_message;
use crate::state::raft::{NodeId, PeerClient};

/// The membership view of a host, for node certificates.
pub const MEMBERSHIP_PATH: &str = "/peer/v1/membership";

/// How often a host that does not lead checks that it is still a member.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How often the removal is logged again while the agent keeps running.
const REMIND_EVERY: Duration = Duration::from_secs(60);
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// One host's view of the membership.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipView {
    /// Whether the answering host leads now (only its view is authoritative).
    pub leading: bool,
    /// The members it knows.
    pub members: Vec<NodeId>,
}

/// Whether the host `me` was removed, from the answers of the hosts it asked: the view of a
/// host that leads decides; without one there is no verdict.
pub fn removed_according_to(me: NodeId, views: &[MembershipView]) -> Option<bool> {
    views
        .iter()
        .find(|view| view.leading)
        .map(|view| !view.members.contains(&me))
}

/// Checks every [`CHECK_EVERY`] whether this host is still a member, logging an error that
/// says how to re-join when it is not; ends when the cluster is dropped.
pub(super) async fn watch(cluster: Weak<Inner>) {
    let mut last_logged: Option<Instant> = None;
    // One pooled client per peer address, kept across checks.
    let mut clients: HashMap<String, PeerClient> = HashMap::new();
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let Some(inner) = cluster.upgrade() else {
            return;
        };
        let state = inner.state.clone();
        let tls = match inner.identity.peer_client_config() {
            Ok(tls) => tls,
            Err(_) => return,
        };
        drop(inner);
        let me = state.node_id();
        let metrics = state.raft().metrics().borrow().clone();
        if metrics.current_leader == Some(me) {
            last_logged = None;
            continue;
        }
        let membership = metrics.membership_config.membership().clone();
        // An empty membership is a joining host's before the leader's first append.
        let locally_removed =
            membership.nodes().next().is_some() && membership.get_node(&me).is_none();
        let removed = if locally_removed {
            Some(true)
        } else {
            let mut views = Vec::new();
            // The leader this host knows first: it answers for everyone.
            let mut peers: Vec<_> = membership.nodes().filter(|(id, _)| **id != me).collect();
            peers.sort_by_key(|(id, _)| Some(**id) != metrics.current_leader);
            clients.retain(|address, _| peers.iter().any(|(_, m)| m.address == *address));
            for (_, member) in peers {
                let client = clients.entry(member.address.clone()).or_insert_with(|| {
                    PeerClient::with_config(member.address.clone(), tls.clone())
                });
                if let Ok(view) = client
                    .get::<MembershipView>(MEMBERSHIP_PATH, ASK_TIMEOUT)
                    .await
                {
                    let leading = view.leading;
                    views.push(view);
                    if leading {
                        break;
                    }
                }
            }
            removed_according_to(me, &views)
        };
        match removed {
            Some(true) if last_logged.is_none_or(|at| at.elapsed() >= REMIND_EVERY) => {
                last_logged = Some(Instant::now());
                tracing::error!(
                    node = %state.node_name(),
                    node_id = me,
                    "{}; until then this agent takes no part in the cluster (its writes are refused, its stateful pods stay fenced)",
                    removed_message(state.node_name())
                );
            }
            Some(false) => last_logged = None,
            Some(true) | None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_leaders_view_decides_whether_a_host_was_removed() {
        let view = |leading: bool, members: &[NodeId]| MembershipView {
            leading,
            members: members.to_vec(),
        };
        let table: &[(&str, Vec<MembershipView>, Option<bool>)] = &[
            ("nobody answered", vec![], None),
            (
                "only followers answered",
                vec![view(false, &[1, 2]), view(false, &[1, 2, 3])],
                None,
            ),
            (
                "the leader lists this host",
                vec![view(false, &[1, 2]), view(true, &[1, 2, 3])],
                Some(false),
            ),
            (
                "the leader does not list this host",
                vec![view(false, &[1, 2, 3]), view(true, &[1, 2])],
                Some(true),
            ),
        ];
        for (name, views, want) in table {
            assert_eq!(removed_according_to(3, views), *want, "{name}");
        }
    }
}
