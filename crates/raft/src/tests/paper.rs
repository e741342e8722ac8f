//! The Raft paper's rules as tests of the pure core, in the manner of raft-rs's
//! `test_raft_paper.rs`: each module names the section or figure of the extended Raft paper
//! (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm") it checks, and each
//! test asserts the exact messages and states the core produces.

use super::*;

/// §5.1: terms, and what a node does with a message of another term.
mod s5_1_terms {
    use super::*;

    /// Node 1 of {1, 2, 3} in term 3 in the given role, at `AFTER_TIMEOUT`, out of any lease.
    fn node_in_role(role: Role) -> RaftNode {
        match role {
            Role::Follower => follower(3, 3, &[]),
            Role::Candidate => candidate(3, 3, &[]),
            Role::Leader => leader(3, 3, &[]),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_higher_term_makes_the_receiver_a_follower_of_it() {
        // Raft §5.1: "If a server receives a request or response with a higher term, it updates its
        // term to the received value and reverts to follower state." Two deliberate exceptions:
        // pre-votes (dissertation §9.6) never move a term, and a leader does not let a vote request
        // depose it (leader stickiness, dissertation §4.2.3: it is, after all, alive).
        let adopts = true;
        let keeps = false;
        #[rustfmt::skip]
        let cases: Vec<(&str, MessageBody, [bool; 3])> = vec![
            //                                       follower candidate leader
            ("append",             append(0, 0, vec![], 0),             [adopts, adopts, adopts]),
            ("heartbeat",          heartbeat(0, 1),                     [adopts, adopts, adopts]),
            ("vote request",       vote_request(9, 9),                  [adopts, adopts, keeps]),
            ("pre-vote request",   pre_vote_request(9, 9),              [keeps,  keeps,  keeps]),
            ("vote refusal",       vote_response(false),                [adopts, adopts, adopts]),
            ("pre-vote grant",     pre_vote_response(true),             [keeps,  keeps,  keeps]),
            ("pre-vote refusal",   pre_vote_response(false),            [adopts, adopts, adopts]),
            ("append response",    append_ok(0),                        [adopts, adopts, adopts]),
            ("heartbeat response", heartbeat_response(1),               [adopts, adopts, adopts]),
        ];
        for (name, body, expected) in cases {
            for (role, adopt) in [Role::Follower, Role::Candidate, Role::Leader]
                .into_iter()
                .zip(expected)
            {
                let mut node = node_in_role(role);
                let leads = matches!(
                    body,
                    MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. }
                );
                step(&mut node, msg(2, 1, 5, body.clone()), AFTER_TIMEOUT);
                let s = node.status(AFTER_TIMEOUT);
                if adopt {
                    assert_eq!(s.term, t(5), "{role} receiving a {name}");
                    assert_eq!(s.role, Role::Follower, "{role} receiving a {name}");
                    assert_eq!(s.leader, leads.then_some(n(2)), "{role} receiving a {name}");
                } else {
                    assert_eq!((s.term, s.role), (t(3), role), "{role} receiving a {name}");
                }
            }
        }
    }

    #[test]
    fn a_stale_term_is_rejected_with_the_current_term() {
        // Raft §5.1: "If a server receives a request with a stale term number, it rejects the
        // request." The node answers where the answer helps the sender catch up (a deposed leader
        // learns the new term from the heartbeat answer) and otherwise ignores the message.
        let pre_vote_refused = pre_vote_response(false);
        #[rustfmt::skip]
        let cases: Vec<(&str, MessageBody, Option<MessageBody>)> = vec![
            ("append",             append(0, 0, vec![entry(2, 1)], 1), Some(heartbeat_response(0))),
            ("heartbeat",          heartbeat(0, 4),                    Some(heartbeat_response(0))),
            ("pre-vote request",   pre_vote_request(9, 2),             Some(pre_vote_refused)),
            ("vote request",       vote_request(9, 2),                 None),
            ("vote grant",         vote_response(true),                None),
            ("append response",    append_ok(1),                       None),
            ("heartbeat response", heartbeat_response(1),              None),
        ];
        for (name, body, answer) in cases {
            let mut node = follower(3, 3, &[]);
            step(&mut node, msg(2, 1, 2, body), AFTER_TIMEOUT);
            let expected: Vec<Message> = answer.into_iter().map(|b| msg(1, 2, 3, b)).collect();
            assert_eq!(node.take_messages(), expected, "{name}");
            assert!(node.ready().is_none(), "{name}: nothing to persist");
            let s = node.status(AFTER_TIMEOUT);
            assert_eq!(
                (s.role, s.term, s.leader),
                (Role::Follower, t(3), None),
                "{name}"
            );
            assert_eq!(s.last_index, i(0), "{name}: a stale append appends nothing");
        }
    }

    #[test]
    fn a_stale_leader_steps_down_when_answered_with_a_higher_term() {
        // Check-quorum is off so that the isolated leader keeps believing it leads: only the term
        // in the answers to its heartbeats can tell it otherwise.
        let mut net = Network::with_logs(3, 0, &[&[], &[], &[]], |id| Config {
            check_quorum: false,
            ..config(id)
        });
        net.elect(1);
        let old_term = net.status(1).term;
        net.isolate(1);
        let (lost, _) = net
            .nodes
            .get_mut(&n(1))
            .unwrap()
            .propose(b"lost".to_vec(), net.now)
            .unwrap();
        net.deliver();
        net.elect_without(1, 2);
        let new_term = net.status(2).term;
        assert!(new_term > old_term);
        assert_eq!(net.status(1).role, Role::Leader, "n1 cannot know yet");

        net.heal();
        net.now += HEARTBEAT_MS * MS;
        net.tick(&[1]);
        // Its heartbeats were answered with the new term: it stepped down and adopted it.
        let s = net.status(1);
        assert_eq!((s.role, s.term), (Role::Follower, new_term));
        // The new leader's next heartbeat brings n1's log in line: the entry n1 appended alone in
        // the old term, never committed, is gone.
        net.now += HEARTBEAT_MS * MS;
        net.tick(&[2]);
        assert_eq!(net.disk[&n(1)], net.disk[&n(2)]);
        assert_ne!(net.node(1).log_term(lost), Some(old_term));
        assert_eq!(net.status(1).leader, Some(n(2)));
    }
}

/// §5.2: leader election.
mod s5_2_election {
    use super::*;

