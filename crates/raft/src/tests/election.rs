//! Elections beyond the paper's §5, as Ongaro's dissertation describes them: pre-vote (§9.6),
//! check-quorum (§6.2) and leader stickiness (§4.2.3), on which the lease rests.

use super::*;

/// Dissertation §9.6: a pre-election that moves no term.
mod pre_vote {
    use super::*;

    #[test]
    fn follows_the_election_restriction_and_changes_no_term_or_vote() {
        for (last_index, last_term, granted, name) in UP_TO_DATE {
            let mut node = follower(3, 2, &[1, 2, 2]);
            step(
                &mut node,
                msg(2, 1, 3, pre_vote_request(last_index, last_term)),
                AFTER_TIMEOUT,
            );
            assert_eq!(node.status(AFTER_TIMEOUT).term, t(2), "{name}");
            // A grant carries the term it is for; a refusal, the voter's own.
            let answer_term = if granted { 3 } else { 2 };
            assert_eq!(
                node.take_messages(),
                vec![msg(1, 2, answer_term, pre_vote_response(granted))],
                "{name}: sent at once, since it promises nothing durable"
            );
            assert!(node.ready().is_none(), "{name}: nothing to persist");
        }
    }

    #[test]
    fn a_partitioned_node_rejoins_without_deposing_the_leader() {
        // Dissertation §9.6: without pre-vote, a node cut off from the others keeps incrementing
        // its term, and when it returns the higher term forces the leader to step down. With
        // pre-vote it never wins a pre-election while cut off, so its term does not move.
        for (pre_vote, leader_survives) in [(true, true), (false, false)] {
            let config: fn(u64) -> Config = if pre_vote {
                config
            } else {
                config_without_pre_vote
            };
            let mut net = Network::with_logs(3, 0, &[&[], &[], &[]], config);
            net.elect(1);
            let term = net.status(1).term;
            net.isolate(3);
            net.run_ms(1000);
            let cut_off_term = net.status(3).term;
            assert_eq!(
                cut_off_term == term,
                pre_vote,
                "pre_vote {pre_vote}: n3 in {cut_off_term}"
            );
            net.heal();
            net.run_ms(500);
            let s = net.status(1);
            assert_eq!(
                (s.role == Role::Leader && s.term == term),
                leader_survives,
                "pre_vote {pre_vote}: n1 is {} in {}",
                s.role,
                s.term
            );
        }
    }
}

/// Dissertation §6.2: a leader that hears from no majority steps down.
mod check_quorum {
    use super::*;

    #[test]
    fn a_leader_unheard_by_a_majority_for_an_election_timeout_steps_down() {
        // Dissertation §6.2: "a leader steps down if an election timeout elapses without a
        // successful round of heartbeats to a majority of its cluster". Exactly one minimum
        // election timeout after the last answer, and not before; never without check_quorum.
        for check_quorum in [true, false] {
            let config: fn(u64) -> Config = if check_quorum {
                config
            } else {
                |id| Config {
                    check_quorum: false,
                    ..config(id)
                }
            };
            let mut net = Network::with_logs(3, 0, &[&[], &[], &[]], config);
            net.elect(1);
            net.run_ms(25);
            net.isolate(1);
            let last_heard = net
                .delivered
                .iter()
                .filter(|(_, m)| m.to == n(1))
                .map(|(at, _)| *at)
                .max()
                .unwrap();
            let step_down_at = last_heard + ELECTION_MS * MS;
            while net.now < step_down_at - MS {
                net.now += MS;
                net.tick(&[1]);
                assert_eq!(net.status(1).role, Role::Leader, "at {} ms", net.now / MS);
            }
            net.now += MS;
            net.tick(&[1]);
            let expected = if check_quorum {
                Role::Follower
            } else {
                Role::Leader
            };
            assert_eq!(net.status(1).role, expected, "check_quorum {check_quorum}");
            assert_eq!(net.status(1).term, t(1), "stepping down is not a new term");
        }
    }
}

