//! Which members vote: 1 voter for 1-2 hosts, 3 for 3-4, 5 beyond; the rest are learners.
//! Pure: the leader calls [`plan_voters`] with the members and what it observes of them.

use std::collections::BTreeSet;

use crate::state::raft::NodeId;

/// How many voters a cluster of `members` hosts has.
pub fn voter_count(members: usize) -> usize {
    match members {
        0 => 0,
        1 | 2 => 1,
        3 | 4 => 3,
        _ => 5,
    }
}

/// What the leader knows of one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberView {
    /// The member.
    pub id: NodeId,
    /// Whether it votes now.
    pub voter: bool,
    /// Whether its log is caught up with the leader's (a learner is promoted only then).
    pub caught_up: bool,
}

/// The voter set the leader should move to, or `None` when the current one is right.
///
/// Caught-up learners are promoted in id order until the target count is reached; surplus
/// voters (after hosts left) are demoted, lagging ones first, else highest id first, never
/// the leader. Then one voter that lags (down or cut off) is swapped for a caught-up learner,
/// one per call, so that a lost host does not hold a voting seat another host could hold
/// (the change commits with the majority of the old voters that is still up).
pub fn plan_voters(members: &[MemberView], leader: NodeId) -> Option<BTreeSet<NodeId>> {
    let target = voter_count(members.len());
    let current: BTreeSet<NodeId> = members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    let mut planned = current.clone();
    for member in members.iter().filter(|m| !m.voter && m.caught_up) {
        if planned.len() >= target {
            break;
        }
        planned.insert(member.id);
    }
    while planned.len() > target {
        let lagging = members
            .iter()
            .rev()
            .find(|m| planned.contains(&m.id) && !m.caught_up && m.id != leader)
            .map(|m| m.id);
        let Some(victim) =
            lagging.or_else(|| planned.iter().rev().copied().find(|&id| id != leader))
        else {
            break;
        };
        planned.remove(&victim);
    }
    let lagging_voter = members
        .iter()
        .find(|m| planned.contains(&m.id) && !m.caught_up && m.id != leader);
    let spare_learner = members
        .iter()
        .find(|m| !planned.contains(&m.id) && m.caught_up);
    if let (Some(lagging), Some(spare)) = (lagging_voter, spare_learner) {
        planned.remove(&lagging.id);
        planned.insert(spare.id);
    }
    (planned != current && !planned.is_empty()).then_some(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: NodeId, voter: bool, caught_up: bool) -> MemberView {
        MemberView {
            id,
            voter,
            caught_up,
        }
    }

    #[test]
    fn the_voter_count_follows_the_cluster_size() {
        let table = [(1, 1), (2, 1), (3, 3), (4, 3), (5, 5), (6, 5), (20, 5)];
        for (members, voters) in table {
            assert_eq!(voter_count(members), voters, "{members} members");
        }
    }

    #[test]
    fn voters_are_planned_from_what_the_leader_sees() {
        let table: &[(&str, Vec<MemberView>, Option<Vec<NodeId>>)] = &[
            ("one host stays as it is", vec![view(1, true, true)], None),
            (
                "a second host stays a learner",
                vec![view(1, true, true), view(2, false, true)],
                None,
            ),
            (
                "a third host makes three voters",
                vec![
                    view(1, true, true),
                    view(2, false, true),
                    view(3, false, true),
                ],
                Some(vec![1, 2, 3]),
            ),
            (
                "a learner that is not caught up is not promoted",
                vec![
                    view(1, true, true),
                    view(2, false, true),
                    view(3, false, false),
                ],
                Some(vec![1, 2]),
            ),
            (
                "a fourth host stays a learner",
                vec![
                    view(1, true, true),
                    view(2, true, true),
                    view(3, true, true),
                    view(4, false, true),
                ],
                None,
            ),
            (
                "five hosts make five voters",
                vec![
                    view(1, true, true),
                    view(2, true, true),
                    view(3, true, true),
                    view(4, false, true),
                    view(5, false, true),
                ],
                Some(vec![1, 2, 3, 4, 5]),
            ),
            (
                "a lagging voter is swapped for a caught-up learner",
                vec![
                    view(1, true, true),
                    view(2, true, true),
                    view(3, true, false),
                    view(4, false, true),
                ],
                Some(vec![1, 2, 4]),
            ),
            (
                "a lagging voter stays when no learner can take its seat",
                vec![
                    view(1, true, true),
                    view(2, true, true),
                    view(3, true, false),
                    view(4, false, false),
                ],
                None,
            ),
            (
                "five hosts make five voters even with a lagging one",
                vec![
                    view(1, true, true),
                    view(2, true, false),
                    view(3, true, false),
                    view(4, false, true),
                    view(5, false, true),
                ],
                Some(vec![1, 2, 3, 4, 5]),
            ),
            (
                "surplus voters are demoted, never the leader",
                vec![view(1, true, true), view(9, true, true)],
                Some(vec![9]),
            ),
        ];
        for (name, members, want) in table {
            let leader = if *name == "surplus voters are demoted, never the leader" {
                9
            } else {
                1
            };
            let got = plan_voters(members, leader).map(|set| set.into_iter().collect::<Vec<_>>());
            assert_eq!(&got, want, "{name}");
        }
    }
}
