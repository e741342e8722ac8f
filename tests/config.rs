//! The daemon's configuration file: the shipped example kept in step with the struct, a table
//! of broken files with the error each must produce, and `check-config`, `explain-timing` and
//! `admin cluster init` run as an operator runs them (the real binary in temp dirs).

use regent_daemon::config::{ConfigError, DaemonConfig, TimingConfig};
use regent_raft::NodeId;
use regent_transport::pki::ca::CaDir;
use regent_transport::pki::{files, issue, CertInfo, IssueRequest, NodeIdentity};
use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn shipped_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/regent.yaml")
}

fn shipped_text() -> String {
    fs::read_to_string(shipped_path()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The shipped example.

#[test]
fn the_shipped_example_parses_and_its_settings_are_valid() {
    let config = DaemonConfig::parse(&shipped_text()).unwrap();
    config.validate_timing().unwrap();
    config.validate_settings().unwrap();
    assert_eq!(config.data_dir, Path::new("/var/lib/regent"));
    assert_eq!(config.socket, Path::new("/run/regent/regent.sock"));
    assert_eq!(config.tls.key, Path::new("/etc/regent/node.key"));
}

#[test]
fn the_shipped_example_states_the_defaults() {
    let shipped = DaemonConfig::parse(&shipped_text()).unwrap();
    let minimal = DaemonConfig::parse(
        "cluster: demo\nnode_id: 1\nlisten: 127.0.0.1:7401\n\
         members: [{ id: 1, address: 127.0.0.1:7401 }]\n\
         tls: { cert: a, key: b, ca_bundle: c }\n",
    )
    .unwrap();
    assert_eq!(shipped.join, minimal.join);
    assert_eq!(shipped.data_dir, minimal.data_dir);
    assert_eq!(shipped.socket, minimal.socket);
    assert_eq!(shipped.socket_mode, minimal.socket_mode);
    assert_eq!(shipped.socket_group, minimal.socket_group);
    assert_eq!(shipped.admin_uids, minimal.admin_uids);
    assert_eq!(shipped.admin_gids, minimal.admin_gids);
    assert_eq!(shipped.timing, minimal.timing);
    assert_eq!(shipped.raft, minimal.raft);
    assert_eq!(shipped.transport, minimal.transport);
    assert_eq!(shipped.storage, minimal.storage);
    assert_eq!(shipped.api, minimal.api);
}

#[test]
fn verify_on_open_takes_auto_always_never_and_the_older_booleans() {
    use regent_daemon::config::StorageVerify;
    let base = "cluster: demo\nnode_id: 1\nlisten: 127.0.0.1:7401\n\
                members: [{ id: 1, address: 127.0.0.1:7401 }]\n\
                tls: { cert: a, key: b, ca_bundle: c }\n";
    for (value, expect) in [
        ("auto", StorageVerify::Auto),
        ("always", StorageVerify::Always),
        ("never", StorageVerify::Never),
        ("true", StorageVerify::Always),
        ("false", StorageVerify::Never),
    ] {
        let text = format!("{base}storage: {{ verify_on_open: {value} }}\n");
        let config = DaemonConfig::parse(&text).unwrap();
        assert_eq!(config.storage.verify_on_open, expect, "{value}");
    }
    assert_eq!(
        DaemonConfig::parse(base).unwrap().storage.verify_on_open,
        StorageVerify::Auto
    );
    let err = DaemonConfig::parse(&format!("{base}storage: {{ verify_on_open: maybe }}\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("verify_on_open") && err.contains("maybe"),
        "{err}"
    );
}

/// Every key path of a YAML value (`timing.heartbeat_interval_ms`, `members[].id`).
fn key_paths(value: &serde_yaml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (key, child) in map {
                let key = key.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                out.insert(path.clone());
                key_paths(child, &path, out);
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_field_of_the_struct_appears_in_the_shipped_example() {
    let text = shipped_text();
    let config = DaemonConfig::parse(&text).unwrap();
    // Serializing writes every field of the struct, optional ones included (as null).
    let mut fields = BTreeSet::new();
    key_paths(&serde_yaml::to_value(&config).unwrap(), "", &mut fields);
    let mut shipped = BTreeSet::new();
    key_paths(&serde_yaml::from_str(&text).unwrap(), "", &mut shipped);
    let missing: Vec<_> = fields.difference(&shipped).collect();
    assert!(missing.is_empty(), "not in config/regent.yaml: {missing:?}");
    assert!(fields.len() > 50, "{fields:?}");
}

#[test]
fn every_key_of_the_shipped_example_has_a_comment() {
    let text = shipped_text();
    let mut previous = "";
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let is_key = trimmed.split_once(':').is_some_and(|(key, _)| {
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        });
        if is_key && !trimmed.starts_with('#') {
            assert!(
                previous.trim_start().starts_with('#'),
                "config/regent.yaml line {}: {trimmed:?} has no comment above it",
                n + 1
            );
        }
        previous = line;
    }
}

// ---------------------------------------------------------------------------------------------
// Broken files.

/// A directory with a CA and node 1's material, and a base configuration that loads.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

const BASE: &str = "\
cluster: demo
node_id: 1
listen: 127.0.0.1:7401
members:
  - { id: 1, address: 127.0.0.1:7401 }
  - { id: 2, address: 127.0.0.1:7402 }
  - { id: 3, address: 127.0.0.1:7403 }
data_dir: data
socket: regent.sock
tls:
  cert: node.pem
  key: node.key
  ca_bundle: ca-bundle.pem
";

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        let ca_dir = CaDir::new(dir.join("ca"));
        ca_dir.init(30).unwrap();
        let ca = ca_dir.load().unwrap();
        let identity = NodeIdentity::new("demo", NodeId(1)).unwrap();
        let issued = issue::issue(&ca, &IssueRequest::new(identity, 30)).unwrap();
        issue::write_new(&issued, &dir.join("node.pem"), &dir.join("node.key")).unwrap();
        fs::copy(ca_dir.bundle_path(), dir.join("ca-bundle.pem")).unwrap();
        Fixture { _tmp: tmp, dir }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }
}

fn replace(from: &'static str, to: &'static str) -> impl Fn(&str) -> String {
    move |text| {
        assert!(text.contains(from), "{from:?} not in the base file");
        text.replacen(from, to, 1)
    }
}

fn append(more: &'static str) -> impl Fn(&str) -> String {
    move |text| format!("{text}{more}")
}

#[test]
fn the_base_file_loads_and_resolves_relative_paths() {
    let fx = Fixture::new();
    let path = fx.write("base.yaml", BASE);
    let config = DaemonConfig::load(&path).unwrap();
    assert_eq!(config.data_dir, fx.dir.join("data"));
    assert_eq!(config.tls.cert, fx.dir.join("node.pem"));
    assert_eq!(config.socket, fx.dir.join("regent.sock"));
    // Validation probes the data directory's parent and leaves nothing behind.
    assert!(!fx.dir.join("data").exists());
    let leftovers: Vec<_> = fs::read_dir(&fx.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("probe"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A wildcard listen address is fine with the member's port.
    let wildcard = fx.write(
        "wildcard.yaml",
        &BASE.replace("listen: 127.0.0.1:7401", "listen: 0.0.0.0:7401"),
    );
    DaemonConfig::load(&wildcard).unwrap();
}

#[test]
fn broken_files_are_refused_with_the_field_and_the_rule() {
    let fx = Fixture::new();
    let long_socket: &'static str =
        Box::leak(format!("{BASE}socket: /{}/regent.sock\n", "s".repeat(110)).into_boxed_str());
    type Edit = Box<dyn Fn(&str) -> String>;
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "unknown field",
            Box::new(append("colour: blue\n")),
            &["unknown field `colour`", "line 14 column 1"],
        ),
        (
            "unknown nested field",
            Box::new(append("timing:\n  heartbeat_ms: 50\n")),
            &["timing: unknown field `heartbeat_ms`", "line 15"],
        ),
        (
            "bad YAML",
            Box::new(replace("listen: 127.0.0.1:7401", "listen: [127.0.0.1:7401")),
            &["line"],
        ),
        (
            "missing required field",
            Box::new(replace("cluster: demo\n", "")),
            &["missing field `cluster`"],
        ),
        (
            "wrong type",
            Box::new(replace("node_id: 1", "node_id: one")),
            &["node_id: invalid type", "line 2"],
        ),
        (
            "heartbeat too slow",
            Box::new(append("timing:\n  heartbeat_interval_ms: 200\n")),
            &["timing.heartbeat_interval_ms", "more than a third"],
        ),
        (
            "drift 0",
            Box::new(append("timing:\n  clock_drift_max: 0\n")),
            &["timing.clock_drift_max", "not within (0, 0.1]"],
        ),
        (
            "drift 0.2",
            Box::new(append("timing:\n  clock_drift_max: 0.2\n")),
            &["timing.clock_drift_max", "0.2 is not within (0, 0.1]"],
        ),
        (
            "lease warning too long",
            Box::new(append("timing:\n  lease_warning_ms: 400\n")),
            &["timing.lease_warning_ms", "would warn all the time"],
        ),
        (
            "bad cluster name",
            Box::new(replace("cluster: demo", "cluster: Demo")),
            &["cluster:", "a-z"],
        ),
        (
            "node id 0",
            Box::new(replace("node_id: 1", "node_id: 0")),
            &["node_id: must not be 0"],
        ),
        (
            "self not among members",
            Box::new(replace("node_id: 1", "node_id: 4")),
            &[
                "members:",
                "node_id 4",
                "not among the members",
                "join: true",
            ],
        ),
        (
            "duplicate id",
            Box::new(replace("{ id: 3,", "{ id: 2,")),
            &["members[2].id", "listed twice"],
        ),
        (
            "duplicate address",
            Box::new(replace("127.0.0.1:7403", "127.0.0.1:7402")),
            &["members[2].address", "listed twice"],
        ),
        (
            "wildcard member address",
            Box::new(replace("127.0.0.1:7403", "0.0.0.0:7403")),
            &["members[2].address", "not an address peers can dial"],
        ),
        (
            "listen port not the member's",
            Box::new(replace("listen: 127.0.0.1:7401", "listen: 127.0.0.1:7499")),
            &["listen:", "port 7499"],
        ),
        (
            "listen address not the member's",
            Box::new(replace("listen: 127.0.0.1:7401", "listen: 127.0.0.2:7401")),
            &["listen:", "not this node's member address"],
        ),
        (
            "missing certificate",
            Box::new(replace("cert: node.pem", "cert: missing.pem")),
            &["tls.cert", "missing.pem does not exist"],
        ),
        (
            "certificate is a directory",
            Box::new(replace("cert: node.pem", "cert: ca")),
            &["tls.cert", "is a directory, not a regular file"],
        ),
        (
            "certificate of another node",
            Box::new(|text: &str| {
                text.replace("node_id: 1", "node_id: 2")
                    .replace("listen: 127.0.0.1:7401", "listen: 127.0.0.1:7402")
            }),
            &["tls.cert", "expected node 2 of cluster demo"],
        ),
        (
            "data dir under a regular file",
            Box::new(replace("data_dir: data", "data_dir: node.pem/data")),
            &["data_dir", "cannot be created", "not a directory"],
        ),
        (
            "data dir is a regular file",
            Box::new(replace("data_dir: data", "data_dir: node.pem")),
            &["data_dir", "is a regular file, not a directory"],
        ),
        (
            "socket path too long",
            Box::new(move |_: &str| long_socket.replacen("socket: regent.sock\n", "", 1)),
            &["socket:", "at most 107", "sun_path"],
        ),
        (
            "socket is a regular file",
            Box::new(replace("socket: regent.sock", "socket: node.pem")),
            &["socket:", "not a socket"],
        ),
        (
            "socket directory under a regular file",
            Box::new(replace(
                "socket: regent.sock",
                "socket: node.pem/regent.sock",
            )),
            &["socket:", "socket's directory", "not a directory"],
        ),
        (
            "bad socket_mode",
            Box::new(append("socket_mode: \"0999\"\n")),
            &["socket_mode", "not an octal file mode", "line 14"],
        ),
        (
            "socket_mode with special bits",
            Box::new(append("socket_mode: \"4755\"\n")),
            &["socket_mode", "not an octal file mode"],
        ),
        (
            "unknown socket group",
            Box::new(append("socket_group: no-such-group-regent\n")),
            &["socket_group", "no group named"],
        ),
        (
            "raft limit",
            Box::new(append("raft:\n  inflight_max: 0\n")),
            &["raft.inflight_max", "at least 1"],
        ),
        (
            "raft limit relative to another",
            Box::new(append("raft:\n  uncommitted_bytes_max: 1000\n")),
            &["raft.uncommitted_bytes_max", "raft.append_bytes_max"],
        ),
        (
            "transport limit",
            Box::new(append("transport:\n  frame_bytes_max: 10\n")),
            &["transport.frame_bytes_max", "not within"],
        ),
        (
            "storage limit",
            Box::new(append("storage:\n  batch_entries_max: 0\n")),
            &["storage.batch_entries_max", "1..=1000000"],
        ),
        (
            "storage apply mode",
            Box::new(append("storage:\n  apply_mode: later\n")),
            &["storage.apply_mode", "unknown variant `later`"],
        ),
        (
            "api limit",
            Box::new(append("api:\n  connections_max: 0\n")),
            &["api.connections_max", "not within 1..=65536"],
        ),
        (
            "join without peers",
            Box::new(|text: &str| {
                text.replace("  - { id: 2, address: 127.0.0.1:7402 }\n", "")
                    .replace("  - { id: 3, address: 127.0.0.1:7403 }\n", "")
                    + "join: true\n"
            }),
            &["members:", "join: true", "at least one other node"],
        ),
        (
            "backup interval",
            Box::new(append("backup:\n  dir: backups\n  interval_s: 0\n")),
            &["backup.interval_s", "1..=31536000"],
        ),
        (
            "backup keep",
            Box::new(append(
                "backup:\n  dir: backups\n  interval_s: 60\n  keep: 0\n",
            )),
            &["backup.keep", "1..=10000"],
        ),
        (
            "backup without a dir",
            Box::new(append("backup:\n  interval_s: 60\n")),
            &["missing field `dir`"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (name, edit, needles)) in cases.iter().enumerate() {
        let path = fx.write(&format!("case{i}.yaml"), &edit(BASE));
        let err = match DaemonConfig::load(&path) {
            Ok(_) => {
                failures.push(format!("{name}: loaded"));
                continue;
            }
            Err(err) => err.to_string(),
        };
        if !err.starts_with(&path.display().to_string()) {
            failures.push(format!("{name}: the error does not name the file: {err}"));
        }
        for needle in *needles {
            if !err.contains(needle) {
                failures.push(format!("{name}: {needle:?} not in: {err}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let fx = Fixture::new();
    let path = fx.write("base.yaml", BASE);
    fs::set_permissions(fx.dir.join("node.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let err = DaemonConfig::load(&path).unwrap_err();
    assert_eq!(err.field(), Some("tls.key"), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("mode 0644") && text.contains("chmod 600"),
        "{text}"
    );
}

#[test]
fn a_read_only_data_dir_is_refused() {
    // As root, mode bits do not stop writes; a read-only bind mount would, but needs
    // privileges a test should not use. /proc is a directory nobody can create files in.
    if !Path::new("/proc/self").exists() {
        return;
    }
    let fx = Fixture::new();
    let path = fx.write(
        "proc.yaml",
        &BASE.replace("data_dir: data", "data_dir: /proc/regent-data"),
    );
    let err = DaemonConfig::load(&path).unwrap_err();
    assert_eq!(err.field(), Some("data_dir"), "{err}");
    assert!(err.to_string().contains("/proc is not writable"), "{err}");
}

#[test]
fn files_that_are_not_regular_are_refused_at_once() {
    let started = Instant::now();
    let err = DaemonConfig::load(Path::new("/dev/zero")).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("/dev/zero") && text.contains("character device"),
        "{text}"
    );
    assert!(matches!(&err, ConfigError::File { .. }), "{err:?}");

    let tmp = tempfile::tempdir().unwrap();
    let err = DaemonConfig::load(tmp.path()).unwrap_err().to_string();
    assert!(err.contains("directory, not a regular file"), "{err}");

    // A FIFO with no writer would block a plain open; it is refused instead.
    let fifo = tmp.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let err = DaemonConfig::load(&fifo).unwrap_err().to_string();
        assert!(err.contains("FIFO"), "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));

    let big = tmp.path().join("big.yaml");
    fs::write(&big, "#".repeat((1 << 20) + 1)).unwrap();
    let err = DaemonConfig::load(&big).unwrap_err().to_string();
    assert!(err.contains("larger than 1048576 bytes"), "{err}");

    let missing = tmp.path().join("missing.yaml");
    let err = DaemonConfig::load(&missing).unwrap_err().to_string();
    assert!(err.contains("missing.yaml: cannot read"), "{err}");
}

#[test]
fn timing_only_validation_ignores_missing_files() {
    let mut config = DaemonConfig::parse(&shipped_text()).unwrap();
    config.validate_timing().unwrap();
    config.timing = TimingConfig {
        heartbeat_interval_ms: 300,
        ..TimingConfig::default()
    };
    let err = config.validate_timing().unwrap_err();
    assert_eq!(err.field(), Some("timing.heartbeat_interval_ms"));
}

// ---------------------------------------------------------------------------------------------
// The binary.

/// Runs `regent ARGS`; returns (success, stdout, stderr).
fn regent(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_regent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = regent(args);
    assert!(success, "regent {args:?} failed: {stderr}");
    stdout
}

fn fails(args: &[&str]) -> String {
    let (success, stdout, stderr) = regent(args);
    assert!(!success, "regent {args:?} should fail; printed {stdout}");
    stderr
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn cert_info(path: &Path) -> CertInfo {
    let der = files::read_certificates(path).unwrap().remove(0);
    CertInfo::parse(der.as_ref()).unwrap()
}

#[test]
fn explain_timing_on_the_shipped_file() {
    let shipped = shipped_path();
    let out = ok(&["explain-timing", shipped.to_str().unwrap()]);
    for needle in [
        "lease: 475 ms",
        "= election_timeout_min × (1 − clock_drift_max) = 500 ms × (1 − 0.05)",
        "lease safety margin: 25 ms",
        "unplanned failover (the leader crashes or is cut off), worst case: 1035 ms",
        "= 2 × 500 + 3 × 5 + 4 × 5 = 1035 ms",
        "planned switchover (leadership transfer), pause in writes: 42.5 ms",
        "500 + 100 + 5 = 605 ms",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in\n{out}");
    }

    let fx = Fixture::new();
    let slow = fx.write(
        "slow.yaml",
        &format!("{BASE}timing:\n  heartbeat_interval_ms: 200\n"),
    );
    let err = fails(&["explain-timing", slow.to_str().unwrap()]);
    assert!(err.contains("timing.heartbeat_interval_ms"), "{err}");
}

#[test]
fn check_config_reports_ok_or_the_error() {
    let fx = Fixture::new();
    let good = fx.write("good.yaml", BASE);
    let out = ok(&["check-config", good.to_str().unwrap()]);
    assert_eq!(
        out.trim(),
        format!("{}: ok (node 1 of cluster demo, 3 members)", good.display())
    );
    let bad = fx.write("bad.yaml", &BASE.replace("{ id: 3,", "{ id: 2,"));
    let err = fails(&["check-config", bad.to_str().unwrap()]);
    assert!(err.contains("bad.yaml: members[2].id"), "{err}");
}

#[test]
fn cluster_init_makes_three_nodes_that_pass_check_config() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let dir_arg = dir.to_str().unwrap();
    let init = |extra: &[&str]| {
        let mut args = vec![
            "admin",
            "cluster",
            "init",
            "--dir",
            dir_arg,
            "--cluster",
            "demo",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = init(&[
        "--node",
        "1=127.0.0.1:7401",
        "--node",
        "2=127.0.0.1:7402",
        "--node",
        "3=localhost:7403",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(&args);
    assert!(out.contains("CA created"), "{out}");
    let dir = dir.canonicalize().unwrap();
    for id in 1..=3u64 {
        let node = dir.join(format!("node{id}"));
        let config = node.join("regent.yaml");
        assert!(
            out.contains(&format!("regent run --config {}", config.display())),
            "{out}"
        );
        let checked = ok(&["check-config", config.to_str().unwrap()]);
        assert!(
            checked.contains(&format!("ok (node {id} of cluster demo, 3 members)")),
            "{checked}"
        );
        assert_eq!(mode(&node.join("node.key")), 0o600);
        let info = cert_info(&node.join("node.pem"));
        assert_eq!(
            info.identity().unwrap(),
            NodeIdentity::new("demo", NodeId(id)).unwrap()
        );
        let text = fs::read_to_string(&config).unwrap();
        assert!(text.starts_with("# regent configuration of node"), "{text}");
        let loaded = DaemonConfig::load(&config).unwrap();
        assert_eq!(loaded.data_dir, node.join("data"));
        assert_eq!(loaded.socket, node.join("regent.sock"));
        assert_eq!(loaded.tls.key, node.join("node.key"));
        assert_eq!(loaded.members.len(), 3);
        assert_eq!(
            fs::read(node.join("ca-bundle.pem")).unwrap(),
            fs::read(dir.join("ca/bundle.pem")).unwrap()
        );
    }
    let node1 = cert_info(&dir.join("node1/node.pem"));
    assert_eq!(
        node1.ip_addrs,
        vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    let node3 = cert_info(&dir.join("node3/node.pem"));
    assert!(
        node3.dns_names.contains(&"localhost".to_string()),
        "{node3:?}"
    );
    assert!(node3.ip_addrs.is_empty(), "{node3:?}");

    // A second init on the same directory refuses, names the node, and changes nothing.
    let before = fs::read(dir.join("node1/regent.yaml")).unwrap();
    let err = fails(&args);
    assert!(
        err.contains("node1") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(fs::read(dir.join("node1/regent.yaml")).unwrap(), before);

    // A refusal for one node writes nothing for the others.
    let again = init(&["--node", "4=127.0.0.1:7404", "--node", "2=127.0.0.1:7402"]);
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    let err = fails(&again);
    assert!(err.contains("node2"), "{err}");
    assert!(!dir.join("node4").exists());

    // A new node in the same directory reuses the CA.
    let add = init(&["--node", "4=127.0.0.1:7404"]);
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    let out = ok(&add);
    assert!(out.contains("CA reused"), "{out}");
    let node4 = cert_info(&dir.join("node4/node.pem"));
    assert_eq!(node4.issuer, cert_info(&dir.join("node1/node.pem")).issuer);
}

#[test]
fn cluster_init_places_data_and_sockets_where_asked_and_checks_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let dir = base.join("c");
    let data = base.join("data");
    let run = base.join("run");
    ok(&[
        "admin",
        "cluster",
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--cluster",
        "edge-2",
        "--node",
        "7=[::1]:7407",
        "--data-root",
        data.to_str().unwrap(),
        "--socket-dir",
        run.to_str().unwrap(),
        "--days",
        "10",
    ]);
    let config = DaemonConfig::load(&dir.join("node7/regent.yaml")).unwrap();
    assert_eq!(config.data_dir, data.join("node7"));
    assert_eq!(config.socket, run.join("node7.sock"));
    assert_eq!(config.listen, "[::1]:7407".parse().unwrap());
    let info = cert_info(&dir.join("node7/node.pem"));
    assert!(info.days_left(regent_transport::pki::identity::unix_now()) <= 10);

    // A socket path too long for sun_path is refused before anything is written.
    let long = base.join("s".repeat(120));
    let other = base.join("other");
    let err = fails(&[
        "admin",
        "cluster",
        "init",
        "--dir",
        other.to_str().unwrap(),
        "--cluster",
        "demo",
        "--node",
        "1=127.0.0.1:7401",
        "--socket-dir",
        long.to_str().unwrap(),
    ]);
    assert!(err.contains("107"), "{err}");
    assert!(!other.join("node1").exists());
    assert!(!other.join("ca").exists());

    // Duplicate ids and addresses are refused.
    for nodes in [
        ["1=127.0.0.1:7401", "1=127.0.0.1:7402"],
        ["1=127.0.0.1:7401", "2=127.0.0.1:7401"],
    ] {
        let err = fails(&[
            "admin",
            "cluster",
            "init",
            "--dir",
            other.to_str().unwrap(),
            "--cluster",
            "demo",
            "--node",
            nodes[0],
            "--node",
            nodes[1],
        ]);
        assert!(err.contains("unique"), "{err}");
    }
}