    #[test]
    fn silence_starts_a_pre_election_after_the_timeout() {
        // §5.2: "If a follower receives no communication over a period of time called the election
        // timeout, then it ... begins an election"; dissertation §9.6: first a pre-vote, for the
        // next term, which changes no term and needs nothing durable.
        let mut node = follower(3, 4, &[1, 4]);
        node.tick(ELECTION_MS * MS - 1);
        assert_eq!(
            node.status(0).role,
            Role::Follower,
            "no timeout below the minimum"
        );
        assert!(node.take_messages().is_empty());

        node.tick(AFTER_TIMEOUT);
        let s = node.status(AFTER_TIMEOUT);
        assert_eq!((s.role, s.term), (Role::PreCandidate, t(4)));
        assert_eq!(
            node.take_messages(),
            vec![
                msg(1, 2, 5, pre_vote_request(2, 4)),
                msg(1, 3, 5, pre_vote_request(2, 4)),
            ]
        );
        let ready = node.ready().expect("the role changed");
        assert_eq!(
            ready.batch.hard_state, None,
            "a pre-vote changes neither term nor vote"
        );
        assert!(ready.persisted_messages.is_empty());
    }

    #[test]
    fn a_won_pre_vote_starts_the_election_once_the_vote_is_durable() {
        // §5.2: "a follower increments its current term and transitions to candidate state. It then
        // votes for itself and issues RequestVote RPCs". The vote for itself must be durable
        // before anyone is asked (Figure 2: persistent state is updated before responding).
        let mut node = follower(3, 4, &[1, 4]);
        node.tick(AFTER_TIMEOUT);
        node.take_messages();
        step(
            &mut node,
            msg(2, 1, 5, pre_vote_response(true)),
            AFTER_TIMEOUT,
        );
        let s = node.status(AFTER_TIMEOUT);
        assert_eq!((s.role, s.term), (Role::Candidate, t(5)));
        assert!(
            node.take_messages().is_empty(),
            "nothing before the vote is durable"
        );
        let ready = node.ready().expect("a term and a vote to persist");
        assert!(ready.messages.is_empty());
        assert_eq!(
            ready.batch.hard_state,
            Some(HardState {
                term: t(5),
                vote: Some(n(1)),
                commit: i(0)
            })
        );
        assert_eq!(
            ready.persisted_messages,
            vec![
                msg(1, 2, 5, vote_request(2, 4)),
                msg(1, 3, 5, vote_request(2, 4)),
            ]
        );
    }

