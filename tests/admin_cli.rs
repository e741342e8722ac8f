//! `regent admin` as an operator runs it: the real binary in temp dirs.

use regent::pki::identity::unix_now;
use regent::pki::{files, CertInfo, NodeIdentity, NodeMaterial, TlsPaths};
use regent::raft::NodeId;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Runs `regent admin ARGS` in `dir`; returns (success, stdout, stderr).
fn admin(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_regent"))
        .arg("admin")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = admin(dir, args);
    assert!(success, "regent admin {args:?} failed: {stderr}");
    stdout
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = admin(dir, args);
    assert!(
        !success,
        "regent admin {args:?} should fail; printed {stdout}"
    );
    stderr
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
