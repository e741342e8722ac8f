//! Replication's limits and its input: the backpressure on uncommitted proposals, and messages
//! from the network that are errors, never panics.

use super::*;

/// `uncommitted_bytes_max`.
mod backpressure {
    use super::*;

    #[test]
    fn uncommitted_bytes_max_bounds_what_a_leader_holds_uncommitted() {
        let max = 1000;
        let config = Config {
            append_bytes_max: max,
            uncommitted_bytes_max: max,
            ..config_without_pre_vote(1)
        };
        let mut node = leader_with(config, 3, 2, &[]);
        let now = AFTER_TIMEOUT;
        step(&mut node, msg(2, 1, 2, append_ok(1)), now);
        persist(&mut node);

        let mut proposals: Vec<LogIndex> = Vec::new();
        let mut propose_until_refused = |node: &mut RaftNode| loop {
            match node.propose(vec![0; 100], now) {
                Ok((index, _)) => proposals.push(index),
                Err(ProposeError::Backpressure { .. }) => break proposals.clone(),
                Err(e) => panic!("{e}"),
            }
        };
        let first_batch = propose_until_refused(&mut node);
        assert!(first_batch.len() >= 2);
        assert!(first_batch.len() * 100 <= max);
        persist(&mut node);
        // n2 stores only the first of them: it is committed, the others are not.
        step(&mut node, msg(2, 1, 2, append_ok(first_batch[0].0)), now);
        assert_eq!(node.status(now).commit_index, first_batch[0]);

        let all = propose_until_refused(&mut node);
        let commit = node.status(now).commit_index;
        let held = all.iter().filter(|&&index| index > commit).count() * 100;
        assert!(
            held <= max,
            "{held} bytes of proposals uncommitted, uncommitted_bytes_max is {max}"
        );
    }
}

/// Input from the network is an error that names the peer, never a panic.
mod peer_input {
    use super::*;

    #[test]
    fn malformed_messages_are_errors_that_name_the_peer() {
        let mut node = leader(3, 2, &[]);
        let cases: Vec<(Message, StepError)> = vec![
            (
                msg(2, 3, 2, heartbeat(0, 1)),
                StepError::WrongRecipient { to: n(3), me: n(1) },
            ),
            (
                msg(1, 1, 2, heartbeat(0, 1)),
                StepError::FromSelf { me: n(1) },
            ),
            (
                msg(2, 1, 2, append(0, 0, vec![], 0)),
                StepError::SecondLeader {
                    from: n(2),
                    term: t(2),
                    me: n(1),
                },
            ),
        ];
        for (m, err) in cases {
            let shown = format!("{m:?}");
            assert_eq!(node.step(m, AFTER_TIMEOUT), Err(err), "{shown}");
        }
        // A vote request from a node outside the configuration (a removed node that does not know
        // it yet) is ignored: no answer, no change of term. (Other messages from non-members are
        // accepted: the leader replicating a configuration that removes it is one.)
        let before = node.status(AFTER_TIMEOUT);
        assert_eq!(
            node.step(msg(9, 1, 9, vote_request(100, 9)), AFTER_TIMEOUT),
            Ok(())
        );
        assert!(node.take_messages().is_empty());
        assert_eq!(node.status(AFTER_TIMEOUT).term, before.term);
        assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Leader);

        let mut node = follower(3, 2, &[]);
        for entries in [
            vec![entry(2, 2)],              // does not follow prev 0
            vec![entry(1, 1), entry(1, 3)], // a gap
            vec![entry(3, 1)],              // from a term after the message's
            vec![entry(2, 1), entry(1, 2)], // terms going backwards
        ] {
            let shown = format!("{entries:?}");
            assert_eq!(
                node.step(msg(2, 1, 2, append(0, 0, entries, 0)), AFTER_TIMEOUT),
                Err(StepError::MalformedEntries {
                    from: n(2),
                    prev: i(0)
                }),
                "{shown}"
            );
            assert_eq!(node.status(AFTER_TIMEOUT).last_index, i(0), "{shown}");
        }
    }

    #[test]
    fn a_proposal_to_a_follower_is_refused_with_the_leaders_id() {
        let mut node = follower(3, 2, &[]);
        assert_eq!(
            node.propose(b"x".to_vec(), AFTER_TIMEOUT),
            Err(ProposeError::NotLeader { leader: None })
        );
        step(&mut node, msg(3, 1, 2, heartbeat(0, 1)), AFTER_TIMEOUT);
        assert_eq!(
            node.propose(b"x".to_vec(), AFTER_TIMEOUT),
            Err(ProposeError::NotLeader { leader: Some(n(3)) })
        );
    }
}
