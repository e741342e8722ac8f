//! `regent admin` as an operator runs it: the real binary in temp dirs.

use regent_raft::NodeId;
use regent_transport::pki::identity::unix_now;
use regent_transport::pki::{files, CertInfo, NodeIdentity, NodeMaterial, TlsPaths};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

/// Runs `regent admin ARGS` in `dir`; returns (exit status, stdout, stderr).
fn admin(dir: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_regent"))
        .arg("admin")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (status, stdout, stderr) = admin(dir, args);
    assert!(status.success(), "regent admin {args:?} failed: {stderr}");
    stdout
}

/// Runs a command that must be refused: exit code 1 (an error regent reports) or 2 (a usage
/// error from clap). A panic (101) or a signal is a bug, never an acceptable refusal.
fn fails(dir: &Path, args: &[&str]) -> String {
    let (status, stdout, stderr) = admin(dir, args);
    assert_refused(status, args, &stdout, &stderr);
    stderr
}

fn assert_refused(status: ExitStatus, args: &[&str], stdout: &str, stderr: &str) {
    match status.code() {
        Some(1) | Some(2) => {}
        Some(0) => panic!("regent admin {args:?} should fail; printed {stdout}"),
        Some(101) => panic!("regent admin {args:?} panicked:\n{stderr}"),
        other => panic!("regent admin {args:?} ended with {other:?} ({status}):\n{stderr}"),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn cert_info(path: &Path) -> CertInfo {
    let der = files::read_certificates(path).unwrap().remove(0);
    CertInfo::parse(der.as_ref()).unwrap()
}

#[test]
fn ca_init_issue_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["ca", "init", "--dir", "ca"]);
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    assert!(cert_info(&d.join("ca/ca.pem")).is_ca);
    let err = fails(d, &["ca", "init", "--dir", "ca"]);
    assert!(err.contains("already exists"), "{err}");

    let out = ok(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--node-id",
            "2",
            "--cluster",
            "prod",
            "--out",
            "n2",
            "--dns",
            "db2.example.com",
            "--ip",
            "127.0.0.2",
            "--days",
            "90",
        ],
    );
    assert!(out.contains("regent://prod/node/2"), "{out}");
    assert_eq!(mode(&d.join("n2/node.key")), 0o600);
    let info = cert_info(&d.join("n2/node.pem"));
    assert_eq!(info.uris, vec!["regent://prod/node/2".to_string()]);
    assert_eq!(
        info.dns_names,
        vec!["n2.prod.regent".to_string(), "db2.example.com".to_string()]
    );
    assert_eq!(
        info.ip_addrs,
        vec!["127.0.0.2".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!((89..=90).contains(&info.days_left(unix_now())));

    // The files load as a node identity, with every check.
    let paths = TlsPaths {
        cert: d.join("n2/node.pem"),
        key: d.join("n2/node.key"),
        ca_bundle: d.join("n2/ca-bundle.pem"),
    };
    NodeMaterial::load(&paths, &NodeIdentity::new("prod", NodeId(2)).unwrap()).unwrap();

    let inspect = ok(d, &["cert", "inspect", "n2/node.pem"]);
    for want in [
        "subject:     O=regent, CN=regent node 2 (prod)",
        "node:        node 2 of cluster prod (regent://prod/node/2)",
        "DNS SANs:    n2.prod.regent, db2.example.com",
        "IP SANs:     127.0.0.2",
        "issuer:      O=regent, CN=regent cluster CA",
        "not after:",
    ] {
        assert!(
            inspect.contains(want),
            "inspect should show {want:?}:\n{inspect}"
        );
    }
    assert!(
        inspect.contains("days left:   89") || inspect.contains("days left:   90"),
        "{inspect}"
    );

    // Issuing again into the same directory never overwrites a key.
    let err = fails(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--node-id",
            "2",
            "--cluster",
            "prod",
            "--out",
            "n2",
        ],
    );
    assert!(
        err.contains("already exists") && err.contains("rotate-certs"),
        "{err}"
    );
    // Bad input is refused with the field named.
    let err = fails(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--node-id",
            "0",
            "--cluster",
            "prod",
            "--out",
            "x",
        ],
    );
    assert!(err.contains("node id"), "{err}");
    let err = fails(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--node-id",
            "1",
            "--cluster",
            "Prod_1",
            "--out",
            "x",
        ],
    );
    assert!(err.contains("cluster name"), "{err}");
    let err = fails(d, &["cert", "inspect", "ca/ca.key"]);
    assert!(err.contains("no PEM CERTIFICATE"), "{err}");
}