    #[test]
    fn the_timeout_is_random_in_min_to_twice_min() {
        // §5.2: "election timeouts are chosen randomly from a fixed interval (e.g., 150–300ms)".
        // Here [min, 2·min): never before min, always before 2·min, and spread out.
        let min = ELECTION_MS * MS;
        let mut fired_at_ms = BTreeSet::new();
        for seed in 1..=64 {
            let mut node = RaftNode::new(
                config(1),
                restored(3, 1, &[], 0),
                Box::new(SplitMix64::new(seed)),
                0,
            )
            .unwrap();
            node.tick(min - 1);
            assert_eq!(node.status(0).role, Role::Follower, "seed {seed}");
            let mut ms = ELECTION_MS;
            while node.status(0).role == Role::Follower {
                node.tick(ms * MS);
                ms += 1;
            }
            let fired = ms - 1;
            assert!(
                (ELECTION_MS..=2 * ELECTION_MS).contains(&fired),
                "seed {seed}: {fired} ms"
            );
            fired_at_ms.insert(fired);

            let mut node = RaftNode::new(
                config(1),
                restored(3, 1, &[], 0),
                Box::new(SplitMix64::new(seed)),
                0,
            )
            .unwrap();
            node.tick(2 * min - 1);
            assert_eq!(node.status(0).role, Role::PreCandidate, "seed {seed}");
        }
        assert!(
            fired_at_ms.len() >= 30,
            "64 seeds drew only {} distinct timeouts",
            fired_at_ms.len()
        );
    }

