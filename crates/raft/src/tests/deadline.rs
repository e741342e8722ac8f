//! `next_deadline`: the earliest time at which `tick` could do anything. A driver sleeps until
//! it, so it must be exact on both sides: a tick before it changes nothing and sends nothing,
//! and a tick at it does what is due (after which the deadline lies later).

use super::*;

/// Ticks `node` at `now`, which must lie before its deadline, and checks that nothing changed.
fn tick_quietly(node: &mut RaftNode, now: Nanos, context: &str) {
    let deadline = node.next_deadline();
    assert!(now < deadline, "{context}: {now} is not before {deadline}");
    let (state, status) = (node.debug_state(), node.status(now));
    node.tick(now);
    assert_eq!(
        node.debug_state(),
        state,
        "{context}: a tick at {now}, before the deadline {deadline}, changed the node"
    );
    assert_eq!(node.status(now), status, "{context}");
    assert_eq!(node.next_deadline(), deadline, "{context}");
}

/// Ticks `node` at `now`, at or after its deadline, and checks that something was due: the
/// node changed, and its next deadline lies later.
fn tick_due(node: &mut RaftNode, now: Nanos, context: &str) {
    let deadline = node.next_deadline();
    assert!(now >= deadline, "{context}: {now} is before {deadline}");
    let state = node.debug_state();
    node.tick(now);
    assert_ne!(
        node.debug_state(),
        state,
        "{context}: a tick at {now}, at or after the deadline {deadline}, did nothing"
    );
    assert!(
        node.next_deadline() > now,
        "{context}: after a tick at {now} the deadline is still {}",
        node.next_deadline()
    );
}

/// Ticks `node` at its deadline (see `tick_due`) and returns it.
fn tick_at_deadline(node: &mut RaftNode, context: &str) -> Nanos {
    let deadline = node.next_deadline();
    tick_due(node, deadline, context);
    deadline
}

#[test]
fn a_follower_campaigns_at_its_deadline_and_not_a_nanosecond_earlier() {
    let mut node = follower(3, 1, &[]);
    let deadline = node.next_deadline();
    assert!(
        (ELECTION_MS * MS..2 * ELECTION_MS * MS).contains(&deadline),
        "{deadline}"
    );
    tick_quietly(&mut node, 0, "follower");
    tick_quietly(&mut node, deadline - 1, "follower");
    assert_eq!(tick_at_deadline(&mut node, "follower"), deadline);
    assert_eq!(node.status(deadline).role, Role::PreCandidate);
    assert_eq!(
        node.take_messages(),
        vec![
            msg(1, 2, 2, pre_vote_request(0, 0)),
            msg(1, 3, 2, pre_vote_request(0, 0))
        ]
    );
}

#[test]
fn a_leader_heartbeats_at_its_deadline() {
    let mut node = leader(3, 2, &[]);
    node.take_messages();
    let deadline = node.next_deadline();
    assert_eq!(deadline, AFTER_TIMEOUT + HEARTBEAT_MS * MS);
    tick_quietly(&mut node, deadline - 1, "leader");
    tick_at_deadline(&mut node, "leader");
    assert_eq!(
        node.take_messages(),
        vec![msg(1, 2, 2, heartbeat(0, 2)), msg(1, 3, 2, heartbeat(0, 2))]
    );
    assert_eq!(node.next_deadline(), deadline + HEARTBEAT_MS * MS);
}

#[test]
fn a_leader_without_answers_steps_down_at_its_deadline() {
    // With heartbeats every 10 ms never answered, the deadline that falls exactly one minimum
    // election timeout after the election is the check-quorum one.
    let mut node = leader(3, 2, &[]);
    let lapse = AFTER_TIMEOUT + ELECTION_MS * MS;
    while node.next_deadline() < lapse {
        tick_at_deadline(&mut node, "leader");
        assert_eq!(node.status(node.next_deadline()).role, Role::Leader);
    }
    assert_eq!(node.next_deadline(), lapse);
    tick_quietly(&mut node, lapse - 1, "leader before the lapse");
    tick_at_deadline(&mut node, "leader at the lapse");
    assert_eq!(node.status(lapse).role, Role::Follower);
}

#[test]
fn a_learner_never_needs_a_tick() {
    let mut state = restored(3, 1, &[], 0);
    state.membership.learners.insert(n(4));
    let mut node = boot(config(4), state);
    assert_eq!(node.status(0).role, Role::Learner);
    assert_eq!(node.next_deadline(), Nanos::MAX);
    tick_quietly(&mut node, 1_000_000 * MS, "learner");
}