#[test]
fn keys_readable_by_others_are_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["ca", "init", "--dir", "ca"]);
    ok(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--node-id",
            "1",
            "--cluster",
            "c",
            "--out",
            "n1",
        ],
    );

    std::fs::set_permissions(d.join("ca/ca.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--node-id",
            "3",
            "--cluster",
            "c",
            "--out",
            "n3",
        ],
    );
    assert!(err.contains("chmod 600 ca/ca.key"), "{err}");
    assert!(!d.join("n3/node.key").exists());
    std::fs::set_permissions(d.join("ca/ca.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

    std::fs::set_permissions(
        d.join("n1/node.key"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let err = fails(
        d,
        &[
            "rotate-certs",
            "--ca-dir",
            "ca",
            "--cert",
            "n1/node.pem",
            "--key",
            "n1/node.key",
        ],
    );
    assert!(
        err.contains("chmod 600 n1/node.key") && err.contains("0640"),
        "{err}"
    );
}

#[test]
fn rotate_certs_renews_with_a_new_key_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["ca", "init", "--dir", "ca"]);
    ok(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--node-id",
            "5",
            "--cluster",
            "c",
            "--out",
            "n5",
            "--dns",
            "h5",
            "--days",
            "10",
        ],
    );
    let old_key = std::fs::read(d.join("n5/node.key")).unwrap();
    let old = cert_info(&d.join("n5/node.pem"));

    let out = ok(
        d,
        &[
            "rotate-certs",
            "--ca-dir",
            "ca",
            "--cert",
            "n5/node.pem",
            "--key",
            "n5/node.key",
            "--days",
            "200",
        ],
    );
    let new = cert_info(&d.join("n5/node.pem"));
    assert_ne!(
        std::fs::read(d.join("n5/node.key")).unwrap(),
        old_key,
        "the key must be new"
    );
    assert_eq!(mode(&d.join("n5/node.key")), 0o600);
    assert_ne!(new.serial, old.serial);
    assert_eq!(new.uris, old.uris);
    assert_eq!(new.dns_names, old.dns_names);
    assert!(new.days_left(unix_now()) >= 199);
    assert!(
        out.contains(&format!("old: serial {}", old.serial)),
        "{out}"
    );
    assert!(
        out.contains(&format!("new: serial {}", new.serial)),
        "{out}"
    );
    assert!(out.contains("expires") && out.contains("reload"), "{out}");
    // No temporary files are left beside the replaced ones.
    let names: Vec<_> = std::fs::read_dir(d.join("n5"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // The pair still loads as one identity.
    let paths = TlsPaths {
        cert: d.join("n5/node.pem"),
        key: d.join("n5/node.key"),
        ca_bundle: d.join("n5/ca-bundle.pem"),
    };
    NodeMaterial::load(&paths, &NodeIdentity::new("c", NodeId(5)).unwrap()).unwrap();

    // A certificate without its key is an error, not a renewal.
    std::fs::remove_file(d.join("n5/node.key")).unwrap();
    let err = fails(
        d,
        &[
            "rotate-certs",
            "--ca-dir",
            "ca",
            "--cert",
            "n5/node.pem",
            "--key",
            "n5/node.key",
        ],
    );
    assert!(err.contains("has no key"), "{err}");
}

#[test]
fn ca_rotation_bundle_then_drop_old() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["ca", "init", "--dir", "ca"]);
    let old_ca = cert_info(&d.join("ca/ca.pem"));
    let err = fails(d, &["ca", "drop-old", "--dir", "ca"]);
    assert!(err.contains("nothing to drop"), "{err}");

    let out = ok(d, &["ca", "rotate", "--dir", "ca"]);
    assert!(out.contains("trusts both"), "{out}");
    let new_ca = cert_info(&d.join("ca/ca.pem"));
    assert_ne!(new_ca.serial, old_ca.serial);
    let bundle: Vec<_> = files::read_certificates(&d.join("ca/bundle.pem"))
        .unwrap()
        .iter()
        .map(|c| CertInfo::parse(c.as_ref()).unwrap().serial)
        .collect();
    assert_eq!(bundle, vec![new_ca.serial.clone(), old_ca.serial.clone()]);
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    assert_eq!(mode(&d.join("ca/ca.old.key")), 0o600);
    let show = ok(d, &["ca", "show", "--dir", "ca"]);
    assert!(
        show.contains("bundle CA #2") && show.contains("rotation is in progress"),
        "{show}"
    );
    let err = fails(d, &["ca", "rotate", "--dir", "ca"]);
    assert!(err.contains("drop-old"), "{err}");

    // Certificates issued now come from the new CA.
    ok(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--node-id",
            "1",
            "--cluster",
            "c",
            "--out",
            "n1",
        ],
    );
    assert_eq!(cert_info(&d.join("n1/node.pem")).issuer, new_ca.subject);

    ok(d, &["ca", "drop-old", "--dir", "ca"]);
    let bundle = files::read_certificates(&d.join("ca/bundle.pem")).unwrap();
    assert_eq!(bundle.len(), 1);
    assert_eq!(
        CertInfo::parse(bundle[0].as_ref()).unwrap().serial,
        new_ca.serial
    );
    assert!(!d.join("ca/ca.old.key").exists() && !d.join("ca/ca.old.pem").exists());
    let inspect = ok(d, &["cert", "inspect", "ca/bundle.pem"]);
    assert!(inspect.contains("a CA certificate"), "{inspect}");
}

