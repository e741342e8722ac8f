//! Membership changes: learners, one change at a time, a removed leader stepping down, several
//! voters changed in one joint step (both majorities needed for commits and votes), the hazard
//! of a new leader changing the configuration over an earlier term's uncommitted change, votes
//! across stale configurations, and a removed leader that must campaign for the last voter.

use super::*;

#[test]
fn a_learner_replicates_but_never_counts_toward_a_quorum() {
    use crate::ConfChange;
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
    use crate::{ConfChange, ConfChangeError};
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

// ----- Several voters in one joint step -----

fn ids(v: &[u64]) -> BTreeSet<NodeId> {
    v.iter().map(|&id| n(id)).collect()
}

fn members(voters: &[u64], learners: &[u64]) -> Membership {
    Membership {
        voters: ids(voters),
        voters_outgoing: BTreeSet::new(),
        learners: ids(learners),
    }
}

fn config_entry(term: u64, index: u64, m: Membership) -> Entry {
    Entry {
        term: t(term),
        index: i(index),
        payload: EntryPayload::Config(m),
    }
}

/// A cluster of `voters` + `learners` (node ids 1..), every node with an empty log in term 0,
/// node 1 elected.
fn cluster(voters: &[u64], learners: &[u64]) -> Network {
    let m = members(voters, learners);
    let nodes = m
        .members()
        .into_iter()
        .map(|id| {
            let state = RestoredState {
                membership: m.clone(),
                ..RestoredState::default()
            };
            (config(id.0), state)
        })
        .collect();
    let mut net = Network::from_nodes(nodes);
    net.elect(1);
    net
}

fn reconfigure(net: &mut Network, leader: u64, voters: &[u64], learners: &[u64]) -> LogIndex {
    let now = net.now;
    let index = net
        .nodes
        .get_mut(&n(leader))
        .unwrap()
        .reconfigure(ids(voters), ids(learners), now)
        .expect("the change is accepted");
    net.deliver();
    index
}

#[test]
fn replacing_two_voters_at_once_needs_the_old_and_the_new_majority_to_commit() {
    // {1,2,3} → {1,4,5}: the old majority {1,2,3}∖… and the new one share only the leader.
    for cut in [[2, 3], [4, 5]] {
        let mut net = cluster(&[1, 2, 3], &[4, 5]);
        let before = net.status(1).commit_index;
        net.isolate(cut[0]);
        net.isolate(cut[1]);
        let index = reconfigure(&mut net, 1, &[1, 4, 5], &[]);
        let joint = net.node(1).membership().clone();
        assert!(joint.is_joint(), "{joint:?}");
        assert_eq!(
            (joint.voters.clone(), joint.voters_outgoing.clone()),
            (ids(&[1, 4, 5]), ids(&[1, 2, 3]))
        );
        net.run_ms(50);
        assert_eq!(
            net.status(1).commit_index,
            before,
            "with n{} and n{} cut off, one majority alone holds the joint entry: no commit",
            cut[0],
            cut[1]
        );
        net.heal();
        net.run_ms(50);
        assert!(net.status(1).commit_index > index);
        for id in [1, 4, 5] {
            let m = net.node(id).membership().clone();
            assert_eq!(
                m,
                members(&[1, 4, 5], &[]),
                "n{id} left the joint configuration"
            );
        }
        assert_eq!(net.status(4).role, Role::Follower, "n4 votes now");
    }
}

#[test]
fn an_election_in_a_multi_voter_joint_configuration_needs_both_majorities() {
    // Voters {1,2,3} → {1,4,5}. The joint entry reaches only the new voters; then the leader
    // is cut off. n4 holds the longest log; its votes must come from a majority of {1,2,3}
    // (n2 and n3) and one of {1,4,5} (n4 and n5): majorities that do not overlap.
    let mut net = cluster(&[1, 2, 3], &[4, 5]);
    net.isolate(2);
    net.isolate(3);
    reconfigure(&mut net, 1, &[1, 4, 5], &[]);
    assert!(net.node(4).membership().is_joint());
    net.heal();
    net.isolate(1);
    net.isolate(3);
    net.campaign(4);
    assert_ne!(
        net.status(4).role,
        Role::Leader,
        "n4 and n5 are a majority of the new voters, but n2 alone is no majority of the old"
    );
    net.heal();
    net.isolate(1);
    net.campaign(4);
    assert_eq!(net.status(4).role, Role::Leader, "n2 and n3 + n4 and n5");
    net.run_ms(50);
    assert_eq!(net.node(4).membership(), &members(&[1, 4, 5], &[]));
}

#[test]
fn three_to_five_voters_and_five_to_three_each_in_one_joint_step() {
    let mut net = cluster(&[1, 2, 3], &[4, 5]);
    reconfigure(&mut net, 1, &[1, 2, 3, 4, 5], &[]);
    net.run_ms(20);
    for id in 1..=5 {
        assert_eq!(net.node(id).membership(), &members(&[1, 2, 3, 4, 5], &[]));
        assert_ne!(net.status(id).role, Role::Learner);
    }
    // Down to {3,4,5}, the leader removed with n2: it steps down once C_new is committed.
    reconfigure(&mut net, 1, &[3, 4, 5], &[]);
    net.run_ms(20);
    assert_ne!(net.status(1).role, Role::Leader);
    for id in 3..=5 {
        assert_eq!(net.node(id).membership(), &members(&[3, 4, 5], &[]));
    }
    assert_eq!(
        net.status(1).role,
        Role::Learner,
        "n1 appended C_new itself"
    );
    net.isolate(1);
    net.isolate(2);
    net.campaign(4);
    assert_eq!(
        net.status(4).role,
        Role::Leader,
        "elected by 3, 4 and 5 alone"
    );
}

#[test]
fn a_multi_voter_joint_configuration_can_be_aborted() {
    let mut net = cluster(&[1, 2, 3], &[4, 5, 6]);
    net.isolate(4);
    net.isolate(5);
    // Promote 4 and 5, remove 2 and the learner 6, in one step; the new voters are cut off.
    reconfigure(&mut net, 1, &[1, 3, 4, 5], &[]);
    assert!(net.node(1).membership().is_joint());
    let now = net.now;
    net.nodes
        .get_mut(&n(1))
        .unwrap()
        .abort_membership_change(now)
        .unwrap();
    net.deliver();
    net.heal();
    net.run_ms(50);
    for id in 1..=5 {
        assert_eq!(
            net.node(id).membership(),
            &members(&[1, 2, 3], &[4, 5]),
            "n{id}: back to the old voters, the promoted learners learners again"
        );
    }
    assert_eq!(net.status(4).role, Role::Learner);
    // The next change is accepted once the abort is committed.
    reconfigure(&mut net, 1, &[1, 2, 3, 4, 5], &[]);
}

#[test]
fn a_multi_voter_change_is_refused_with_the_reason() {
    use crate::ConfChangeError as E;
    let mut net = cluster(&[1, 2, 3], &[4]);
    let now = net.now;
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    let cases: [(&[u64], &[u64], E); 5] = [
        (&[], &[4], E::NoVoters),
        (&[1, 2, 3], &[3, 4], E::VoterAndLearner { id: n(3) }),
        (&[1, 2, 5], &[4], E::NotLearner { id: n(5) }),
        (&[1, 2, 4], &[3], E::VoterToLearner { id: n(3) }),
        (&[1, 2, 3], &[4], E::NoChange),
    ];
    for (voters, learners, error) in cases {
        assert_eq!(
            leader.reconfigure(ids(voters), ids(learners), now),
            Err(error),
            "{voters:?} + {learners:?}"
        );
    }
    leader.reconfigure(ids(&[1, 4]), ids(&[]), now).unwrap();
    assert!(matches!(
        leader.reconfigure(ids(&[1, 2, 3]), ids(&[]), now),
        Err(E::ChangeInProgress { .. })
    ));
    // A follower refuses, naming the leader.
    let follower = net.nodes.get_mut(&n(2)).unwrap();
    assert_eq!(
        follower.reconfigure(ids(&[1, 2]), ids(&[]), now),
        Err(E::NotLeader { leader: Some(n(1)) })
    );
}

#[test]
fn a_far_behind_learner_is_not_promoted_by_a_multi_voter_change() {
    let mut c = config_without_pre_vote(1);
    c.promote_lag_max = 2;
    let state = RestoredState {
        membership: members(&[1, 2, 3], &[4]),
        hard_state: HardState {
            term: t(1),
            vote: None,
            commit: i(0),
        },
        entries: log(&[1, 1, 1, 1]),
        ..RestoredState::default()
    };
    let mut node = boot(c, state);
    node.tick(AFTER_TIMEOUT);
    persist(&mut node);
    step(&mut node, msg(2, 1, 2, vote_response(true)), AFTER_TIMEOUT);
    persist(&mut node);
    assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Leader);
    let refused = node.reconfigure(ids(&[1, 2, 4]), ids(&[]), AFTER_TIMEOUT);
    assert!(
        matches!(refused, Err(ConfChangeError::LearnerBehind { id, .. }) if id == n(4)),
        "{refused:?}"
    );
}

