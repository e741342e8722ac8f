//! Loading a node's TLS material: every check of `NodeMaterial::load`, each refusal naming
//! the file and the fix.

mod transport_support {
    pub mod pki;
    pub mod validity;
}

use regent_raft::NodeId;
use regent_transport::pki::{NodeIdentity, NodeMaterial, PkiError, TlsPaths};
use std::os::unix::fs::PermissionsExt;
use transport_support::pki::{Pki, CLUSTER};

fn id(n: u64) -> NodeIdentity {
    NodeIdentity::new(CLUSTER, NodeId(n)).unwrap()
}

fn load(paths: &TlsPaths, n: u64) -> Result<NodeMaterial, PkiError> {
    NodeMaterial::load(paths, &id(n))
}

#[test]
fn good_material_loads_and_names_its_node() {
    let pki = Pki::new();
    let paths = pki.node("n1", 1);
    let material = load(&paths, 1).unwrap();
    assert_eq!(material.cert_info.identity().unwrap(), id(1));
    assert_eq!(material.ca_infos.len(), 1);
    // The key never shows in debug output.
    let debug = format!("{material:?}");
    assert!(!debug.contains("PRIVATE"), "{debug}");
}

#[test]
fn half_an_identity_is_an_error() {
    let pki = Pki::new();
    let paths = pki.node("n1", 1);
    let key = std::fs::read(&paths.key).unwrap();
    std::fs::remove_file(&paths.key).unwrap();
    assert!(matches!(load(&paths, 1), Err(PkiError::MissingKey { .. })));
    std::fs::write(&paths.key, key).unwrap();
    std::fs::set_permissions(&paths.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&paths.cert).unwrap();
    let err = load(&paths, 1).unwrap_err();
    assert!(matches!(err, PkiError::MissingCertificate { .. }), "{err}");
    assert!(err.to_string().contains("has no certificate"), "{err}");
}

#[test]
fn mismatched_key_and_readable_key_are_refused() {
    let pki = Pki::new();
    let paths = pki.node("n1", 1);
    let other = pki.node("n2", 2);
    std::fs::copy(&other.key, &paths.key).unwrap();
    assert!(matches!(load(&paths, 1), Err(PkiError::KeyMismatch { .. })));
    std::fs::set_permissions(&paths.key, std::fs::Permissions::from_mode(0o604)).unwrap();
    let err = load(&paths, 1).unwrap_err().to_string();
    assert!(
        err.contains(&format!("chmod 600 {}", paths.key.display())),
        "{err}"
    );
}

#[test]
fn wrong_identity_expired_and_untrusted_are_refused() {
    let pki = Pki::new();
    let paths = pki.node("n1", 1);
    assert!(matches!(
        load(&paths, 2),
        Err(PkiError::WrongIdentity { .. })
    ));
    let other_cluster = NodeIdentity::new("other", NodeId(1)).unwrap();
    assert!(NodeMaterial::load(&paths, &other_cluster).is_err());

    let expired = pki.node_with_validity("old", 1, -5, -1);
    let err = load(&expired, 1).unwrap_err().to_string();
    assert!(err.contains("expired"), "{err}");

    let stranger = Pki::new();
    stranger.install_bundle(&paths);
    let err = load(&paths, 1).unwrap_err();
    assert!(matches!(err, PkiError::Untrusted { .. }), "{err}");
}

#[test]
fn a_bundle_trusts_every_ca_it_holds_and_only_cas() {
    let old = Pki::new();
    let new = Pki::new();
    let paths = new.node("n1", 1);
    // A bundle of the old CA then the new one: the new certificate is trusted.
    let mut bundle = std::fs::read(old.ca.bundle_path()).unwrap();
    bundle.extend(std::fs::read(new.ca.bundle_path()).unwrap());
    std::fs::write(&paths.ca_bundle, &bundle).unwrap();
    let material = load(&paths, 1).unwrap();
    assert_eq!(material.ca_infos.len(), 2);
    // Only the old CA: refused.
    old.install_bundle(&paths);
    assert!(load(&paths, 1).is_err());
    // A node certificate in a bundle is refused.
    std::fs::copy(&paths.cert, &paths.ca_bundle).unwrap();
    let err = load(&paths, 1).unwrap_err().to_string();
    assert!(err.contains("not a CA certificate"), "{err}");
}
