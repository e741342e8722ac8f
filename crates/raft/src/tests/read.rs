//! Linearizable reads (dissertation §6.4): ReadIndex on the leader and through it, and lease
//! reads.

use super::*;

fn read_states(node: &mut RaftNode) -> Vec<(u64, Result<LogIndex, ReadError>)> {
    node.take_read_states()
        .into_iter()
        .map(|r| (r.ctx, r.result))
        .collect()
}

/// ReadIndex: a commit of the current term and a quorum round started after the request.
mod read_index {
    use super::*;

    #[test]
    fn waits_for_a_commit_of_its_term_and_a_quorum_round() {
        // Thesis §6.4, and TiKV #9208: a new leader's commit index may lag what earlier leaders
        // committed; it may serve a read only once an entry of its own term is committed.
        let mut node = leader(3, 2, &[1, 1]);
        let now = AFTER_TIMEOUT;
        assert_eq!(node.read_index(7, now), Ok(()));
        let out = persist(&mut node);
        let round = out
            .iter()
            .find_map(|m| match m.body {
                MessageBody::Heartbeat { round, .. } => Some(round),
                _ => None,
            })
            .expect("a read starts a heartbeat round");
        // A quorum answers the round, but the no-op (index 3) is not committed yet: no answer.
        step(&mut node, msg(2, 1, 2, heartbeat_response(round)), now);
        persist(&mut node);
        assert_eq!(read_states(&mut node), vec![]);
        // The no-op commits: the read is answered at the commit index, once applied.
        step(&mut node, msg(2, 1, 2, append_ok(3)), now);
        persist(&mut node);
        assert_eq!(node.status(now).commit_index, i(3));
        assert_eq!(read_states(&mut node), vec![(7, Ok(i(3)))]);
    }

    #[test]
    fn needs_a_round_started_after_the_request() {
        let mut node = leader(3, 2, &[1]);
        let now = AFTER_TIMEOUT;
        step(&mut node, msg(2, 1, 2, append_ok(2)), now);
        persist(&mut node);
        assert_eq!(node.read_index(1, now), Ok(()));
        let out = persist(&mut node);
        let round = out
            .iter()
            .find_map(|m| match m.body {
                MessageBody::Heartbeat { round, .. } => Some(round),
                _ => None,
            })
            .unwrap();
        // An answer to an older round proves nothing about the time of the read.
        step(&mut node, msg(2, 1, 2, heartbeat_response(round - 1)), now);
        persist(&mut node);
        assert_eq!(read_states(&mut node), vec![]);
        step(&mut node, msg(3, 1, 2, heartbeat_response(round)), now);
        persist(&mut node);
        assert_eq!(read_states(&mut node), vec![(1, Ok(i(2)))]);
    }

    #[test]
    fn a_follower_read_is_confirmed_by_the_leader_and_served_once_applied() {
        let mut net = Network::new(3);
        net.elect(1);
        let now = net.now;
        net.nodes
            .get_mut(&n(2))
            .unwrap()
            .read_index(42, now)
            .unwrap();
        net.deliver();
        let states = read_states(net.nodes.get_mut(&n(2)).unwrap());
        assert_eq!(states.len(), 1);
        let (ctx, result) = &states[0];
        assert_eq!(*ctx, 42);
        let index = result.clone().expect("confirmed");
        assert!(net.status(2).applied_index >= index);
        // Without a leader there is no one to confirm with.
        let mut lonely = follower(3, 1, &[1]);
        assert_eq!(lonely.read_index(1, 0), Err(ReadError::NoLeader));
    }
}

/// Lease reads: no round trip, but the leader's commit index applied.
mod lease_read {
    use super::*;

    #[test]
    fn waits_for_the_leader_to_apply_its_commit_index() {
        let mut net = Network::new(3);
        net.elect(1);
        net.now += HEARTBEAT_MS * MS;
        net.tick(&[1]);
        let now = net.now;
        assert!(net.status(1).writable);
        // The leader's disk hangs on a write that a quorum of followers committed.
        net.stall(1);
        net.nodes
            .get_mut(&n(1))
            .unwrap()
            .propose(vec![1], now)
            .unwrap();
        net.deliver();
        let leader = net.nodes.get_mut(&n(1)).unwrap();
        let s = leader.status(now);
        assert!(s.commit_index > s.applied_index, "{s:?}");
        leader.lease_read(9, now).unwrap();
        assert_eq!(
            read_states(leader),
            vec![],
            "not before the commit index is applied"
        );
        net.unstall(1);
        let leader = net.nodes.get_mut(&n(1)).unwrap();
        let commit = leader.status(net.now).commit_index;
        assert_eq!(read_states(leader), vec![(9, Ok(commit))]);
    }
}