/// The hazard of changes made one server at a time (Ongaro's bug, raft-dev 2015): a leader of
/// a new term changes the configuration while an earlier term's change is still uncommitted in
/// its log, and the two changes together reach two disjoint majorities. The core refuses any
/// change until the configuration in force is committed, which for an earlier term's entry
/// means until this term's no-op is.
#[test]
fn a_new_leader_changes_nothing_before_the_earlier_terms_change_is_committed() {
    let base = members(&[1, 2, 3], &[]);
    let state = RestoredState {
        membership: base.clone(),
        hard_state: HardState {
            term: t(1),
            vote: None,
            commit: i(1),
        },
        entries: vec![entry(1, 1), config_entry(1, 2, members(&[1, 2, 3], &[4]))],
        applied: i(1),
        ..RestoredState::default()
    };
    let mut node = boot(config_without_pre_vote(1), state);
    node.tick(AFTER_TIMEOUT);
    persist(&mut node);
    step(&mut node, msg(2, 1, 2, vote_response(true)), AFTER_TIMEOUT);
    persist(&mut node);
    assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Leader);
    let now = AFTER_TIMEOUT;
    for attempt in [
        node.change_membership(ConfChange::Remove(n(3)), now),
        node.change_membership(ConfChange::Promote(n(4)), now),
        node.reconfigure(ids(&[1, 2]), ids(&[3]), now),
    ] {
        assert_eq!(
            attempt,
            Err(ConfChangeError::ChangeInProgress { index: i(2) }),
            "the term-1 configuration at 2 is not committed yet"
        );
    }
    // n2 acknowledges this term's no-op (index 3): the earlier change is committed with it.
    step(&mut node, msg(2, 1, 2, append_ok(3)), now);
    persist(&mut node);
    assert_eq!(node.status(now).commit_index, i(3));
    node.change_membership(ConfChange::Remove(n(3)), now)
        .expect("accepted once the earlier change is committed");
}

