//! Operating regent: the systemd units, sd_notify, the hand-over on SIGTERM, switchover.

use crate::support::{regent_at, voters, Cluster, BIN, TEST_SETTINGS};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ELECTION: Duration = Duration::from_secs(20);

#[test]
fn the_unit_files_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing in CI: .ci/run must install systemd"
        );
        eprintln!("SKIPPED: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (unit, name) in [
        ("systemd/regent.service", "regent.service"),
        ("systemd/regent@.service", "regent@demo.service"),
    ] {
        // The unit names /usr/bin/regent; verify it against the binary under test.
        let text = std::fs::read_to_string(unit)
            .unwrap()
            .replace("/usr/bin/regent", BIN);
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
    }
    let unit = std::fs::read_to_string("systemd/regent.service").unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=",
        "Restart=on-failure",
        "User=",
        "Group=",
        "StateDirectory=regent",
        "RuntimeDirectory=regent",
        "ConfigurationDirectory=regent",
        "ExecReload=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "LimitNOFILE=",
        "TimeoutStopSec=",
    ] {
        assert!(unit.contains(line), "regent.service lacks {line}");
    }
}

/// Datagrams received on a test-owned NOTIFY_SOCKET, with their arrival times.
fn receive_all(socket: &UnixDatagram, until: Instant) -> Vec<(Instant, String)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            ));
        }
    }
    got
}

/// The watchdog period the test gives the daemon (`$WATCHDOG_USEC`): systemd's contract is a
/// `WATCHDOG=1` at least this often; regent pings at half of it.
const WATCHDOG: Duration = Duration::from_secs(3);

#[test]
fn sd_notify_ready_status_watchdog_stopping() {
    let mut c = Cluster::init(1, "notify", TEST_SETTINGS);
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    // Only how often the receiving loops look at the clock: a quiet socket is not a verdict.
    notify
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&c.nodes[0].config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", WATCHDOG.as_micros().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // READY=1 comes only once the daemon serves: its socket answers at once.
    let started = Instant::now();
    let mut before_ready = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        if let Ok(n) = notify.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(!text.contains("STOPPING"), "{text}");
            if text.contains("READY=1") {
                break;
            }
            before_ready.push(text);
        }
        assert!(started.elapsed() < ELECTION, "no READY=1");
    }
    assert!(
        c.status(1).is_some(),
        "READY=1 was sent before the socket answered"
    );
    // Watchdog pings over a window of two and a half periods: systemd's contract is one at
    // least every WATCHDOG_USEC, so at least two in the window and never a gap of a whole
    // period; regent pings every half period, never faster, so a flood would show as more
    // than twice the expected five.
    let window = WATCHDOG * 5 / 2;
    let got = receive_all(&notify, Instant::now() + window);
    let dogs: Vec<Instant> = got
        .iter()
        .filter(|(_, t)| t.contains("WATCHDOG=1"))
        .map(|(at, _)| *at)
        .collect();
    assert!(
        (2..=10).contains(&dogs.len()),
        "{} watchdog pings in {window:?} with WATCHDOG_USEC {WATCHDOG:?}",
        dogs.len()
    );
    let gaps: Vec<Duration> = dogs.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|&gap| gap < WATCHDOG),
        "watchdog pings a whole period apart: {gaps:?}"
    );
    // The STATUS line on becoming leader (the election may end before or after READY=1, and
    // on a busy machine after the window: wait for it).
    let mut said: Vec<String> = before_ready;
    said.extend(got.into_iter().map(|(_, t)| t));
    let started = Instant::now();
    while !said
        .iter()
        .any(|t| t.starts_with("STATUS=") && t.contains("leader in term"))
    {
        assert!(
            started.elapsed() < ELECTION,
            "no STATUS on becoming leader: {said:?}"
        );
        said.extend(
            receive_all(&notify, Instant::now() + Duration::from_millis(100))
                .into_iter()
                .map(|(_, t)| t),
        );
    }
    // SIGTERM: STOPPING=1, then a clean exit.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let mut said = Vec::new();
    while !said.iter().any(|t: &String| t.contains("STOPPING=1")) {
        assert!(started.elapsed() < ELECTION, "no STOPPING=1: {said:?}");
        said.extend(
            receive_all(&notify, Instant::now() + Duration::from_millis(100))
                .into_iter()
                .map(|(_, t)| t),
        );
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    c.kill(1);
}

/// The role each node's log reports last, and whether any node campaigned (an election).
fn campaigned_after(c: &Cluster, marker_len: &[usize]) -> bool {
    c.nodes.iter().zip(marker_len).any(|(n, &from)| {
        let logs = n.logs();
        logs.get(from..).unwrap_or("").contains("role=PreCandidate")
    })
}

