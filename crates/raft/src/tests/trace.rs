//! Scripted interaction traces, in the manner of etcd raft's `testdata/*.txt`: each script is a
//! list of commands, each followed by `----` and the exact trace it must produce — every
//! message delivered (or dropped by a cut link), in order, one line each, and what the command
//! itself reports. A scenario reads as data; a change in behaviour shows as a changed line.
//!
//! Commands (node ids are numbers; the cluster is a `Network` of three voters):
//!
//! - `campaign <id>`: two minimum election timeouts pass and only `<id>` is ticked.
//! - `heartbeat <id>`: one heartbeat interval passes and only `<id>` is ticked.
//! - `propose <id> <text>`: a proposal on `<id>`; reports its index and term, or the error.
//! - `read <id> <ctx>`: a ReadIndex read on `<id>`; reports the read states it produced.
//! - `transfer <id> <target>`: a leadership transfer on `<id>`; reports the target or error.
//! - `isolate <id>`, `heal`: cut every link of `<id>`, or none.
//! - `status <id>...`: one line per node: role, term, leader, commit and applied index.
//!
//! Every command delivers messages until the network is quiet.

use super::*;

/// Runs `script` on a fresh cluster of three and checks every command's trace. On a mismatch,
/// panics with the whole transcript as it ran, ready to replace the script.
fn check(script: &str) {
    let mut net = Network::new(3);
    let mut transcript = Vec::new();
    let mut expected = Vec::new();
    for block in script.trim().split("\n\n") {
        let (command, output) = block
            .split_once("\n----")
            .expect("a `----` after the command");
        let command = command.trim();
        let output: Vec<&str> = output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        expected.push(format!("{command}\n----\n{}", output.join("\n")));
        let lines = run(&mut net, command);
        transcript.push(format!("{command}\n----\n{}", lines.join("\n")));
    }
    if transcript != expected {
        panic!(
            "the trace differs; as it ran:\n\n{}\n",
            transcript.join("\n\n")
        );
    }
}

/// Runs one command and returns its trace.
fn run(net: &mut Network, command: &str) -> Vec<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let id = |k: usize| -> u64 { words[k].parse().expect("a node id") };
    let (delivered_before, dropped_before) = (net.delivered.len(), net.dropped.len());
    let mut reports = Vec::new();
    let now = net.now;
    match words[0] {
        "campaign" => net.campaign(id(1)),
        "heartbeat" => {
            net.now += HEARTBEAT_MS * MS;
            net.tick(&[id(1)]);
        }
        "propose" => {
            let node = net.nodes.get_mut(&n(id(1))).unwrap();
            reports.push(match node.propose(words[2].as_bytes().to_vec(), now) {
                Ok((index, term)) => format!("proposed at {index} in {term}"),
                Err(e) => format!("refused: {e}"),
            });
            net.deliver();
        }
        "read" => {
            let ctx: u64 = words[2].parse().expect("a read context");
            let node = net.nodes.get_mut(&n(id(1))).unwrap();
            if let Err(e) = node.read_index(ctx, now) {
                reports.push(format!("refused: {e}"));
            }
            net.deliver();
            let node = net.nodes.get_mut(&n(id(1))).unwrap();
            for r in node.take_read_states() {
                reports.push(format!("read {}: {:?}", r.ctx, r.result));
            }
        }
        "transfer" => {
            let node = net.nodes.get_mut(&n(id(1))).unwrap();
            reports.push(match node.transfer_leadership(Some(n(id(2))), now) {
                Ok(target) => format!("transferring to {target}"),
                Err(e) => format!("refused: {e}"),
            });
            net.deliver();
        }
        "isolate" => net.isolate(id(1)),
        "heal" => net.heal(),
        "status" => {
            for k in 1..words.len() {
                let s = net.status(id(k));
                let leader = s.leader.map_or("none".to_string(), |l| l.to_string());
                reports.push(format!(
                    "{} {} {} leader={leader} commit={} applied={}{}",
                    s.id,
                    s.role,
                    s.term,
                    s.commit_index,
                    s.applied_index,
                    if s.writable { " writable" } else { "" }
                ));
            }
        }
        other => panic!("unknown command {other:?}"),
    }
    // The messages of this command, delivered and dropped, in the order the network saw them.
    let mut lines = Vec::new();
    let mut dropped = net.dropped[dropped_before..].iter().peekable();
    for (k, (_, m)) in net.delivered.iter().enumerate().skip(delivered_before) {
        while let Some((_, d)) = dropped.next_if(|(at, _)| *at <= k) {
            lines.push(format!(
                "{}->{} {} {} (dropped)",
                d.from, d.to, d.term, d.body
            ));
        }
        lines.push(format!("{}->{} {} {}", m.from, m.to, m.term, m.body));
    }
    for (_, d) in dropped {
        lines.push(format!(
            "{}->{} {} {} (dropped)",
            d.from, d.to, d.term, d.body
        ));
    }
    lines.extend(reports);
    lines
}