/// Dissertation §4.2.3: no vote within the minimum election timeout of a leader's contact.
mod stickiness {
    use super::*;

    #[test]
    fn a_follower_that_heard_from_its_leader_ignores_vote_requests() {
        // Dissertation §4.2.3: "if a server receives a RequestVote request within the minimum
        // election timeout of hearing from a current leader, it does not update its term or grant
        // its vote." The leader's lease rests on this refusal.
        let mut node = follower(3, 2, &[]);
        let heard = AFTER_TIMEOUT;
        step(&mut node, msg(2, 1, 2, heartbeat(0, 1)), heard);
        persist(&mut node);
        for (name, body) in [
            ("vote", vote_request(0, 0)),
            ("pre-vote", pre_vote_request(0, 0)),
        ] {
            step(&mut node, msg(3, 1, 3, body), heard + ELECTION_MS * MS - 1);
            assert!(
                node.take_messages().is_empty(),
                "{name}: not even a refusal"
            );
            assert!(node.ready().is_none(), "{name}: nothing changed");
            let s = node.status(heard);
            assert_eq!((s.term, s.leader), (t(2), Some(n(2))), "{name}");
        }
        assert!(node.sticky_refuses_votes(heard + ELECTION_MS * MS - 1));
        assert!(!node.sticky_refuses_votes(heard + ELECTION_MS * MS));

        // One minimum election timeout after the last contact the leader may be gone: vote.
        step(
            &mut node,
            msg(3, 1, 3, vote_request(0, 0)),
            heard + ELECTION_MS * MS,
        );
        assert_eq!(persist(&mut node), vec![msg(1, 3, 3, vote_response(true))]);
        assert_eq!(node.status(heard + ELECTION_MS * MS).term, t(3));
    }

    #[test]
    fn a_restarted_node_refuses_votes_for_one_minimum_election_timeout() {
        // It may have answered a heartbeat just before it went down, and a leader's lease counts
        // on that answer.
        let restarted_at = 5000 * MS;
        let node = RaftNode::new(
            config(1),
            restored(3, 2, &[], 0),
            Box::new(SplitMix64::new(1)),
            restarted_at,
        )
        .unwrap();
        assert!(node.sticky_refuses_votes(restarted_at));
        assert!(node.sticky_refuses_votes(restarted_at + ELECTION_MS * MS - 1));
        assert!(!node.sticky_refuses_votes(restarted_at + ELECTION_MS * MS));
    }
}

/// A node beside an unhealthy host holds its campaigns: its timer passes without a campaign,
/// a hand-over to it is ignored, and once let go it campaigns on the next timer.
mod held_campaigns {
    use super::*;

    #[test]
    fn the_timer_and_a_hand_over_start_no_campaign_until_let_go() {
        let mut node = follower(3, 2, &[1, 2]);
        node.hold_campaigns(true);
        node.tick(AFTER_TIMEOUT);
        assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Follower);
        assert!(
            persist(&mut node).is_empty(),
            "no (pre-)vote request while held"
        );
        let next = node.next_deadline();
        assert!(
            next > AFTER_TIMEOUT,
            "the timer is rearmed, not left in the past"
        );
        // A hand-over from the leader of the term is ignored too.
        step(&mut node, msg(2, 1, 2, heartbeat(0, 1)), next);
        step(
            &mut node,
            msg(2, 1, 2, MessageBody::TimeoutNow { round: 1, cause: 0 }),
            next,
        );
        assert_eq!(node.status(next).role, Role::Follower);
        assert!(!persist(&mut node)
            .iter()
            .any(|m| matches!(m.body, MessageBody::RequestVote { .. })));
        // Let go: the next timer starts a pre-vote as usual.
        node.hold_campaigns(false);
        let later = node.next_deadline() + 1;
        node.tick(later);
        assert!(persist(&mut node)
            .iter()
            .any(|m| matches!(m.body, MessageBody::RequestVote { pre_vote: true, .. })));
    }
}
