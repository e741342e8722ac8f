//! Majority arithmetic over a membership, joint configurations included: a decision in a joint
//! configuration needs a majority of the incoming voters and a majority of the outgoing ones.

use super::types::{Membership, NodeId};
use std::collections::BTreeSet;

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

/// The largest value that a majority of `voters` has reached, where `value(id)` is how far each
/// voter got. An empty set places no constraint (it is the absent half of a joint config).
fn majority_value<V: Ord + Copy>(
    voters: &BTreeSet<NodeId>,
    value: &impl Fn(NodeId) -> V,
    max: V,
) -> V {
    if voters.is_empty() {
        return max;
    }
    // Asked at every acknowledgement a leader receives (commit index, lease, reads): the
    // usual few voters are sorted on the stack, with no allocation.
    const ON_STACK: usize = 16;
    if voters.len() <= ON_STACK {
        let mut values = [max; ON_STACK];
        for (slot, &id) in values.iter_mut().zip(voters) {
            *slot = value(id);
        }
        let values = &mut values[..voters.len()];
        values.sort_unstable_by(|a, b| b.cmp(a));
        return values[voters.len() / 2];
    }
    let mut values: Vec<V> = voters.iter().map(|&id| value(id)).collect();
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[voters.len() / 2]
}

/// The largest value reached by a quorum of the membership (both halves when joint).
pub fn quorum_value<V: Ord + Copy>(m: &Membership, value: impl Fn(NodeId) -> V, max: V) -> V {
    let incoming = majority_value(&m.voters, &value, max);
    let outgoing = majority_value(&m.voters_outgoing, &value, max);
    incoming.min(outgoing)
}

/// Whether the nodes for which `yes(id)` holds form a quorum.
pub fn is_quorum(m: &Membership, yes: impl Fn(NodeId) -> bool) -> bool {
    quorum_value(m, yes, true)
}

fn vote_result_of(
    voters: &BTreeSet<NodeId>,
    votes: &impl Fn(NodeId) -> Option<bool>,
) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for &id in voters {
        match votes(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let majority = voters.len() / 2 + 1;
    if granted >= majority {
        VoteResult::Won
    } else if granted + missing >= majority {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// Counts an election: `votes(id)` is `Some(granted)` for the voters that answered.
pub fn vote_result(m: &Membership, votes: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
    let a = vote_result_of(&m.voters, &votes);
    let b = vote_result_of(&m.voters_outgoing, &votes);
    match (a, b) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> BTreeSet<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn majority_of_three_and_five() {
        let m = Membership::new(ids(&[1, 2, 3]));
        assert_eq!(
            quorum_value(&m, |id| [0, 5, 7, 9][id.0 as usize], u64::MAX),
            7
        );
        let m = Membership::new(ids(&[1, 2, 3, 4, 5]));
        let matched = [0, 1, 2, 3, 4, 5];
        assert_eq!(quorum_value(&m, |id| matched[id.0 as usize], u64::MAX), 3);
    }

    #[test]
    fn the_majority_is_the_same_on_and_off_the_stack() {
        // Up to 16 voters are sorted on the stack, more in a vector: the same rule either way.
        for n in [1u64, 2, 7, 16, 17, 40] {
            let m = Membership::new((1..=n).map(NodeId).collect::<BTreeSet<_>>());
            let value = |id: NodeId| (id.0 * 7919) % 101;
            let mut sorted: Vec<u64> = (1..=n).map(|i| value(NodeId(i))).collect();
            sorted.sort_unstable_by(|a, b| b.cmp(a));
            let majority = sorted[(n / 2) as usize];
            assert_eq!(quorum_value(&m, value, u64::MAX), majority, "{n} voters");
        }
    }

    #[test]
    fn joint_quorum_needs_both_majorities() {
        let m = Membership {
            voters: ids(&[4, 5, 6]),
            voters_outgoing: ids(&[1, 2, 3]),
            learners: BTreeSet::new(),
        };
        // The old voters have reached 10, the new ones only 2.
        let value = |id: NodeId| if id.0 <= 3 { 10 } else { 2 };
        assert_eq!(quorum_value(&m, value, u64::MAX), 2);
        assert!(!is_quorum(&m, |id| id.0 <= 3));
        assert!(is_quorum(&m, |id| [1, 2, 4, 5].contains(&id.0)));
    }

    #[test]
    fn learners_never_count() {
        let m = Membership {
            voters: ids(&[1, 2, 3]),
            voters_outgoing: BTreeSet::new(),
            learners: ids(&[4, 5]),
        };
        assert!(!is_quorum(&m, |id| id.0 == 1 || id.0 >= 4));
    }

    #[test]
    fn votes_are_counted_to_won_lost_or_pending() {
        let m = Membership::new(ids(&[1, 2, 3]));
        assert_eq!(
            vote_result(&m, |id| (id.0 == 1).then_some(true)),
            VoteResult::Pending
        );
        assert_eq!(
            vote_result(&m, |id| (id.0 <= 2).then_some(true)),
            VoteResult::Won
        );
        assert_eq!(vote_result(&m, |id| Some(id.0 == 1)), VoteResult::Lost);
    }
}