#[test]
fn rotate_certs_refuses_another_nodes_key_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["ca", "init", "--dir", "ca"]);
    for id in ["1", "2"] {
        let out = format!("n{id}");
        ok(
            d,
            &[
                "cert",
                "issue",
                "--ca-dir",
                "ca",
                "--node-id",
                id,
                "--cluster",
                "c",
                "--out",
                &out,
            ],
        );
    }
    let files = ["n1/node.pem", "n1/node.key", "n2/node.pem", "n2/node.key"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(d.join(f)).unwrap())
        .collect();
    let err = fails(
        d,
        &[
            "rotate-certs",
            "--ca-dir",
            "ca",
            "--cert",
            "n1/node.pem",
            "--key",
            "n2/node.key",
        ],
    );
    assert!(
        err.contains("n1/node.pem") && err.contains("n2/node.key") && err.contains("belong"),
        "the refusal names both files: {err}"
    );
    for (file, old) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(d.join(file)).unwrap(), old, "{file} changed");
    }
    for dir in ["n1", "n2"] {
        assert_eq!(std::fs::read_dir(d.join(dir)).unwrap().count(), 3, "{dir}");
    }
    // The right pair still renews.
    ok(
        d,
        &[
            "rotate-certs",
            "--ca-dir",
            "ca",
            "--cert",
            "n2/node.pem",
            "--key",
            "n2/node.key",
        ],
    );
}

/// When `admin_bounded` kills a command that still runs (one blocked on a FIFO, or reading a
/// device for ever).
const ADMIN_KILLED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
/// A refusal "at once": a command that blocks or reads on is killed at `ADMIN_KILLED_AFTER`
/// and one that reads a device into memory trips the RSS bound; this leaves a process start
/// on a busy machine seconds (it takes milliseconds).
const REFUSED_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// What a bounded run of `regent admin` did.
struct Bounded {
    status: ExitStatus,
    stderr: String,
    elapsed: std::time::Duration,
    max_rss_bytes: u64,
}