#[test]
fn an_election_then_a_write_committed_and_applied_everywhere() {
    check(
        "
campaign 1
----
n1->n2 t1 PreVote last=i0/t0
n1->n3 t1 PreVote last=i0/t0
n2->n1 t1 PreVoteResp granted=true
n3->n1 t1 PreVoteResp granted=true
n1->n2 t1 RequestVote last=i0/t0
n1->n3 t1 RequestVote last=i0/t0
n2->n1 t1 RequestVoteResp granted=true
n3->n1 t1 RequestVoteResp granted=true
n1->n2 t1 Append prev=i0/t0 n=1 commit=i0 round=1
n1->n3 t1 Append prev=i0/t0 n=1 commit=i0 round=1
n2->n1 t1 AppendResp ok=true match=i1 hint=None round=1
n3->n1 t1 AppendResp ok=true match=i1 hint=None round=1

propose 1 x
----
n1->n2 t1 Append prev=i1/t1 n=1 commit=i1 round=1
n1->n3 t1 Append prev=i1/t1 n=1 commit=i1 round=1
n2->n1 t1 AppendResp ok=true match=i2 hint=None round=1
n3->n1 t1 AppendResp ok=true match=i2 hint=None round=1
proposed at i2 in t1

heartbeat 1
----
n1->n2 t1 Heartbeat commit=i2 round=2
n1->n3 t1 Heartbeat commit=i2 round=2
n2->n1 t1 HeartbeatResp round=2
n3->n1 t1 HeartbeatResp round=2

status 1 2 3
----
n1 leader t1 leader=n1 commit=i2 applied=i2 writable
n2 follower t1 leader=n1 commit=i2 applied=i2
n3 follower t1 leader=n1 commit=i2 applied=i2
",
    );
}

#[test]
fn an_isolated_leader_is_replaced_and_its_lost_write_overwritten() {
    // Check-quorum is on: n1, cut off, steps down on its own at its next tick (quietly), and
    // the new leader's log replaces the entry n1 appended alone.
    check(
        "
campaign 1
----
n1->n2 t1 PreVote last=i0/t0
n1->n3 t1 PreVote last=i0/t0
n2->n1 t1 PreVoteResp granted=true
n3->n1 t1 PreVoteResp granted=true
n1->n2 t1 RequestVote last=i0/t0
n1->n3 t1 RequestVote last=i0/t0
n2->n1 t1 RequestVoteResp granted=true
n3->n1 t1 RequestVoteResp granted=true
n1->n2 t1 Append prev=i0/t0 n=1 commit=i0 round=1
n1->n3 t1 Append prev=i0/t0 n=1 commit=i0 round=1
n2->n1 t1 AppendResp ok=true match=i1 hint=None round=1
n3->n1 t1 AppendResp ok=true match=i1 hint=None round=1

isolate 1
----

propose 1 lost
----
n1->n2 t1 Append prev=i1/t1 n=1 commit=i1 round=1 (dropped)
n1->n3 t1 Append prev=i1/t1 n=1 commit=i1 round=1 (dropped)
proposed at i2 in t1

campaign 2
----
n2->n1 t2 PreVote last=i1/t1 (dropped)
n2->n3 t2 PreVote last=i1/t1
n3->n2 t2 PreVoteResp granted=true
n2->n1 t2 RequestVote last=i1/t1 (dropped)
n2->n3 t2 RequestVote last=i1/t1
n3->n2 t2 RequestVoteResp granted=true
n2->n1 t2 Append prev=i1/t1 n=1 commit=i0 round=1 (dropped)
n2->n3 t2 Append prev=i1/t1 n=1 commit=i0 round=1
n3->n2 t2 AppendResp ok=true match=i2 hint=None round=1

status 1 2 3
----
n1 leader t1 leader=n1 commit=i1 applied=i1
n2 leader t2 leader=n2 commit=i2 applied=i2 writable
n3 follower t2 leader=n2 commit=i0 applied=i0

heal
----

heartbeat 1
----

status 1
----
n1 follower t1 leader=none commit=i1 applied=i1

heartbeat 2
----
n2->n1 t2 Heartbeat commit=i0 round=2
n2->n3 t2 Heartbeat commit=i2 round=2
n1->n2 t2 HeartbeatResp round=2
n3->n2 t2 HeartbeatResp round=2
n2->n1 t2 Append prev=i0/t0 n=2 commit=i2 round=2
n1->n2 t2 AppendResp ok=true match=i2 hint=None round=2

status 1 2 3
----
n1 follower t2 leader=n2 commit=i2 applied=i2
n2 leader t2 leader=n2 commit=i2 applied=i2 writable
n3 follower t2 leader=n2 commit=i2 applied=i2
",
    );
}