    #[test]
    fn a_majority_elects_a_refusing_majority_defeats_else_wait() {
        // §5.2: "A candidate wins an election if it receives votes from a majority of the servers
        // in the full cluster for the same term." Once a majority refused, it cannot win: it
        // returns to follower (in the same term) and waits for a timeout.
        type Answers = &'static [(u64, bool)];
        #[rustfmt::skip]
        let cases: Vec<(u64, Answers, Role)> = vec![
            // voters  answers (voter, granted)                     outcome
            (3, &[],                                                 Role::Candidate),
            (3, &[(2, true)],                                        Role::Leader),
            (3, &[(2, false)],                                       Role::Candidate),
            (3, &[(2, false), (3, false)],                           Role::Follower),
            (3, &[(2, false), (3, true)],                            Role::Leader),
            (5, &[(2, true)],                                        Role::Candidate),
            (5, &[(2, true), (3, true)],                             Role::Leader),
            (5, &[(2, true), (3, false), (4, false)],                Role::Candidate),
            (5, &[(2, false), (3, false), (4, false)],               Role::Follower),
            (5, &[(2, true), (3, false), (4, false), (5, true)],     Role::Leader),
        ];
        for (voters, answers, outcome) in cases {
            let mut node = candidate(voters, 2, &[]);
            for &(voter, granted) in answers {
                step(
                    &mut node,
                    msg(voter, 1, 2, vote_response(granted)),
                    AFTER_TIMEOUT,
                );
            }
            let s = node.status(AFTER_TIMEOUT);
            assert_eq!(
                (s.role, s.term),
                (outcome, t(2)),
                "{voters} voters, {answers:?}"
            );
        }

        // A lone voter is its own majority — once its vote is durable, like any vote (Figure 2:
        // votedFor is persistent state, updated on stable storage before responding; a lone
        // voter leading a term it had not made durable would lead it again after a crash,
        // seed 8239 of the simulator with the two-voter removal allowed).
        let mut node = boot(config(1), restored(1, 0, &[], 0));
        node.tick(AFTER_TIMEOUT);
        assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Candidate);
        let ready = node.ready().expect("the term and the vote to persist");
        assert_eq!(
            ready.batch.hard_state.map(|hs| (hs.term, hs.vote)),
            Some((t(1), Some(n(1))))
        );
        assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Candidate);
        node.advance(ready.number);
        assert_eq!(node.status(AFTER_TIMEOUT).role, Role::Leader);
    }

    #[test]
    fn a_timed_out_candidate_tries_the_next_term() {
        // §5.2: "each candidate will time out and start a new election by incrementing its term".
        let mut node = candidate(3, 2, &[]);
        node.tick(2 * AFTER_TIMEOUT);
        let s = node.status(2 * AFTER_TIMEOUT);
        assert_eq!((s.role, s.term), (Role::Candidate, t(3)));
        assert_eq!(
            persist(&mut node),
            vec![
                msg(1, 2, 3, vote_request(0, 0)),
                msg(1, 3, 3, vote_request(0, 0))
            ]
        );
    }

    #[test]
    fn a_candidate_follows_a_leader_of_its_term() {
        // §5.2: "If the leader's term ... is at least as large as the candidate's current term,
        // then the candidate recognizes the leader as legitimate and returns to follower state."
        let mut node = candidate(3, 2, &[]);
        step(
            &mut node,
            msg(3, 1, 2, append(0, 0, vec![entry(2, 1)], 0)),
            AFTER_TIMEOUT,
        );
        let s = node.status(AFTER_TIMEOUT);
        assert_eq!(
            (s.role, s.term, s.leader),
            (Role::Follower, t(2), Some(n(3)))
        );
        assert_eq!(persist(&mut node), vec![msg(1, 3, 2, append_ok(1))]);
    }

    #[test]
    fn a_split_vote_elects_no_one_and_a_later_election_does() {
        // §5.2: "votes could be split so that no candidate obtains a majority. When this happens,
        // each candidate will time out and start a new election". All three time out together,
        // vote for themselves and refuse each other.
        let mut net = Network::with_logs(3, 0, &[&[], &[], &[]], config_without_pre_vote);
        net.now = AFTER_TIMEOUT;
        net.tick(&[1, 2, 3]);
        assert!(net.leaders().is_empty());
        for id in 1..=3 {
            let s = net.status(id);
            assert_eq!((s.term, s.leader), (t(1), None), "n{id}");
            assert_ne!(s.role, Role::Leader, "n{id}");
        }
        // Random timeouts break the tie.
        let mut waited_ms = 0;
        while net.leaders().is_empty() {
            net.run_ms(1);
            waited_ms += 1;
            assert!(waited_ms < 2000, "no leader after 2 s");
        }
        assert!(net.status(net.leaders()[0].0).term > t(1));
    }

    #[test]
    fn one_vote_per_term() {
        // §5.2: "Each server will vote for at most one candidate in a given term, on a
        // first-come-first-served basis." Asking again in the same term gets the same answer.
        let mut node = follower(3, 1, &[]);
        step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
        assert_eq!(persist(&mut node), vec![msg(1, 2, 2, vote_response(true))]);
        step(&mut node, msg(3, 1, 2, vote_request(5, 1)), AFTER_TIMEOUT);
        assert_eq!(persist(&mut node), vec![msg(1, 3, 2, vote_response(false))]);
        step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
        assert_eq!(persist(&mut node), vec![msg(1, 2, 2, vote_response(true))]);

        // The vote survives a restart: it was durable before it was announced.
        let state = RestoredState {
            hard_state: HardState {
                term: t(2),
                vote: Some(n(2)),
                commit: i(0),
            },
            ..restored(3, 2, &[], 0)
        };
        let mut node = boot(config(1), state);
        step(&mut node, msg(3, 1, 2, vote_request(5, 1)), AFTER_TIMEOUT);
        assert_eq!(persist(&mut node), vec![msg(1, 3, 2, vote_response(false))]);
    }
}

/// §5.3: log replication.
mod s5_3_replication {
    use super::*;

    #[test]
    fn a_mismatched_append_is_rejected_with_where_to_resume() {
        // §5.3: "If the follower does not find an entry in its log with the same index and term,
        // then it refuses the new entries." The answer names the follower's term at the rejected
        // index and the first index of that term (or its last index + 1 when its log is shorter),
        // so the leader can skip a whole term per round trip.
        #[rustfmt::skip]
        let cases: Vec<(u64, u64, MessageBody)> = vec![
            // prev index, prev term   answer (follower's log is [1, 1, 2, 2, 2])
            (5, 3,                     append_rejected(5, Some(2), 3)),
            (4, 3,                     append_rejected(4, Some(2), 3)),
            (2, 2,                     append_rejected(2, Some(1), 1)),
            (7, 3,                     append_rejected(7, None, 6)),
            (5, 2,                     append_ok(5)),
            (0, 0,                     append_ok(0)),
        ];
        for (prev_index, prev_term, answer) in cases {
            let mut node = follower(3, 3, &[1, 1, 2, 2, 2]);
            step(
                &mut node,
                msg(2, 1, 3, append(prev_index, prev_term, vec![], 0)),
                AFTER_TIMEOUT,
            );
            assert_eq!(
                node.take_messages(),
                vec![msg(1, 2, 3, answer)],
                "prev ({prev_index}, {prev_term})"
            );
            assert_eq!(
                node.status(AFTER_TIMEOUT).last_index,
                i(5),
                "nothing removed"
            );
        }
    }

