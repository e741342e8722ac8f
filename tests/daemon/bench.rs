//! `regent bench cluster` and `regent bench peers` end to end, briefly: the commands run real
//! clusters, and their `--json` lines carry every figure the issue names, with sane values.

use crate::support::BIN;
use serde_json::Value;
use std::process::Command;

fn json_lines(args: &[&str]) -> Vec<Value> {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("running regent");
    assert!(
        out.status.success(),
        "regent {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// A run's line: exactly the keys, acknowledged writes, ordered percentiles.
fn check_write_line(line: &Value, clients: u64) {
    let keys: Vec<&str> = line
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    // The keys, and the figures added since (CPU per write, the largest latency, the
    // run's acknowledged writes and length, the rates at a `--writes` run's two ends); nothing
    // else.
    let required = ["clients", "writes_per_sec", "p50_ms", "p99_ms", "p999_ms"];
    let added = [
        "cpu_us_per_write",
        "max_ms",
        "writes",
        "seconds",
        "window_writes",
        "first_window_writes_per_sec",
        "last_window_writes_per_sec",
    ];
    for key in required {
        assert!(keys.contains(&key), "{key} missing: {line}");
    }
    for key in &keys {
        assert!(
            required.contains(key) || added.contains(key) || *key == "system",
            "unexpected {key}: {line}"
        );
    }
    if let (Some(max), Some(p999)) = (line["max_ms"].as_f64(), line["p999_ms"].as_f64()) {
        assert!(max >= p999, "{line}");
    }
    assert_eq!(line["clients"].as_u64(), Some(clients), "{line}");
    assert!(line["writes_per_sec"].as_f64().unwrap() > 0.0, "{line}");
    let (p50, p99, p999) = (
        line["p50_ms"].as_f64().unwrap(),
        line["p99_ms"].as_f64().unwrap(),
        line["p999_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= p999, "{line}");
}

#[test]
fn bench_cluster_json_has_every_figure() {
    let lines = json_lines(&[
        "bench",
        "cluster",
        "--json",
        "--clients",
        "1,4",
        "--seconds",
        "0.5",
        "--rounds",
        "1",
        "--restart-entries",
        "2000",
    ]);
    assert_eq!(lines.len(), 3, "{lines:?}");
    check_write_line(&lines[0], 1);
    check_write_line(&lines[1], 4);
    let other = &lines[2];
    for key in [
        "linearizable_reads_per_sec",
        "lease_reads_per_sec",
        "failover_median_ms",
        "failover_max_ms",
        "switchover_pause_median_ms",
        "switchover_pause_max_ms",
        "restart_ms",
        "restart_writable_ms",
        "restart_unverified_ms",
        "restart_verified_ms",
        "idle_rss_mib",
        "loaded_rss_mib",
    ] {
        let v = other[key].as_f64().unwrap_or(0.0);
        assert!(v > 0.0, "{key} missing or not positive in {other}");
    }
    assert_eq!(other["failover_rounds"].as_u64(), Some(1), "{other}");
    assert_eq!(other["restart_entries"].as_u64(), Some(2000), "{other}");
    assert!(
        other["failover_median_ms"].as_f64() <= other["failover_max_ms"].as_f64(),
        "{other}"
    );
}

#[test]
fn bench_peers_drives_regent_etcd_and_zookeeper() {
    let etcd = Command::new("etcd").arg("--version").output().is_ok();
    let zookeeper = std::path::Path::new("/usr/share/java/zookeeper.jar").exists();
    if !(etcd && zookeeper) {
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd or ZooKeeper is missing in CI: .ci/run must install etcd-server and zookeeper"
        );
        eprintln!("SKIPPED: install etcd-server and zookeeper (bench/peers.sh does)");
        return;
    }
    let lines = json_lines(&[
        "bench",
        "peers",
        "--json",
        "--clients",
        "2",
        "--seconds",
        "0.5",
    ]);
    let systems: Vec<&str> = lines
        .iter()
        .map(|l| l["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["regent", "etcd", "zookeeper"]);
    for line in &lines {
        check_write_line(line, 2);
    }
}
