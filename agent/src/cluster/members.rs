//! Who stays a raft member: a host whose Node object is gone was forgotten (`berth node
//! forget`, or `kubectl delete node`) and leaves the raft group, voters and learners alike;
//! the voters are then re-balanced among the hosts that remain ([`super::voters`]).
//!
//! The Node delete is the one committed fact: the leader's membership task derives the
//! removal from it, so a leader change between the delete and the membership change loses
//! nothing (the next leader sees the same missing Node). A joining host's Node is created
//! before it is added as a learner ([`super::Cluster::admit`]), so "a member without a Node"
//! never describes a host that is still being admitted. Pure: [`plan_membership`] decides,
//! `leadership` carries it out.

use std::collections::BTreeSet;
use std::time::Duration;

use super::voters::{MemberView, plan_voters};
use crate::state::Command;
use crate::state::raft::NodeId;

/// What the leader knows of one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberFacts {
    /// The member.
    pub id: NodeId,
    /// Whether it votes now.
    pub voter: bool,
    /// Whether its log is caught up with the leader's.
    pub caught_up: bool,
    /// Whether a Node object of its name exists.
    pub has_node: bool,
    /// How many pods are bound to its node (`spec.nodeName`).
    pub bound_pods: usize,
    /// How long this leader has seen it without a Node (zero while it has one).
    pub forgotten_for: Duration,
}

/// How long a forgotten host stays a member while pods are still bound to it: long enough
/// for `node forget`'s pod deletions to reach it while it still receives the log (a host
/// forgotten while its agent runs then stops them), short enough that a lost host's seat is
/// freed soon.
pub const POD_WAIT: Duration = Duration::from_secs(10);

/// The membership the leader should move to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipPlan {
    /// The voters after the change (forgotten voters are no longer among them).
    pub voters: BTreeSet<NodeId>,
    /// Members to remove from the group (forgotten hosts), voters or learners.
    pub remove: BTreeSet<NodeId>,
}

/// The membership to move to, or `None` when the current one is right.
///
/// A member without a Node is removed once no pod is bound to it any more or after
/// [`POD_WAIT`], never the leader itself (it leads on until another
/// host does; the CLI refuses to forget the leader, so this arises only when its Node was
/// deleted by hand, and then its own heartbeat registers it again). The voters are planned
/// among the remaining members as [`plan_voters`] does; a forgotten voter's seat goes to a
/// caught-up learner when the count calls for one.
pub fn plan_membership(members: &[MemberFacts], leader: NodeId) -> Option<MembershipPlan> {
    let remove: BTreeSet<NodeId> = members
        .iter()
        .filter(|m| !m.has_node && m.id != leader)
        .filter(|m| m.bound_pods == 0 || m.forgotten_for >= POD_WAIT)
        .map(|m| m.id)
        .collect();
    let remaining: Vec<MemberView> = members
        .iter()
        .filter(|m| !remove.contains(&m.id))
        .map(|m| MemberView {
            id: m.id,
            voter: m.voter,
            caught_up: m.caught_up,
        })
        .collect();
    let current: BTreeSet<NodeId> = members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let kept: BTreeSet<NodeId> = remaining.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let voters = plan_voters(&remaining, leader).unwrap_or(kept);
    if voters.is_empty() {
        // Nothing can vote without the members about to go: change nothing (openraft
        // refuses an empty voter set, and the cluster would stop).
        return None;
    }
    (voters != current || !remove.is_empty()).then_some(MembershipPlan { voters, remove })
}

/// Why the leader refuses a write forwarded by the host `sender` (the common name of its node
/// certificate), or `None` to commit it.
///
/// A host that is not a member was forgotten: none of its writes count any more. A member
/// creating its own Node is a host whose Node was deleted (forgotten) and whose heartbeat
/// would register it again before the membership task removes it; a member's Node is
/// created by its admission (or, for the founder, while it leads, not through this path).
pub fn proposal_refusal(
    sender: &str,
    is_member: bool,
    own_node_exists: bool,
    command: &Command,
) -> Option<String> {
    if !is_member {
        return Some(removed_message(sender));
    }
    (!own_node_exists && creates_node(command, sender)).then(|| {
        format!(
            "node {sender:?} was deleted (forgotten): it does not register again; {}",
            rejoin_advice()
        )
    })
}

fn creates_node(command: &Command, name: &str) -> bool {
    match command {
        Command::Create { object, .. } => {
            object.get("kind").and_then(|k| k.as_str()) == Some("Node")
                && object.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(name)
        }
        Command::Batch(commands) => commands.iter().any(|c| creates_node(c, name)),
        _ => false,
    }
}

/// The words for a host that is no longer a member.
pub fn removed_message(name: &str) -> String {
    format!(
        "host {name:?} is not a member of the cluster: it was removed (its Node was deleted, e.g. by `berth node forget`); {}",
        rejoin_advice()
    )
}