    /// Figure 7: the leader of term 8 and the logs its followers might hold. Indexes 1..=3 are
    /// committed everywhere.
    const FIGURE_7_LEADER: [u64; 10] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];

    #[test]
    fn figure_7_every_follower_ends_with_the_leaders_log() {
        // §5.3: "the leader handles inconsistencies by forcing the followers' logs to duplicate its
        // own." Each case is a cluster of three: n1 holds the leader's log, n2 the follower's log
        // from the figure, and n3 a copy of the leader's log. All are in term 7 and n1 campaigns.
        // Followers (c) and (d) hold logs more up to date than the leader's and refuse their votes
        // (§5.4.1); n3 votes for n1 in every case, which is the majority that elects the leader of
        // term 8 in the figure. n1 appends its term-8 no-op at index 11.
        //
        // The last two columns are what the leader must do: where the follower's storage truncates
        // its log (its extra, uncommitted entries), and how many appends reach it (with conflict
        // hints, one round trip per conflicting term rather than per entry).
        #[rustfmt::skip]
        let cases: Vec<(&str, &[u64], Option<u64>, usize)> = vec![
            ("(a)", &[1, 1, 1, 4, 4, 5, 5, 6, 6],             None,     2),
            ("(b)", &[1, 1, 1, 4],                            None,     2),
            ("(c)", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],       Some(11), 1),
            ("(d)", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],    Some(11), 1),
            ("(e)", &[1, 1, 1, 4, 4, 4, 4],                   Some(6),  3),
            ("(f)", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],       Some(4),  3),
        ];
        let mut expected_log = FIGURE_7_LEADER.to_vec();
        expected_log.push(8);
        for (name, follower_log, truncated_from, appends) in cases {
            let mut net = Network::with_logs(
                3,
                7,
                &[&FIGURE_7_LEADER[..], follower_log, &FIGURE_7_LEADER[..]],
                config,
            );
            net.elect(1);
            assert_eq!(net.status(1).term, t(8), "{name}");
            assert_eq!(net.log_terms(2), expected_log, "{name}");
            assert_eq!(
                net.disk[&n(2)],
                net.disk[&n(1)],
                "{name}: the very same entries"
            );
            let truncations: Vec<_> = net
                .truncations
                .iter()
                .filter(|(id, _)| *id == n(2))
                .map(|(_, from)| from.0)
                .collect();
            assert_eq!(
                truncations,
                truncated_from.into_iter().collect::<Vec<_>>(),
                "{name}"
            );
            assert_eq!(net.appends_delivered(1, 2), appends, "{name}");
            assert!(appends <= 4, "{name}");

            // The next heartbeat tells everyone that the whole log, no-op included, is committed.
            net.now += HEARTBEAT_MS * MS;
            net.tick(&[1]);
            for id in 1..=3 {
                let s = net.status(id);
                assert_eq!(
                    (s.commit_index, s.applied_index),
                    (i(11), i(11)),
                    "{name}: n{id}"
                );
            }
        }
    }

    #[test]
    fn conflict_hints_skip_a_whole_term_per_round_trip() {
        // A follower with 100 entries of two terms the leader never had: a leader backing up one
        // entry per rejection would need 100 round trips; with hints it needs one per term.
        let mut follower_log = vec![1, 1, 1];
        follower_log.extend([2; 40]);
        follower_log.extend([3; 60]);
        let mut leader_log = vec![1, 1, 1];
        leader_log.extend([5; 30]);
        leader_log.extend([6; 30]);
        let mut net = Network::with_logs(
            3,
            6,
            &[&leader_log[..], &follower_log[..], &leader_log[..]],
            config,
        );
        net.elect(1);
        assert_eq!(net.disk[&n(2)], net.disk[&n(1)]);
        assert_eq!(
            net.status(2).last_index,
            i(64),
            "its 100 entries after index 3 replaced by the leader's 60 and the no-op"
        );
        assert_eq!(net.truncations, vec![(n(2), i(4))]);
        assert_eq!(net.appends_delivered(1, 2), 3);
    }

    #[test]
    fn an_entry_commits_once_a_majority_stores_it() {
        // §5.3: "A log entry is committed once the leader that created the entry has replicated it
        // on a majority of the servers". The leader's no-op is at 1, the proposal at 2.
        #[rustfmt::skip]
        let cases: Vec<(u64, &[u64], bool)> = vec![
            // voters  followers that store entry 2   committed
            (1, &[],                                   true),
            (3, &[],                                   false),
            (3, &[2],                                  true),
            (3, &[3],                                  true),
            (5, &[2],                                  false),
            (5, &[2, 3],                               true),
            (5, &[2, 3, 4, 5],                         true),
        ];
        for (voters, acknowledging, committed) in cases {
            let mut node = leader(voters, 2, &[]);
            let (index, _) = node.propose(b"x".to_vec(), AFTER_TIMEOUT).unwrap();
            assert_eq!(index, i(2));
            persist(&mut node);
            for &id in acknowledging {
                step(&mut node, msg(id, 1, 2, append_ok(2)), AFTER_TIMEOUT);
            }
            let expected = if committed { i(2) } else { i(0) };
            assert_eq!(
                node.status(AFTER_TIMEOUT).commit_index,
                expected,
                "{voters} voters, stored on {acknowledging:?}"
            );
        }
    }

    #[test]
    fn a_follower_commits_only_what_it_holds() {
        // Figure 2, AppendEntries receiver: "If leaderCommit > commitIndex, set commitIndex =
        // min(leaderCommit, index of last new entry)".
        let mut node = follower(3, 2, &[]);
        step(
            &mut node,
            msg(2, 1, 2, append(0, 0, vec![entry(1, 1), entry(2, 2)], 5)),
            AFTER_TIMEOUT,
        );
        assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(2));
        persist(&mut node);
        assert_eq!(node.status(AFTER_TIMEOUT).applied_index, i(2));
        // A heartbeat's commit index is capped by what the follower holds as well.
        step(&mut node, msg(2, 1, 2, heartbeat(9, 2)), AFTER_TIMEOUT);
        assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(2));
        assert_eq!(
            node.take_messages(),
            vec![msg(1, 2, 2, heartbeat_response(2))]
        );
    }

    #[test]
    fn proposals_apply_in_the_same_order_everywhere() {
        let mut net = Network::new(3);
        net.elect(1);
        let mut proposed = Vec::new();
        for k in 0..5u8 {
            let node = net.nodes.get_mut(&n(1)).unwrap();
            proposed.push(node.propose(vec![k], net.now).unwrap());
            net.deliver();
        }
        assert_eq!(
            proposed.iter().map(|p| p.0 .0).collect::<Vec<_>>(),
            [2, 3, 4, 5, 6]
        );
        net.now += HEARTBEAT_MS * MS;
        net.tick(&[1]);
        for id in 1..=3 {
            let s = net.status(id);
            assert_eq!((s.commit_index, s.applied_index), (i(6), i(6)), "n{id}");
        }
        // The network checked on every write that all nodes applied the same entry at each index.
        let applied: Vec<_> = net.applied.values().map(|e| e.payload.clone()).collect();
        let mut expected = vec![EntryPayload::Noop];
        expected.extend((0..5u8).map(|k| EntryPayload::Normal(vec![k])));
        assert_eq!(applied, expected);
    }

    #[test]
    fn a_stale_or_duplicate_append_never_truncates_matching_entries() {
        // Figure 2: "If an existing entry conflicts with a new one (same index but different
        // terms), delete the existing entry and all that follow it" — only then. An older, shorter
        // append delivered late must not cut the entries a newer append brought (openraft had this
        // bug).
        let mut node = follower(3, 2, &[1, 1]);
        let long = msg(
            2,
            1,
            2,
            append(2, 1, vec![entry(2, 3), entry(2, 4), entry(2, 5)], 4),
        );
        let short = msg(2, 1, 2, append(2, 1, vec![entry(2, 3)], 3));
        step(&mut node, long.clone(), AFTER_TIMEOUT);
        assert_eq!(persist(&mut node), vec![msg(1, 2, 2, append_ok(5))]);
        assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(4));

        for (name, m, answer) in [
            // Entries up to the commit index match the leader's log (leader completeness), so an
            // append that ends before it is acknowledged up to the commit index.
            ("an older, shorter append", short, append_ok(4)),
            ("a duplicate", long, append_ok(5)),
            (
                "an append from before the commit index",
                msg(2, 1, 2, append(0, 0, vec![entry(1, 1)], 1)),
                append_ok(4),
            ),
        ] {
            step(&mut node, m, AFTER_TIMEOUT);
            // Answered at once: it acknowledges only what is already durable.
            assert_eq!(node.take_messages(), vec![msg(1, 2, 2, answer)], "{name}");
            assert!(
                node.ready().is_none(),
                "{name}: nothing to truncate, append or commit"
            );
            let s = node.status(AFTER_TIMEOUT);
            assert_eq!((s.last_index, s.commit_index), (i(5), i(4)), "{name}");
            assert_eq!(node.log_term(i(5)), Some(t(2)), "{name}");
        }
    }
}

