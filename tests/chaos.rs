//! A short chaos campaign on real processes (`regent chaos`): three nodes in network
//! namespaces (loopback and the relay where they are missing), every fault kind once alone and
//! then mixed, and the summary must show no violation (the journal's check included).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_regent");

/// `key=value` from the summary line.
fn field<'a>(summary: &'a str, key: &str) -> &'a str {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {key}= in {summary:?}"))
}

#[test]
fn a_short_campaign_finds_no_violation() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let out = Command::new(BIN)
        // Safety is checked strictly; liveness gets 2 s past the failover bound, for a CI
        // machine busy with other work (the long campaigns run without slack).
        .args([
            "chaos",
            "--seconds",
            "60",
            "--nodes",
            "3",
            "--failover-slack-ms",
            "2000",
        ])
        .arg("--seed")
        .arg(seed.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!("seed {seed}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("chaos: runs="))
        .unwrap_or_else(|| panic!("no summary line; {context}"));
    println!("seed {seed}: {summary}");
    assert!(out.status.success(), "chaos found a violation; {context}");
    assert_eq!(field(summary, "lost"), "0", "{context}");
    assert_eq!(field(summary, "linearizable"), "yes", "{context}");
    assert_eq!(field(summary, "double_writable"), "0", "{context}");
    // One node is nofailover: it votes and replicates but is never writable.
    assert_eq!(field(summary, "nofailover_writable"), "0", "{context}");
    // The masters' side: the client library's Leadership beside every node never let two
    // hosts be writable at once.
    assert_eq!(field(summary, "hosts_double_writable"), "0", "{context}");
    let hosts_active: u64 = field(summary, "hosts_active").parse().unwrap();
    assert!(
        hosts_active >= 3,
        "only {hosts_active} host activations; {context}"
    );
    // Every kind of fault ran at least once, and the clients got work done.
    let faults: u64 = field(summary, "faults").parse().unwrap();
    assert!(faults >= 13, "only {faults} faults; {context}");
    let acked: u64 = field(summary, "acked").parse().unwrap();
    assert!(acked > 1000, "only {acked} acknowledged writes; {context}");
    // The journal: every node's tail holds each acknowledged append once, in one order.
    assert_eq!(field(summary, "journal_ok"), "yes", "{context}");
    let journal_acked: u64 = field(summary, "journal_acked").parse().unwrap();
    assert!(
        journal_acked > 100,
        "only {journal_acked} acknowledged journal appends; {context}"
    );
    // A share of the writes went through followers that relayed them to the leader.
    let forwarded: u64 = field(summary, "forwarded_acked").parse().unwrap();
    assert!(
        forwarded > 50,
        "only {forwarded} writes acknowledged through a relay; {context}"
    );
    for kind in [
        "kill-leader",
        "kill-follower",
        "pause-leader",
        "partition-leader",
        "one-way-from-leader",
        "one-way-to-leader",
        "partial-partition",
        "netem",
        "restart-all",
        "rotate-certs",
        "switchover",
        "maintenance-pause",
    ] {
        assert!(
            stdout.contains(&format!("episode: {kind}")),
            "no {kind} episode; {context}"
        );
    }
    if stdout.contains("on namespaces") {
        assert!(
            stdout.contains("episode: disk-full"),
            "no disk-full episode; {context}"
        );
    }
    // Nothing left behind: no namespace or link of this run survives it.
    let links = Command::new("ip").args(["-o", "link"]).output();
    if let Ok(links) = links {
        let text = String::from_utf8_lossy(&links.stdout);
        let tag = stdout
            .lines()
            .find_map(|l| l.split("tag ").nth(1))
            .map(|t| t.trim().to_string());
        if let Some(tag) = tag {
            assert!(
                !text.contains(&format!("rc{tag}")),
                "links of the run remain: {text}"
            );
        }
    }
}