fn rejoin_advice() -> &'static str {
    "to use this host again, stop berth on it, move its data directory away and join with a new token (`berth token create` on a member, then `berth agent --join HOST:7443 --token TOKEN`)"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, voter: bool, caught_up: bool, has_node: bool) -> MemberFacts {
        MemberFacts {
            id,
            voter,
            caught_up,
            has_node,
            bound_pods: 0,
            forgotten_for: Duration::ZERO,
        }
    }

    fn with_pods(facts: MemberFacts, pods: usize, forgotten_secs: u64) -> MemberFacts {
        MemberFacts {
            bound_pods: pods,
            forgotten_for: Duration::from_secs(forgotten_secs),
            ..facts
        }
    }

    fn plan(voters: &[NodeId], remove: &[NodeId]) -> Option<MembershipPlan> {
        Some(MembershipPlan {
            voters: voters.iter().copied().collect(),
            remove: remove.iter().copied().collect(),
        })
    }

    #[test]
    fn the_leader_refuses_writes_of_forgotten_hosts_and_their_node_registering_again() {
        let node = |name: &str| {
            Command::create(
                serde_json::json!({"kind": "Node", "metadata": {"name": name}}),
                "u",
                crate::state::Timestamp::from_unix_seconds(0),
            )
        };
        let status = Command::UpdateStatus {
            key: crate::state::ObjectKey::new("Node", "", "h3"),
            status: serde_json::json!({}),
            precondition_resource_version: None,
        };
        let table: &[(&str, bool, bool, Command, Option<&str>)] = &[
            ("a member's status update", true, true, status.clone(), None),
            (
                "a member creating another Node",
                true,
                false,
                node("h9"),
                None,
            ),
            (
                "a member whose Node exists creating it (AlreadyExists follows)",
                true,
                true,
                node("h3"),
                None,
            ),
            (
                "a member whose Node is gone creating it",
                true,
                false,
                node("h3"),
                Some("node \"h3\" was deleted (forgotten)"),
            ),
            (
                "the same inside a batch",
                true,
                false,
                Command::Batch(vec![Command::Noop, node("h3")]),
                Some("was deleted (forgotten)"),
            ),
            (
                "a host that is no longer a member",
                false,
                true,
                status,
                Some("host \"h3\" is not a member of the cluster"),
            ),
        ];
        for (name, is_member, own_node, command, want) in table {
            let got = proposal_refusal("h3", *is_member, *own_node, command);
            match (want, &got) {
                (None, None) => {}
                (Some(words), Some(message)) => {
                    assert!(message.contains(words), "{name}: {message}");
                    assert!(
                        message.contains("join with a new token"),
                        "{name}: {message}"
                    );
                }
                _ => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn members_whose_node_is_gone_leave_the_group_and_the_voters_are_rebalanced() {
        let table: &[(&str, Vec<MemberFacts>, NodeId, Option<MembershipPlan>)] = &[
            (
                "every member has its Node: nothing changes",
                vec![
                    member(1, true, true, true),
                    member(2, true, true, true),
                    member(3, true, true, true),
                ],
                1,
                None,
            ),
            (
                "a forgotten voter of three leaves, and two hosts keep one voter",
                vec![
                    member(1, true, true, true),
                    member(2, true, true, true),
                    member(3, true, false, false),
                ],
                1,
                plan(&[1], &[3]),
            ),
            (
                "a forgotten voter of three is replaced by a caught-up learner",
                vec![
                    member(1, true, true, true),
                    member(2, true, true, true),
                    member(3, true, false, false),
                    member(4, false, true, true),
                ],
                1,
                plan(&[1, 2, 4], &[3]),
            ),
            (
                "a forgotten voter's seat waits for a learner that is not caught up",
                vec![
                    member(1, true, true, true),
                    member(2, true, true, true),
                    member(3, true, false, false),
                    member(4, false, false, true),
                ],
                1,
                plan(&[1, 2], &[3]),
            ),
            (
                "a forgotten learner leaves and the voters stay",
                vec![
                    member(1, true, true, true),
                    member(2, true, true, true),
                    member(3, true, true, true),
                    member(4, false, true, false),
                ],
                1,
                plan(&[1, 2, 3], &[4]),
            ),
            (
                "a forgotten host that is still up and caught up leaves all the same",
                vec![member(1, true, true, true), member(2, false, true, false)],
                1,
                plan(&[1], &[2]),
            ),
            (
                "a forgotten host with pods still bound to it stays a while",
                vec![
                    member(1, true, true, true),
                    member(2, true, true, true),
                    with_pods(member(3, true, true, false), 2, 1),
                ],
                1,
                None,
            ),
            (
                "a forgotten host whose pods never go leaves after the wait",
                vec![
                    member(1, true, true, true),
                    member(2, true, true, true),
                    with_pods(member(3, true, true, false), 2, POD_WAIT.as_secs()),
                ],
                1,
                plan(&[1], &[3]),
            ),
            (
                "the leader stays even without its Node",
                vec![member(1, true, true, false), member(2, false, true, true)],
                1,
                None,
            ),
            (
                "the founder before its first heartbeat stays alone",
                vec![member(1, true, true, false)],
                1,
                None,
            ),
            (
                "two of five forgotten: three hosts keep three voters",
                vec![
                    member(1, true, true, true),
                    member(2, true, true, true),
                    member(3, true, false, false),
                    member(4, true, false, false),
                    member(5, true, true, true),
                ],
                5,
                plan(&[1, 2, 5], &[3, 4]),
            ),
            (
                "without forgotten members the voters are still rebalanced",
                vec![
                    member(1, true, true, true),
                    member(2, false, true, true),
                    member(3, false, true, true),
                ],
                1,
                plan(&[1, 2, 3], &[]),
            ),
        ];
        for (name, members, leader, want) in table {
            assert_eq!(&plan_membership(members, *leader), want, "{name}");
        }
    }
}