/// §5.4.1: a vote only for a log at least as up to date as the voter's.
mod s5_4_1_election_restriction {
    use super::*;

    #[test]
    fn a_vote_only_for_a_log_at_least_as_up_to_date() {
        for (last_index, last_term, granted, name) in UP_TO_DATE {
            let mut node = follower(3, 2, &[1, 2, 2]);
            step(
                &mut node,
                msg(2, 1, 3, vote_request(last_index, last_term)),
                AFTER_TIMEOUT,
            );
            // The term is adopted either way (§5.1); the vote only when granted.
            assert_eq!(node.status(AFTER_TIMEOUT).term, t(3), "{name}");
            let ready = node.ready().expect("a new term to persist");
            assert_eq!(
                ready.batch.hard_state.map(|hs| (hs.term, hs.vote)),
                Some((t(3), granted.then_some(n(2)))),
                "{name}"
            );
            assert!(
                ready.messages.is_empty(),
                "{name}: the answer waits for the new term"
            );
            assert_eq!(
                ready.persisted_messages,
                vec![msg(1, 2, 3, vote_response(granted))],
                "{name}"
            );
        }
    }
}

/// §5.4.2: committing entries from previous terms.
mod s5_4_2_commitment {
    use super::*;

    #[test]
    fn figure_8_an_old_entry_commits_only_with_one_of_the_new_term() {
        // Figure 8 (c): S1 leads term 4 with [1, 2]; S2 holds [1, 2]; S3 and S4 hold [1]; S5, which
        // led term 3, holds [1, 3]. S1 replicates its entry of term 2 to S3 and S4: it is then on a
        // majority, but S5 could still be elected (by S2, S3 and S4, whose last term 2 < 3) and
        // overwrite it, as in (d). So S1 must not count replicas of index 2; it commits index 2
        // only with its own no-op at index 3 (e). One entry per append makes the two arrive
        // separately. S2 and S5 are cut off: S1 is elected by S3 and S4.
        let logs: [&[u64]; 5] = [&[1, 2], &[1, 2], &[1], &[1], &[1, 3]];
        let mut net = Network::from_nodes(
            (1..=5)
                .map(|id| {
                    let config = Config {
                        append_entries_max: 1,
                        ..config(id)
                    };
                    (config, restored(5, 3, logs[id as usize - 1], 1))
                })
                .collect(),
        );
        net.isolate(2);
        net.isolate(5);
        net.now += AFTER_TIMEOUT;
        net.nodes.get_mut(&n(1)).unwrap().tick(net.now);

        let holding = |net: &Network, index: u64, term: u64| {
            net.disk
                .values()
                .filter(|log| log.get(index as usize - 1).map(|e| e.term) == Some(t(term)))
                .count()
        };
        let mut seen_figure_8c = false;
        net.deliver_checking(|net| {
            let leader = net.status(1);
            if leader.role != Role::Leader {
                return;
            }
            assert_eq!(leader.term, t(4));
            let old_on_majority = holding(net, 2, 2) >= 3;
            let noop_on_majority = holding(net, 3, 4) >= 3;
            if old_on_majority && !noop_on_majority {
                seen_figure_8c = true;
                assert_eq!(
                    leader.commit_index,
                    i(1),
                    "index 2 committed by counting replicas"
                );
            }
            if leader.commit_index > i(1) {
                assert!(
                    noop_on_majority,
                    "committed {} without the no-op",
                    leader.commit_index
                );
            }
        });
        assert!(seen_figure_8c, "the scenario never reached figure 8 (c)");
        assert_eq!(net.status(1).commit_index, i(3), "committed with the no-op");
        assert_eq!(net.log_terms(3), [1, 2, 4]);
        assert_eq!(net.log_terms(4), [1, 2, 4]);
    }
}

