//! Membership changes: learners, one change at a time, a removed leader stepping down.

use super::*;

#[test]
fn a_learner_replicates_but_never_counts_toward_a_quorum() {
    use crate::raft::ConfChange;
    let mut net = Network::with_logs(4, 1, &[&[1], &[1], &[1], &[1]], config);
    // Start from {1,2,3} + learner 4: remove 4 as a voter first is not needed — build it.
    net.elect(1);
    let now = net.now;
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    leader
        .change_membership(ConfChange::Remove(n(4)), now)
        .unwrap();
    net.deliver();
    // The joint configuration is left automatically.
    let m = net.node(1).membership().clone();
    assert!(!m.is_joint() && !m.is_voter(n(4)), "{m:?}");
    let now = net.now;
    net.nodes
        .get_mut(&n(1))
        .unwrap()
        .change_membership(ConfChange::AddLearner(n(4)), now)
        .unwrap();
    net.deliver();
    assert_eq!(net.status(4).role, Role::Learner);
    assert_eq!(net.status(4).last_index, net.status(1).last_index);
    // With 2 and 3 cut off, the leader and the learner are no quorum: nothing commits.
    net.isolate(2);
    net.isolate(3);
    let now = net.now;
    let before = net.status(1).commit_index;
    net.nodes
        .get_mut(&n(1))
        .unwrap()
        .propose(vec![1], now)
        .unwrap();
    net.deliver();
    assert_eq!(net.status(1).commit_index, before);
    assert_eq!(
        net.status(4).last_index,
        net.status(1).last_index,
        "but it replicates"
    );
}

#[test]
fn one_change_at_a_time_and_a_removed_leader_steps_down() {
    use crate::raft::{ConfChange, ConfChangeError};
    let mut net = Network::new(3);
    net.elect(1);
    let now = net.now;
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    leader
        .change_membership(ConfChange::Remove(n(1)), now)
        .unwrap();
    assert!(matches!(
        leader.change_membership(ConfChange::Remove(n(2)), now),
        Err(ConfChangeError::ChangeInProgress { .. })
    ));
    net.deliver();
    // Once C_new (without n1) is committed, n1 is no longer leader nor voter.
    assert_ne!(net.status(1).role, Role::Leader);
    assert!(!net.node(2).membership().is_voter(n(1)));
    net.campaign(2);
    assert_eq!(net.leaders(), vec![n(2)]);
}