#[test]
fn sigterm_on_the_leader_hands_over_without_an_election() {
    // No node may campaign during the hand-over: with the default 500 ms election timeout a
    // busy machine that delays the new leader's first heartbeat that long would start a
    // pre-vote that is the machine's doing, not the hand-over's. A longer timeout leaves the
    // proof intact (a failed hand-over still ends in an election, seconds later).
    let settings = format!("{TEST_SETTINGS}timing:\n  election_timeout_min_ms: 2000\n");
    let mut c = Cluster::init(3, "handover", &settings);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let term = c.status(leader).unwrap()["term"].as_u64().unwrap();
    // Every node follows this leader first (a node that started late might still campaign on
    // its own, which would not be the hand-over's doing).
    let started = Instant::now();
    while !(1..=3).all(|id| {
        c.status(id)
            .is_some_and(|s| s["leader_id"].as_u64() == Some(leader))
    }) {
        assert!(
            started.elapsed() < ELECTION,
            "not every node follows n{leader}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let marks: Vec<usize> = c.nodes.iter().map(|n| n.logs().len()).collect();
    let stopped_at = Instant::now();
    assert_eq!(c.stop(leader), Some(0));
    let (new, took) = c.wait_writable_leader(ELECTION);
    eprintln!(
        "hand-over on SIGTERM: writable after {:?}",
        stopped_at.elapsed().min(took)
    );
    assert_ne!(new, leader);
    let new_term = c.status(new).unwrap()["term"].as_u64().unwrap();
    assert_eq!(new_term, term + 1, "a hand-over takes exactly one term");
    assert!(
        c.nodes[(leader - 1) as usize]
            .logs()
            .contains("handed leadership over"),
        "the old leader did not report the hand-over:\n{}",
        c.all_logs()
    );
    assert!(
        !campaigned_after(&c, &marks),
        "a node ran a pre-vote campaign (an election, not a hand-over):\n{}",
        c.all_logs()
    );
}

#[test]
fn switchover_under_a_steady_write_load_loses_no_write() {
    let mut c = Cluster::init(3, "switch", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let target = if leader == 3 { 1 } else { leader + 1 };
    let writer = crate::support::Writer::start(&c);
    writer.wait_acked(10, ELECTION);
    let out = Command::new(BIN)
        .args(["switchover", "--socket"])
        .arg(&c.nodes[(leader - 1) as usize].socket)
        .args(["--to", &target.to_string()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("writes paused"), "{said}");
    eprintln!("{said}");
    // Writes go on after the switchover.
    writer.wait_acked(writer.acked() + 10, ELECTION);
    let (acked, failed) = writer.stop();
    assert_eq!(failed, 0, "writes failed during the switchover");
    let (now_leader, _) = c.wait_writable_leader(ELECTION);
    assert_eq!(now_leader, target);
    crate::support::assert_all_readable(&c, now_leader, &acked);
    // A switchover asked of a follower that may not forward it names the leader.
    let follower = (1..=3).find(|&id| id != target).unwrap();
    let out = Command::new(BIN)
        .args(["switchover", "--no-forward", "--socket"])
        .arg(&c.nodes[(follower - 1) as usize].socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("the leader is node"));
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let mut c = Cluster::init(3, "metrics", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    for i in 0..20 {
        c.put_anywhere(&format!("m{i}"), b"v", ELECTION);
    }
    let answer = crate::support::http(
        &c.nodes[(leader - 1) as usize].socket,
        "GET",
        "/metrics",
        b"",
    )
    .unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.headers["content-type"].starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(answer.body).unwrap();
    for name in [
        "regent_role{role=\"leader\"} 1",
        "regent_writable 1",
        "regent_term ",
        "regent_commit_index ",
        "regent_fsync_duration_seconds_bucket{le=\"+Inf\"}",
        "regent_peer_up{peer=",
        "regent_certificate_expiry_seconds ",
        "regent_lease_remaining_seconds ",
        "regent_leader_changes_total ",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .unwrap()
    };
    // Every write went through the leader (a retry may add a few).
    assert!(value("regent_proposals_total") >= 20.0, "{text}");
    assert!(
        value("regent_proposal_duration_seconds_count") >= 20.0,
        "{text}"
    );
    assert!(
        value("regent_fsync_duration_seconds_count") >= 20.0 / 64.0,
        "{text}"
    );
    // A real Prometheus text parser accepts it (the Python client's).
    let parser = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\nfams = list(p(sys.stdin.read()))\nprint(len(fams))";
    let run = Command::new("python3")
        .args(["-c", parser])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut run) = run else {
        panic!("python3 is needed to check the metrics format");
    };
    std::io::Write::write_all(run.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No module named 'prometheus_client'") {
        assert!(
            std::env::var_os("CI").is_none(),
            "prometheus_client is missing in CI: .ci/run must install it"
        );
        eprintln!("SKIPPED the parser check: pip install prometheus_client");
        return;
    }
    assert!(
        out.status.success(),
        "the Prometheus parser refused the metrics: {err}\n{text}"
    );
    let families: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(families >= 15, "{families} metric families");
}

#[test]
fn removing_the_leader_under_load_keeps_every_write() {
    let mut c = Cluster::init(3, "remove", TEST_SETTINGS);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let writer = crate::support::Writer::start(&c);
    writer.wait_acked(10, ELECTION);
    let out = Command::new(BIN)
        .args(["members", "remove", &leader.to_string(), "--socket"])
        .arg(&c.nodes[(leader - 1) as usize].socket)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The removed leader steps down once its removal commits; another takes over.
    let new = c.wait_writable_other_than(leader, ELECTION);
    // Writes go on under the new leader.
    writer.wait_acked(writer.acked() + 10, ELECTION);
    let (acked, _failed) = writer.stop();
    assert!(!acked.is_empty());
    crate::support::assert_all_readable(&c, new, &acked);
    let status = c.status(new).unwrap();
    let voters: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "voter")
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(voters.len(), 2, "{status}");
    assert!(!voters.contains(&leader), "{status}");
}

#[test]
fn the_tcp_listener_serves_only_the_read_only_checks() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!("{TEST_SETTINGS}api:\n  tcp_listen: 127.0.0.1:{port}\n");
    let mut c = Cluster::init(1, "tcp", &extra);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    let address = format!("127.0.0.1:{port}");
    let get = |method: &str, path: &str| -> (u16, String) {
        let mut conn = regent_client::Conn::tcp(&address, Some(Duration::from_secs(15))).unwrap();
        conn.send_closing(method, path, b"").unwrap();
        let status = conn.read_head().unwrap();
        let body = conn.read_body().unwrap();
        (status, String::from_utf8_lossy(body).into_owned())
    };
    assert_eq!(get("GET", "/v1/leader").0, 200);
    assert_eq!(get("HEAD", "/v1/health").0, 200);
    assert_eq!(get("GET", "/v1/replica").0, 503);
    let (status, metrics) = get("GET", "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("regent_writable 1"), "{metrics}");
    for (method, path) in [
        ("GET", "/v1/status"),
        ("PUT", "/v1/kv/a"),
        ("POST", "/v1/admin/switchover"),
    ] {
        let (status, body) = get(method, path);
        assert_eq!(status, 404, "{method} {path}: {body}");
    }
}

#[test]
fn rotate_certs_with_reload_swaps_the_running_certificate() {
    let mut c = Cluster::init(1, "rotate", TEST_SETTINGS);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    let days = |c: &Cluster| {
        c.status(1).unwrap()["certificate"]["days_left"]
            .as_i64()
            .unwrap()
    };
    assert!(days(&c) > 300, "the issued certificate lasts a year");
    let dir = c.nodes[0].dir.clone();
    let out = Command::new(BIN)
        .args(["admin", "rotate-certs", "--ca-dir"])
        .arg(dir.parent().unwrap().join("ca"))
        .arg("--cert")
        .arg(dir.join("node.pem"))
        .arg("--key")
        .arg(dir.join("node.key"))
        .args(["--days", "10", "--reload"])
        .arg(&c.nodes[0].socket)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("reloaded: certificate"), "{said}");
    assert!(
        (9..=10).contains(&days(&c)),
        "the running daemon still presents the old certificate"
    );
    // A broken key is refused by the reload and the running certificate stays.
    std::fs::write(dir.join("node.key"), b"not a key").unwrap();
    let answer = crate::support::http(&c.nodes[0].socket, "POST", "/v1/admin/reload", b"").unwrap();
    assert_eq!(
        answer.status,
        422,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.json()["error"], "reload_refused");
    assert!((9..=10).contains(&days(&c)));
    assert_eq!(c.put(1, "still", b"writable").unwrap().status, 200);
}

#[test]
fn a_leader_whose_host_turns_unhealthy_hands_leadership_to_a_healthy_node() {
    // Each node's probe checks for a file in its own directory (the daemon runs there). The
    // probe is a fork and exec of sh: on a busy machine that can take longer than a short
    // timeout, which would make a healthy host unhealthy; a second is far beyond it.
    let extra = format!(
        "{TEST_SETTINGS}host_health:\n  exec: test ! -e host-down\n  interval_ms: 1000\n  timeout_ms: 1000\n  failures: 2\n  successes: 1\n"
    );
    let mut c = Cluster::init(3, "health", &extra);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    assert_eq!(c.status(leader).unwrap()["host_healthy"], true);
    std::fs::write(c.nodes[(leader - 1) as usize].dir.join("host-down"), b"").unwrap();
    let started = Instant::now();
    let new = c.wait_writable_other_than(leader, ELECTION);
    eprintln!(
        "unhealthy host: leadership moved to n{new} after {:?}",
        started.elapsed()
    );
    let old = c.status(leader).unwrap();
    assert_eq!(old["host_healthy"], false, "{old}");
    // While unhealthy it never leads again, even if the new leader goes away.
    c.kill(new);
    std::thread::sleep(Duration::from_secs(3));
    let old = c.status(leader).unwrap();
    assert_ne!(
        old["role"], "leader",
        "the unhealthy node took leadership back: {old}"
    );
    // Healthy again: it may lead (the two live nodes elect one of themselves).
    std::fs::remove_file(c.nodes[(leader - 1) as usize].dir.join("host-down")).unwrap();
    let (_, _) = c.wait_writable_leader(ELECTION);
}

/// Waits until node `id` has applied at least `index`.
fn wait_applied(c: &Cluster, id: u64, index: u64, timeout: Duration) {
    let started = Instant::now();
    while c
        .status(id)
        .and_then(|s| s["applied_index"].as_u64())
        .unwrap_or(0)
        < index
    {
        assert!(
            started.elapsed() < timeout,
            "n{id} did not apply {index} within {timeout:?}:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn replacing_a_failed_machine_under_load_keeps_every_write() {
    let mut c = Cluster::init(3, "replace", TEST_SETTINGS);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    let writer = crate::support::Writer::start(&c);
    writer.wait_acked(10, ELECTION);

    // Node 3's machine dies for good.
    c.kill(3);
    let leader = c.wait_writable_other_than(3, ELECTION);
    let leader_socket = c.nodes[(leader - 1) as usize].socket.clone();

    // A new machine: its own configuration and certificate from the same CA, joining.
    let address = c.add_joining_node(4, TEST_SETTINGS);
    c.start(4);
    let (ok, said, err) = regent_at(
        &leader_socket,
        &["members", "add", "4", &address.to_string()],
    );
    assert!(ok, "members add: {said}{err}\n{}", c.all_logs());
    // The record is readable, not writable by clients.
    let record = c.get(leader, "%00regent/member/4", "linearizable").unwrap();
    assert_eq!(record.body, address.to_string().as_bytes());
    let forged = c.put(leader, "%00regent/member/4", b"10.9.9.9:1").unwrap();
    assert_eq!(forged.status, 400);
    assert_eq!(forged.json()["error"], "bad_key");
    // No configuration file of the running nodes names node 4: they learn its address from
    // the replicated record and dial it.
    for id in 1..=3 {
        let yaml = std::fs::read_to_string(&c.nodes[(id - 1) as usize].config).unwrap();
        assert!(!yaml.contains(&address.to_string()));
    }

    // Promote it once it has caught up (the core refuses a lagging learner; retry).
    let started = Instant::now();
    loop {
        let (ok, said, err) = regent_at(&leader_socket, &["members", "promote", "4"]);
        if ok {
            eprintln!("promote: {said}");
            break;
        }
        assert!(
            started.elapsed() < ELECTION,
            "node 4 was not promoted: {err}\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    while !voters(&c, leader).contains(&4) || voters(&c, leader).len() != 4 {
        assert!(started.elapsed() < ELECTION, "node 4 never became a voter");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The promotion goes through a joint configuration; the removal waits until it is final.
    let started = Instant::now();
    loop {
        let (ok, _, err) = regent_at(&leader_socket, &["members", "remove", "3"]);
        if ok {
            break;
        }
        assert!(
            err.contains("in progress") && started.elapsed() < ELECTION,
            "members remove 3: {err}\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    while {
        let v = voters(&c, leader);
        v.contains(&3) || v.len() != 3
    } {
        assert!(started.elapsed() < ELECTION, "node 3 was never removed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Writes go on with the new membership.
    writer.wait_acked((writer.acked() + 10).max(21), ELECTION);
    let (acked, failed) = writer.stop();
    assert_eq!(failed, 0, "writes failed during the replacement");
    assert!(acked.len() > 20, "only {} writes acknowledged", acked.len());

    // Every acknowledged write is on node 4 itself (local reads of its own state machine).
    let commit = c.status(leader).unwrap()["commit_index"].as_u64().unwrap();
    wait_applied(&c, 4, commit, ELECTION);
    for i in &acked {
        let got = c.get(4, &format!("w{i}"), "local").unwrap();
        assert_eq!(
            got.body,
            i.to_string().as_bytes(),
            "acknowledged w{i} missing on node 4"
        );
    }
    eprintln!("{} acknowledged writes, all on node 4", acked.len());

    // The address survives a restart: restart node 1 (whose file knows nothing of node 4),
    // then stop node 2: {1, 4} is a majority of {1, 2, 4} only if node 1 reaches node 4.
    assert_eq!(c.stop(1), Some(0));
    c.start(1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.stop(2), Some(0));
    let started = Instant::now();
    let mut written = false;
    while !written {
        for id in [1, 4] {
            if c.put(id, "after-replacement", b"yes")
                .is_ok_and(|a| a.status == 200)
            {
                written = true;
            }
        }
        assert!(
            started.elapsed() < ELECTION,
            "nodes 1 and 4 did not form a majority:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let restarted = std::fs::read_to_string(c.nodes[0].log_path()).unwrap();
    assert!(
        restarted.contains("link up node=n1 peer=n4"),
        "after its restart node 1 never linked to node 4:\n{restarted}"
    );
}

#[test]
fn snapshot_and_compact_on_demand() {
    // The policy would never compact here: only the operator's commands do.
    let mut c = Cluster::init(
        3,
        "compact",
        "raft:\n  compaction_entries_max: 1000000\nstorage:\n  changes_retained_max: 10\n",
    );
    c.start(1);
    c.start(2);
    let (leader, _) = c.wait_writable_leader(ELECTION);
    let value = vec![b'x'; 16 << 10];
    for i in 0..600 {
        let a = c.put(leader, &format!("big{i}"), &value).unwrap();
        assert_eq!(a.status, 200);
    }
    for i in 0..600 {
        if i % 10 != 0 {
            let socket = &c.nodes[(leader - 1) as usize].socket;
            let a = crate::support::http(socket, "DELETE", &format!("/v1/kv/big{i}"), b"").unwrap();
            assert_eq!(a.status, 200);
        }
    }
    let socket = c.nodes[(leader - 1) as usize].socket.clone();
    let commit = c.status(leader).unwrap()["commit_index"].as_u64().unwrap();
    let db = c.nodes[(leader - 1) as usize]
        .dir
        .join("data")
        .join("regent.redb");
    let largest = std::fs::metadata(&db).unwrap().len();
    assert!(
        largest > 8 << 20,
        "the log's 600 values are not in the file: {largest} bytes"
    );

    let (ok, said, err) = regent_at(&socket, &["snapshot"]);
    assert!(ok, "{said}{err}");
    eprintln!("{said}");
    assert!(said.contains("is compacted"), "{said}");
    let index: u64 = said
        .split_whitespace()
        .nth(3)
        .and_then(|w| w.trim_end_matches(':').parse().ok())
        .unwrap_or_else(|| panic!("no index in {said:?}"));
    assert!(
        index >= commit,
        "snapshot at {index}, but {commit} was committed"
    );
    // Nothing applied since: a second snapshot says so.
    let (ok, said, _) = regent_at(&socket, &["snapshot"]);
    assert!(ok && said.contains("nothing applied since"), "{said}");

    // compact: the file shrinks (the log's 600 values and the deleted keys were freed). redb
    // may already have given back the free pages at its end when the log compaction committed,
    // so the shrink is measured from the file's largest size, before the snapshot.
    let a = crate::support::http(&socket, "POST", "/v1/admin/compact", b"").unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let v = a.json();
    eprintln!("{v}");
    let before = v["file"]["bytes_before"].as_u64().unwrap();
    let after = v["file"]["bytes_after"].as_u64().unwrap();
    assert!(
        after <= before && before <= largest,
        "{v}, largest {largest}"
    );
    assert!(
        after * 2 < largest,
        "the file did not shrink from {largest}: {v}"
    );
    assert_eq!(std::fs::metadata(&db).unwrap().len(), after, "{v}");
    let (ok, said, err) = regent_at(&socket, &["compact"]);
    assert!(ok, "{said}{err}");
    assert!(said.contains("database file:"), "{said}");
    eprintln!("{said}");
    // A GET is not allowed; the data is all there.
    let a = crate::support::http(&socket, "GET", "/v1/admin/snapshot", b"").unwrap();
    assert_eq!(a.status, 405);
    for i in (0..600).step_by(10) {
        let a = c.get(leader, &format!("big{i}"), "linearizable").unwrap();
        assert_eq!(a.body.len(), value.len());
    }

    // Node 3, which never saw the log the snapshot replaced, catches up from the snapshot.
    c.start(3);
    let started = Instant::now();
    loop {
        if let Ok(a) = c.get(3, "big590", "local") {
            if a.status == 200 {
                assert_eq!(a.body.len(), value.len());
                break;
            }
        }
        assert!(
            started.elapsed() < ELECTION,
            "node 3 never caught up:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.get(3, "big591", "local").unwrap().status, 404);
    assert!(c.nodes[2].logs().contains("snapshot installed"));
}

/// Runs `regent ARGS`; returns the exit code, stdout and stderr.
fn regent(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn recover_force_new_cluster_from_one_survivor() {
    let mut c = Cluster::init(3, "recover", TEST_SETTINGS);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    let writer = crate::support::Writer::start(&c);
    writer.wait_acked(51, ELECTION);
    let (acked, failed) = writer.stop();
    assert_eq!(failed, 0);
    assert!(acked.len() > 50);
    let config1 = c.nodes[0].config.display().to_string();

    // Refused while the daemon runs.
    let (code, out, err) = regent(&["recover", "--force-new-cluster", "--config", &config1]);
    assert_ne!(code, Some(0), "{out}");
    assert!(err.contains("serving on"), "{err}");

    // The majority is lost: every node stops (kill -9, as a crash would).
    for id in 1..=3 {
        c.kill(id);
    }
    // Without the confirming flag: the plan, exit 2, nothing changed.
    let (code, out, err) = regent(&["recover", "--force-new-cluster", "--config", &config1]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(
        out.contains("will append at index") && out.contains("nothing was changed"),
        "{out}"
    );
    let (code, again, _) = regent(&["recover", "--force-new-cluster", "--config", &config1]);
    assert_eq!(code, Some(2));
    assert_eq!(
        out.lines().nth(1),
        again.lines().nth(1),
        "the log changed without confirmation"
    );
    // Without --force-new-cluster: refused.
    let (code, _, err) = regent(&["recover", "--config", &config1, "--i-accept-losing-writes"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("--force-new-cluster"), "{err}");

    let (code, out, err) = regent(&[
        "recover",
        "--force-new-cluster",
        "--config",
        &config1,
        "--i-accept-losing-writes",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    eprintln!("{out}");
    assert!(out.contains("done: node 1 is the only voter"), "{out}");

    // Node 1 alone: writable, every acknowledged write there.
    c.start(1);
    let (leader, took) = c.wait_writable_leader(ELECTION);
    assert_eq!(leader, 1);
    eprintln!("node 1 writable alone after {took:?}");
    assert_eq!(voters(&c, 1), vec![1]);
    crate::support::assert_all_readable(&c, 1, &acked);
    assert_eq!(c.put(1, "after-recovery", b"1").unwrap().status, 200);

    // Add a member back (a new id, a fresh data directory).
    let address = c.add_joining_node(4, TEST_SETTINGS);
    c.start(4);
    let socket1 = c.nodes[0].socket.clone();
    let (ok, said, err) = regent_at(&socket1, &["members", "add", "4", &address.to_string()]);
    assert!(ok, "{said}{err}");
    let started = Instant::now();
    while !regent_at(&socket1, &["members", "promote", "4"]).0 {
        assert!(
            started.elapsed() < ELECTION,
            "node 4 never promoted:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    while voters(&c, 1) != vec![1, 4] {
        assert!(started.elapsed() < ELECTION, "voters: {:?}", voters(&c, 1));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.put(1, "two-voters", b"1").unwrap().status, 200);
    let commit = c.status(1).unwrap()["commit_index"].as_u64().unwrap();
    wait_applied(&c, 4, commit, ELECTION);
    for i in &acked {
        let got = c.get(4, &format!("w{i}"), "local").unwrap();
        assert_eq!(got.body, i.to_string().as_bytes());
    }
}

#[test]
fn the_install_script_lays_out_a_debian_machine() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("SKIPPED: install.sh sets owners and needs root");
        return;
    }
    // A temporary root with the few files useradd --prefix edits.
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    for (file, line) in [
        ("passwd", "root:x:0:0:root:/root:/bin/bash\n"),
        ("group", "root:x:0:\n"),
        ("shadow", "root:*:19000:0:99999:7:::\n"),
        ("gshadow", "root:*::\n"),
    ] {
        std::fs::write(r.join("etc").join(file), line).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let cluster = work.path().join("cluster");
    let (code, out, err) = regent(&[
        "admin",
        "cluster",
        "init",
        "--dir",
        cluster.to_str().unwrap(),
        "--cluster",
        "prod",
        "--node",
        "1=10.0.0.1:7401",
        "--node",
        "2=10.0.0.2:7401",
        "--node",
        "3=10.0.0.3:7401",
        "--system-paths",
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("systemd/install.sh --node-dir"), "{out}");
    let node1 = cluster.join("node1");
    let yaml = std::fs::read_to_string(node1.join("regent.yaml")).unwrap();
    for line in [
        "data_dir: /var/lib/regent",
        "socket: /run/regent/regent.sock",
        "cert: /etc/regent/node.pem",
        "key: /etc/regent/node.key",
        "ca_bundle: /etc/regent/ca-bundle.pem",
    ] {
        assert!(yaml.contains(line), "{line} not in\n{yaml}");
    }

    let install = |extra: &[&str]| {
        let out = Command::new("systemd/install.sh")
            .args(["--root", r.to_str().unwrap(), "--binary", BIN, "--node-dir"])
            .arg(&node1)
            .args(extra)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "install.sh failed:\n{said}");
        said
    };
    let said = install(&[]);
    eprintln!("{said}");
    // The user and group, in the root's own files (the host's are not touched).
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let entry = passwd
        .lines()
        .find(|l| l.starts_with("regent:"))
        .unwrap_or_else(|| panic!("no regent user in\n{passwd}"));
    let fields: Vec<&str> = entry.split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    let gid: u32 = fields[3].parse().unwrap();
    assert!(uid > 0 && uid < 1000, "not a system user: {entry}");
    assert_eq!(fields[5], "/var/lib/regent");
    assert_eq!(fields[6], "/usr/sbin/nologin");
    let group = std::fs::read_to_string(r.join("etc/group")).unwrap();
    assert!(group.contains(&format!("regent:x:{gid}:")), "{group}");

    for (path, mode, owner, group) in [
        ("usr/bin/regent", 0o755, 0, 0),
        ("etc/regent", 0o750, 0, gid),
        ("var/lib/regent", 0o700, uid, gid),
        ("etc/systemd/system/regent.service", 0o644, 0, 0),
        ("etc/systemd/system/regent@.service", 0o644, 0, 0),
        ("etc/regent/regent.yaml", 0o640, 0, gid),
        ("etc/regent/node.pem", 0o644, 0, gid),
        ("etc/regent/ca-bundle.pem", 0o644, 0, gid),
        ("etc/regent/node.key", 0o600, uid, gid),
    ] {
        let meta = std::fs::metadata(r.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{path} mode");
        assert_eq!((meta.uid(), meta.gid()), (owner, group), "{path} owner");
    }
    assert_eq!(
        std::fs::read(r.join("etc/regent/node.key")).unwrap(),
        std::fs::read(node1.join("node.key")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(r.join("etc/systemd/system/regent.service")).unwrap(),
        std::fs::read_to_string("systemd/regent.service").unwrap()
    );

    // The installed unit verifies (against the installed binary).
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok()
    {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(r.join("etc/systemd/system/regent.service"))
            .unwrap()
            .replace(
                "/usr/bin/regent",
                r.join("usr/bin/regent").to_str().unwrap(),
            );
        let unit = dir.path().join("regent.service");
        std::fs::write(&unit, text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success() && said.trim().is_empty(), "{said}");
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze missing in CI"
        );
    }

    // Run again: nothing installed is overwritten, one user.
    std::fs::write(
        r.join("etc/regent/regent.yaml"),
        "# edited by the operator\n",
    )
    .unwrap();
    let said = install(&[]);
    assert!(said.contains("exists: kept"), "{said}");
    assert_eq!(
        std::fs::read_to_string(r.join("etc/regent/regent.yaml")).unwrap(),
        "# edited by the operator\n"
    );
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert_eq!(
        passwd.lines().filter(|l| l.starts_with("regent:")).count(),
        1,
        "{passwd}"
    );
    // --force replaces it; a config not made for the installed layout is refused.
    install(&["--force"]);
    assert_eq!(
        std::fs::read_to_string(r.join("etc/regent/regent.yaml")).unwrap(),
        yaml
    );
    let (code, _, err) = regent(&[
        "admin",
        "cluster",
        "init",
        "--dir",
        work.path().join("plain").to_str().unwrap(),
        "--cluster",
        "prod",
        "--node",
        "1=10.0.0.1:7401",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let out = Command::new("systemd/install.sh")
        .args(["--root", r.to_str().unwrap(), "--binary", BIN, "--node-dir"])
        .arg(work.path().join("plain/node1"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--system-paths"));
}

#[test]
fn reload_applies_run_time_settings_and_refuses_a_bad_file() {
    let mut c = Cluster::init(3, "reload", TEST_SETTINGS);
    // Node 3 stays down: node 1 keeps dialing it, which it logs only at debug level.
    c.start(1);
    c.start(2);
    c.wait_writable_leader(ELECTION);
    let config = c.nodes[0].config.clone();
    let socket = c.nodes[0].socket.clone();
    let original = std::fs::read_to_string(&config).unwrap();
    let reload = || crate::support::http(&socket, "POST", "/v1/admin/reload", b"").unwrap();
    let debug_lines = |c: &Cluster| {
        std::fs::read_to_string(c.nodes[0].log_path())
            .unwrap()
            .lines()
            .filter(|l| l.contains(" DEBUG "))
            .count()
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(debug_lines(&c), 0, "debug lines before the reload");

    // Run-time settings: the log filter, who may call admin endpoints, a host probe.
    let probe = "host_health:\n  exec: exit 1\n  interval_ms: 100\n  timeout_ms: 100\n  failures: 1\n  successes: 1\n";
    std::fs::write(
        &config,
        format!("{original}\nlog_level: debug\nadmin_uids: [4242]\n{probe}"),
    )
    .unwrap();
    let a = reload();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let said = a.json()["reloaded"].as_str().unwrap().to_string();
    eprintln!("{said}");
    assert!(said.contains("applied: log filter debug"), "{said}");
    assert!(said.contains("admin_uids"), "{said}");
    assert!(said.contains("host_health"), "{said}");
    assert!(!said.contains("next restart"), "{said}");
    let started = Instant::now();
    while debug_lines(&c) == 0 || c.status(1).unwrap()["host_healthy"] != false {
        assert!(
            started.elapsed() < ELECTION,
            "the new log filter or probe is not in force:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A bad file is refused with the reason; everything stays as it was.
    std::fs::write(
        &config,
        format!("{original}\nlog_level: \"[[not a filter\"\n"),
    )
    .unwrap();
    let a = reload();
    assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.body));
    let body = a.json();
    assert_eq!(body["error"], "reload_refused");
    assert!(
        body["message"].as_str().unwrap().contains("log_level"),
        "{body}"
    );
    assert_eq!(
        c.status(1).unwrap()["host_healthy"],
        false,
        "the old probe stays"
    );
    std::fs::write(&config, original.replace("node_id: 1", "node_id: 2")).unwrap();
    let a = reload();
    assert_eq!(a.status, 422);
    assert!(
        a.json()["message"].as_str().unwrap().contains("node"),
        "{}",
        a.json()
    );

    // Back to the original through SIGHUP: no probe (healthy again), the default filter; a
    // setting that needs a restart is named, and the daemon keeps serving.
    let raft_changed = original.replace("raft:\n", "raft:\n  inflight_max: 3\n");
    std::fs::write(&config, &raft_changed).unwrap();
    let a = reload();
    assert_eq!(a.status, 200);
    let said = a.json()["reloaded"].as_str().unwrap().to_string();
    assert!(said.contains("next restart: raft"), "{said}");
    assert!(said.contains("host_health removed"), "{said}");
    std::fs::write(&config, &original).unwrap();
    let pid = c.pid(1).unwrap().to_string();
    let out = Command::new("kill").args(["-HUP", &pid]).status();
    assert!(out.is_ok_and(|s| s.success()));
    let started = Instant::now();
    while !c.nodes[0].logs().contains("SIGHUP: reloading") {
        assert!(started.elapsed() < ELECTION, "SIGHUP not handled");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.status(1).unwrap()["host_healthy"], true);
    let lines = debug_lines(&c);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        debug_lines(&c),
        lines,
        "debug lines after the filter went back"
    );
}

#[test]
fn a_member_moved_to_a_new_address_is_found_there() {
    let mut c = Cluster::init(3, "moved", TEST_SETTINGS);
    c.start_all();
    c.wait_writable_leader(ELECTION);
    // Node 3 moves: stopped, its own file says the new address, the others' files do not.
    assert_eq!(c.stop(3), Some(0));
    let leader = c.wait_writable_other_than(3, ELECTION);
    let yaml = std::fs::read_to_string(&c.nodes[2].config).unwrap();
    let config: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let old = config["listen"].as_str().unwrap().to_string();
    let new = format!("127.0.0.1:{}", crate::support::free_port());
    std::fs::write(&c.nodes[2].config, yaml.replace(&old, &new)).unwrap();
    let socket = c.nodes[(leader - 1) as usize].socket.clone();
    let (ok, said, err) = regent_at(&socket, &["members", "update", "3", &new]);
    assert!(ok, "{said}{err}");
    assert!(said.contains("address recorded"), "{said}");
    let (ok, _, err) = regent_at(&socket, &["members", "update", "3", "nowhere"]);
    assert!(!ok && err.contains("nowhere"), "{err}");
    c.start(3);
    assert_eq!(c.put(leader, "after-move", b"1").unwrap().status, 200);
    let started = Instant::now();
    while c
        .get(3, "after-move", "local")
        .map_or(true, |a| a.status != 200)
    {
        assert!(
            started.elapsed() < ELECTION,
            "node 3 was not reached at its new address:\n{}",
            c.all_logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = c.status(leader).unwrap();
    let listed = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == 3)
        .map(|m| m["address"].clone());
    assert_eq!(listed, Some(serde_json::json!(new)), "{status}");
}

/// `log: {format: json}`: every line a daemon writes is one JSON object with the timestamp,
/// level, target, node id, term, message and fields.
#[test]
fn structured_logs_are_one_json_object_per_line() {
    let settings = format!("{TEST_SETTINGS}log:\n  format: json\n  level: info\n");
    let mut c = Cluster::init(3, "jsonlogs", &settings);
    c.start_all();
    let (leader, _) = c.wait_writable_leader(ELECTION);
    assert_eq!(c.stop(leader), Some(0));
    let text = c.nodes[(leader - 1) as usize].logs();
    let mut lines = 0;
    let mut with_term = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(v[key].is_string(), "no {key}: {line}");
        }
        assert_eq!(v["node_id"], leader, "{line}");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");
        with_term += usize::from(v["term"].as_u64().is_some_and(|t| t >= 1));
        lines += 1;
    }
    assert!(lines >= 5, "{text}");
    assert!(with_term >= 1, "no line carries the term:\n{text}");
    assert!(text.contains("\"message\":\"serving\""), "{text}");
}