#[test]
fn reads_on_the_leader_and_through_it_then_a_leadership_transfer() {
    check(
        "
campaign 1
----
n1->n2 t1 PreVote last=i0/t0
n1->n3 t1 PreVote last=i0/t0
n2->n1 t1 PreVoteResp granted=true
n3->n1 t1 PreVoteResp granted=true
n1->n2 t1 RequestVote last=i0/t0
n1->n3 t1 RequestVote last=i0/t0
n2->n1 t1 RequestVoteResp granted=true
n3->n1 t1 RequestVoteResp granted=true
n1->n2 t1 Append prev=i0/t0 n=1 commit=i0 round=1
n1->n3 t1 Append prev=i0/t0 n=1 commit=i0 round=1
n2->n1 t1 AppendResp ok=true match=i1 hint=None round=1
n3->n1 t1 AppendResp ok=true match=i1 hint=None round=1

read 1 7
----
n1->n2 t1 Heartbeat commit=i1 round=2
n1->n3 t1 Heartbeat commit=i1 round=2
n2->n1 t1 HeartbeatResp round=2
n3->n1 t1 HeartbeatResp round=2
read 7: Ok(LogIndex(1))

read 2 8
----
n2->n1 t1 ReadIndex ctx=8
n1->n2 t1 Heartbeat commit=i1 round=3
n1->n3 t1 Heartbeat commit=i1 round=3
n2->n1 t1 HeartbeatResp round=3
n3->n1 t1 HeartbeatResp round=3
n1->n2 t1 ReadIndexResp ctx=8 index=Some(LogIndex(1))
read 8: Ok(LogIndex(1))

transfer 1 3
----
n1->n3 t1 TimeoutNow round=3
n3->n1 t2 RequestVote last=i1/t1
n3->n2 t2 RequestVote last=i1/t1
n1->n3 t2 RequestVoteResp granted=true
n2->n3 t2 RequestVoteResp granted=true
n3->n1 t2 Append prev=i1/t1 n=1 commit=i1 round=1
n3->n2 t2 Append prev=i1/t1 n=1 commit=i1 round=1
n1->n3 t2 AppendResp ok=true match=i2 hint=None round=1
n2->n3 t2 AppendResp ok=true match=i2 hint=None round=1
transferring to n3

status 1 2 3
----
n1 follower t2 leader=n3 commit=i1 applied=i1
n2 follower t2 leader=n3 commit=i1 applied=i1
n3 leader t2 leader=n3 commit=i2 applied=i2 writable

propose 1 x
----
refused: not the leader; the leader is Some(NodeId(3))

propose 3 y
----
n3->n1 t2 Append prev=i2/t2 n=1 commit=i2 round=1
n3->n2 t2 Append prev=i2/t2 n=1 commit=i2 round=1
n1->n3 t2 AppendResp ok=true match=i3 hint=None round=1
n2->n3 t2 AppendResp ok=true match=i3 hint=None round=1
proposed at i3 in t2
",
    );
}