// ----- Stale configurations -----

#[test]
fn a_voter_grants_its_vote_to_a_candidate_its_stale_configuration_does_not_name() {
    // n1's configuration is {1,2,3}; n4 was made a voter by entries n1 has not received yet.
    // Raft §4.1: votes are granted without consulting the configuration.
    let mut node = follower(3, 2, &[1, 2]);
    step(&mut node, msg(4, 1, 3, vote_request(5, 2)), AFTER_TIMEOUT);
    let out = persist(&mut node);
    assert_eq!(out, vec![msg(1, 4, 3, vote_response(true))]);
    assert_eq!(node.status(AFTER_TIMEOUT).term, t(3));
    // Pre-votes too.
    let mut node = follower(3, 2, &[1, 2]);
    step(
        &mut node,
        msg(4, 1, 3, pre_vote_request(5, 2)),
        AFTER_TIMEOUT,
    );
    assert_eq!(
        persist(&mut node),
        vec![msg(1, 4, 3, pre_vote_response(true))]
    );
    // Stickiness still holds for it, as for anyone: within an election timeout of hearing
    // from a leader, nothing is granted and the term does not move.
    let mut node = follower(3, 2, &[1, 2]);
    step(&mut node, msg(2, 1, 2, heartbeat(0, 1)), AFTER_TIMEOUT);
    persist(&mut node);
    step(
        &mut node,
        msg(4, 1, 3, vote_request(5, 2)),
        AFTER_TIMEOUT + MS,
    );
    assert!(persist(&mut node)
        .iter()
        .all(|m| !matches!(m.body, MessageBody::RequestVoteResponse { .. })));
    assert_eq!(node.status(AFTER_TIMEOUT + MS).term, t(2));
}