/// Figure 2: persistent state is updated on stable storage before responding; nothing is
/// promised before it is durable.
mod figure_2_durability {
    use super::*;

    #[test]
    fn a_vote_is_announced_only_once_durable() {
        let mut node = follower(3, 1, &[]);
        step(&mut node, msg(2, 1, 2, vote_request(0, 0)), AFTER_TIMEOUT);
        assert!(node.take_messages().is_empty());
        let ready = node.ready().unwrap();
        assert!(ready.messages.is_empty());
        assert_eq!(
            ready.batch.hard_state,
            Some(HardState {
                term: t(2),
                vote: Some(n(2)),
                commit: i(0)
            })
        );
        assert_eq!(
            ready.persisted_messages,
            vec![msg(1, 2, 2, vote_response(true))]
        );
        // While that write is outstanding, nothing else goes out either: a heartbeat of the new
        // term is answered only after the term is durable.
        step(&mut node, msg(2, 1, 2, heartbeat(0, 1)), AFTER_TIMEOUT);
        assert!(node.take_messages().is_empty());
        node.advance(ready.number);
        assert_eq!(
            persist(&mut node),
            vec![msg(1, 2, 2, heartbeat_response(1))]
        );
    }

    #[test]
    fn an_append_is_acknowledged_only_once_durable() {
        let mut node = follower(3, 2, &[1]);
        let m = msg(2, 1, 2, append(1, 1, vec![entry(2, 2), entry(2, 3)], 0));
        step(&mut node, m.clone(), AFTER_TIMEOUT);
        assert!(node.take_messages().is_empty());
        let ready = node.ready().unwrap();
        assert_eq!(ready.batch.entries, vec![entry(2, 2), entry(2, 3)]);
        assert!(ready.messages.is_empty());
        assert_eq!(ready.persisted_messages, vec![msg(1, 2, 2, append_ok(3))]);
        node.advance(ready.number);
        assert_eq!(node.persisted_index(), i(3));
        // The same append again acknowledges only what is durable: no need to wait.
        step(&mut node, m, AFTER_TIMEOUT);
        assert_eq!(node.take_messages(), vec![msg(1, 2, 2, append_ok(3))]);
        // A rejection promises nothing and goes out at once.
        step(
            &mut node,
            msg(2, 1, 2, append(7, 2, vec![], 0)),
            AFTER_TIMEOUT,
        );
        assert_eq!(
            node.take_messages(),
            vec![msg(1, 2, 2, append_rejected(7, None, 4))]
        );
    }