/// Random clusters, run from a seed: random proposals, reads, transfers, membership changes,
/// compactions, partitions and stalled disks between ticks, with every node ticked at its
/// own deadline and, in between, at random instants before it.
#[test]
fn ticks_before_the_deadline_do_nothing_and_the_tick_at_it_does_what_is_due() {
    let (mut on_time, mut overdue) = (0, 0);
    for seed in 1..=60 {
        let (a, b) = run_deadline_scenario(seed);
        on_time += a;
        overdue += b;
    }
    assert!(on_time > 10_000, "only {on_time} ticks at a deadline");
    assert!(overdue < on_time / 100, "{overdue} overdue ticks");
}

/// Runs one scenario; returns how many ticks were at a deadline, and how many overdue.
fn run_deadline_scenario(seed: u64) -> (u64, u64) {
    let mut rng = SplitMix64::new(seed);
    let pre_vote = rng.chance_ppm(500_000);
    let check_quorum = rng.chance_ppm(800_000);
    let configure = |id: u64| {
        let mut c = config(id);
        c.pre_vote = pre_vote;
        c.check_quorum = check_quorum;
        c.snapshot_timeout_ms = 25;
        c.persist_stall_max_ms = 150;
        c.conf_change_timeout_ms = 300;
        c.inflight_max = 2;
        c.append_entries_max = 3;
        c
    };
    // n4 starts outside the configuration {1, 2, 3}: a learner-to-be.
    let mut net = Network::from_nodes(
        (1..=4)
            .map(|id| (configure(id), restored(3, 0, &[], 0)))
            .collect(),
    );
    let ids: Vec<NodeId> = net.nodes.keys().copied().collect();
    let (mut ctx, mut on_time, mut overdue) = (0, 0, 0);
    for step_number in 0..400 {
        let context = format!("seed {seed} step {step_number}");
        // Some input at the current time.
        let now = net.now;
        let id = ids[rng.below(ids.len() as u64) as usize];
        match rng.below(12) {
            0..=2 => {
                let _ = net.nodes.get_mut(&id).unwrap().propose(vec![1; 8], now);
            }
            3 => {
                ctx += 1;
                let _ = net.nodes.get_mut(&id).unwrap().read_index(ctx, now);
            }
            4 => {
                let target = ids[rng.below(3) as usize];
                let _ = net
                    .nodes
                    .get_mut(&id)
                    .unwrap()
                    .transfer_leadership(Some(target), now);
            }
            5 => {
                let change = match rng.below(3) {
                    0 => ConfChange::AddLearner(n(4)),
                    1 => ConfChange::Promote(n(4)),
                    _ => ConfChange::Remove(n(4)),
                };
                let _ = net
                    .nodes
                    .get_mut(&id)
                    .unwrap()
                    .change_membership(change, now);
            }
            6 => {
                let node = net.nodes.get_mut(&id).unwrap();
                let applied = node.status(now).applied_index;
                node.compact(applied);
            }
            7 => {
                if net.cut.is_empty() {
                    net.isolate(id.0);
                } else {
                    net.heal();
                }
            }
            8 => {
                if net.stalled.contains_key(&id) {
                    net.unstall(id.0);
                } else {
                    net.stall(id.0);
                }
            }
            _ => {}
        }
        net.deliver();
        // Then time passes, up to `until`: every node is ticked at each of its deadlines on
        // the way, the earliest first, after a quiet tick at a random instant before it.
        let until = net.now + rng.below(40 * MS);
        loop {
            let (&next_id, deadline) = net
                .nodes
                .iter()
                .map(|(id, node)| (id, node.next_deadline()))
                .min_by_key(|&(id, deadline)| (deadline, *id))
                .unwrap();
            if deadline > until {
                break;
            }
            if deadline < net.now {
                // An input moved it into the past: a configuration change can make a quorum
                // of voters one that has not been heard from for longer than check-quorum
                // allows. It is overdue: tick at once.
                let node = net.nodes.get_mut(&next_id).unwrap();
                tick_due(node, net.now, &format!("{context}: {next_id} overdue"));
                overdue += 1;
            } else {
                for (id, node) in net.nodes.iter_mut() {
                    if deadline > net.now {
                        let quiet = net.now + rng.below(deadline - net.now);
                        tick_quietly(node, quiet, &format!("{context}: {id}"));
                    }
                }
                net.now = deadline;
                let node = net.nodes.get_mut(&next_id).unwrap();
                tick_at_deadline(node, &format!("{context}: {next_id}"));
                on_time += 1;
            }
            net.deliver();
        }
        net.now = until;
        for (id, node) in net.nodes.iter_mut() {
            tick_quietly(node, until, &format!("{context}: {id} at the end"));
        }
    }
    (on_time, overdue)
}