/// Runs `regent admin ARGS` with its address space capped at 1 GiB (so a reader without a
/// cap fails fast instead of eating the machine) and kills it after `ADMIN_KILLED_AFTER`;
/// reports how long it ran and its peak resident memory.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which also reports its peak memory"
)]
fn admin_bounded(dir: &Path, args: &[&str]) -> Bounded {
    use std::io::Read;
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::time::{Duration, Instant};
    let mut command = Command::new(env!("CARGO_BIN_EXE_regent"));
    command
        .arg("admin")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let mut child = command.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut raw_status = 0;
    // SAFETY: rusage is plain data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pointers to live locals; `pid` is our unreaped child.
        let rc = unsafe { libc::wait4(pid, &mut raw_status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break;
        }
        assert_eq!(rc, 0, "wait4: {}", std::io::Error::last_os_error());
        if start.elapsed() > ADMIN_KILLED_AFTER {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Bounded {
        status: ExitStatus::from_raw(raw_status),
        stderr,
        elapsed,
        max_rss_bytes: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
    }
}

#[test]
fn devices_pipes_directories_and_huge_files_are_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["ca", "init", "--dir", "ca"]);
    ok(
        d,
        &[
            "cert",
            "issue",
            "--ca-dir",
            "ca",
            "--node-id",
            "1",
            "--cluster",
            "c",
            "--out",
            "n1",
        ],
    );
    // A CA directory whose certificate and bundle are links to /dev/zero, with a good key.
    std::fs::create_dir(d.join("zero-ca")).unwrap();
    std::fs::copy(d.join("ca/ca.key"), d.join("zero-ca/ca.key")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero-ca/ca.pem")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", d.join("zero-ca/bundle.pem")).unwrap();
    let fifo =
        std::ffi::CString::new(d.join("pipe.pem").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    std::fs::write(d.join("big.pem"), vec![b'A'; 3 << 20]).unwrap();

    let not_regular = "not a regular file";
    let cases: &[(&[&str], &str, &str)] = &[
        (&["cert", "inspect", "/dev/zero"], "/dev/zero", not_regular),
        (&["cert", "inspect", "pipe.pem"], "pipe.pem", "FIFO"),
        (&["cert", "inspect", "ca"], "ca", "a directory"),
        (
            &["cert", "inspect", "big.pem"],
            "big.pem",
            "larger than 1048576 bytes",
        ),
        (
            &[
                "rotate-certs",
                "--ca-dir",
                "ca",
                "--cert",
                "/dev/zero",
                "--key",
                "n1/node.key",
            ],
            "/dev/zero",
            not_regular,
        ),
        (
            &[
                "rotate-certs",
                "--ca-dir",
                "ca",
                "--cert",
                "n1/node.pem",
                "--key",
                "/dev/zero",
            ],
            "/dev/zero",
            not_regular,
        ),
        (
            &[
                "cert",
                "issue",
                "--ca-dir",
                "zero-ca",
                "--node-id",
                "2",
                "--cluster",
                "c",
                "--out",
                "n2",
            ],
            "zero-ca/ca.pem",
            not_regular,
        ),
        (
            &["ca", "show", "--dir", "zero-ca"],
            "zero-ca/bundle.pem",
            not_regular,
        ),
    ];
    for (args, path, why) in cases {
        let run = admin_bounded(d, args);
        assert_refused(run.status, args, "", &run.stderr);
        assert!(
            run.stderr.contains(&format!("{path}: ")) && run.stderr.contains(why),
            "regent admin {args:?} should name {path} and say {why:?}: {}",
            run.stderr
        );
        assert!(
            run.elapsed < REFUSED_WITHIN,
            "regent admin {args:?} took {:?}",
            run.elapsed
        );
        assert!(
            run.max_rss_bytes < 100 << 20,
            "regent admin {args:?} used {} MiB",
            run.max_rss_bytes >> 20
        );
    }
    // Nothing was written by the refused commands.
    assert!(!d.join("n2").exists());
    assert_eq!(std::fs::read_dir(d.join("n1")).unwrap().count(), 3);
}

#[test]
fn wildcards_only_as_the_whole_leftmost_label() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["ca", "init", "--dir", "ca"]);
    let issue = |out: &str, dns: &str| {
        admin(
            d,
            &[
                "cert",
                "issue",
                "--ca-dir",
                "ca",
                "--node-id",
                "1",
                "--cluster",
                "c",
                "--out",
                out,
                "--dns",
                dns,
            ],
        )
    };
    for bad in ["*.*.x", "a.*.x", "f*.x", "*"] {
        let (status, stdout, stderr) = issue("bad", bad);
        assert_refused(status, &["--dns", bad], &stdout, &stderr);
        assert!(stderr.contains("DNS name"), "{bad}: {stderr}");
        assert!(!d.join("bad/node.key").exists(), "{bad}: a key was written");
    }
    let (status, _, stderr) = issue("good", "*.db.example.com");
    assert!(status.success(), "{stderr}");
    let info = cert_info(&d.join("good/node.pem"));
    assert!(info.dns_names.contains(&"*.db.example.com".to_string()));
}

#[test]
fn help_states_every_option_and_range_in_operator_terms() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for sub in [["ca", "init"], ["ca", "rotate"]] {
        let help = ok(d, &[sub[0], sub[1], "--help"]);
        assert!(help.contains("1..=36500"), "{sub:?}: {help}");
        assert!(help.contains("The CA directory"), "{sub:?}: {help}");
    }
    for sub in [&["ca", "drop-old"][..], &["ca", "show"]] {
        let help = ok(d, &[sub[0], sub[1], "--help"]);
        assert!(help.contains("The CA directory"), "{sub:?}: {help}");
    }
    let help = ok(d, &["cert", "issue", "--help"]);
    assert!(help.contains("1..=36500"), "{help}");
    let help = ok(d, &["rotate-certs", "--help"]);
    assert!(help.contains("1..=36500"), "{help}");
    assert!(help.contains("systemctl reload regent"), "{help}");
    assert!(
        !help.contains("::") && !help.contains("reload_identity"),
        "operators get operator terms, not Rust names: {help}"
    );
}

#[test]
fn an_os_error_is_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cases: [&[&str]; 3] = [
        &["cert", "inspect", "missing.pem"],
        &["ca", "show", "--dir", "nowhere"],
        &[
            "rotate-certs",
            "--ca-dir",
            "nowhere",
            "--cert",
            "a.pem",
            "--key",
            "a.key",
        ],
    ];
    for args in cases {
        let err = fails(d, args);
        assert_eq!(
            err.matches("No such file or directory").count(),
            1,
            "regent admin {args:?}: {err}"
        );
    }
}