    #[test]
    fn a_leader_counts_its_own_entry_only_once_durable() {
        let mut node = leader(3, 2, &[]);
        step(&mut node, msg(2, 1, 2, append_ok(1)), AFTER_TIMEOUT);
        step(&mut node, msg(3, 1, 2, append_ok(1)), AFTER_TIMEOUT);
        persist(&mut node);
        assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(1), "the no-op");

        // The leader may send its new entry before writing it (dissertation §10.2.1)...
        let (index, term) = node.propose(b"t2i2".to_vec(), AFTER_TIMEOUT).unwrap();
        assert_eq!((index, term), (i(2), t(2)));
        assert_eq!(
            node.take_messages(),
            vec![
                msg(1, 2, 2, append(1, 2, vec![entry(2, 2)], 1)),
                msg(1, 3, 2, append(1, 2, vec![entry(2, 2)], 1)),
            ]
        );
        // ...but one follower's copy and its own unwritten one are not a majority.
        step(&mut node, msg(2, 1, 2, append_ok(2)), AFTER_TIMEOUT);
        assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(1));
        let ready = node.ready().unwrap();
        assert_eq!(ready.batch.entries, vec![entry(2, 2)]);
        node.advance(ready.number);
        assert_eq!(node.status(AFTER_TIMEOUT).commit_index, i(2));
    }
}