#[test]
fn a_voter_with_a_stale_configuration_votes_for_a_new_voter() {
    // {1,2,3} + learners 4 and 5 → {1,2,3,4,5} while n3 is cut off: n3 still sees 4 and 5 as
    // learners. Then 1 and 2 go down: 3, 4 and 5 are a majority of the new voters, but only if
    // n3 answers n4's vote request, which its own configuration does not name as a voter.
    let mut net = cluster(&[1, 2, 3], &[4, 5]);
    net.isolate(3);
    reconfigure(&mut net, 1, &[1, 2, 3, 4, 5], &[]);
    net.run_ms(20);
    assert_eq!(net.node(4).membership(), &members(&[1, 2, 3, 4, 5], &[]));
    assert_eq!(net.node(3).membership(), &members(&[1, 2, 3], &[4, 5]));
    net.heal();
    net.isolate(1);
    net.isolate(2);
    net.campaign(4);
    assert_eq!(net.status(4).role, Role::Leader, "elected by 3, 4 and 5");
    net.run_ms(20);
    assert_eq!(net.node(3).membership(), &members(&[1, 2, 3, 4, 5], &[]));
}

// ----- A leader that removed itself -----

#[test]
fn a_removed_leader_whose_c_new_never_left_lets_the_last_voter_win() {
    // Voters {1,2}: n1 led, removed itself, committed the joint configuration {2}/{1,2} at
    // index 1, appended C_new = {2} at index 2 and crashed before sending it. n2's joint
    // configuration needs n1's vote, which n1 refuses (its log is longer); and n1 is no voter
    // in its newest configuration. Yet n1 votes in the joint configuration in force at its
    // commit index, which the cluster may still be running under: it campaigns, leads {2}
    // until C_new is committed, then steps down, and n2 leads alone.
    let joint = Membership {
        voters: ids(&[2]),
        voters_outgoing: ids(&[1, 2]),
        learners: BTreeSet::new(),
    };
    let state = |entries: Vec<Entry>| RestoredState {
        hard_state: HardState {
            term: t(1),
            vote: None,
            commit: i(1),
        },
        membership: members(&[1, 2], &[]),
        entries,
        applied: i(1),
        ..RestoredState::default()
    };
    let n1 = state(vec![
        config_entry(1, 1, joint.clone()),
        config_entry(1, 2, members(&[2], &[])),
    ]);
    let n2 = state(vec![config_entry(1, 1, joint)]);
    let mut net = Network::from_nodes(vec![(config(1), n1), (config(2), n2)]);
    assert_eq!(net.status(1).role, Role::Learner);
    net.run_ms(2000);
    assert_eq!(net.leaders(), vec![n(2)]);
    assert_eq!(net.node(2).membership(), &members(&[2], &[]));
    assert!(net.status(2).commit_index >= i(2), "C_new is committed");
    assert_eq!(net.status(1).role, Role::Learner);
    // n1 knows C_new is committed: it campaigns no more.
    assert_eq!(net.node(1).next_deadline(), Nanos::MAX);
}

#[test]
fn a_learner_that_never_voted_never_campaigns() {
    let mut net = cluster(&[1, 2], &[3]);
    net.isolate(1);
    net.isolate(2);
    assert_eq!(net.node(3).next_deadline(), Nanos::MAX);
    let term = net.status(3).term;
    net.run_ms(1000);
    assert_eq!(net.status(3).term, term);
    assert_eq!(net.status(3).role, Role::Learner);
}
