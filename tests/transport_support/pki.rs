//! A CA in a temp dir issuing node certificates, for the transport and PKI tests.

use regent_raft::NodeId;
use regent_transport::pki::issue::{self, IssueRequest};
use regent_transport::pki::{CaDir, NodeIdentity, TlsPaths};
use std::path::Path;

pub const CLUSTER: &str = "test";

/// A CA (and its directory) under a temp dir, issuing node certificates.
pub struct Pki {
    pub root: tempfile::TempDir,
    pub ca: CaDir,
}

impl Pki {
    pub fn new() -> Pki {
        let root = tempfile::tempdir().unwrap();
        let ca = CaDir::new(root.path().join("ca"));
        ca.init(30).unwrap();
        Pki { root, ca }
    }

    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// Issues a good certificate for node `id` into `<root>/<name>/`.
    pub fn node(&self, name: &str, id: u64) -> TlsPaths {
        let identity = NodeIdentity::new(CLUSTER, NodeId(id)).unwrap();
        self.issue_into(name, IssueRequest::new(identity, 30))
    }

    /// Where the files of the certificate issued as `name` are.
    pub fn paths(&self, name: &str) -> TlsPaths {
        let dir = self.path().join(name);
        TlsPaths {
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
            ca_bundle: dir.join("ca-bundle.pem"),
        }
    }

    /// Issues whatever `request` says into `<root>/<name>/`, with this CA's bundle.
    pub fn issue_into(&self, name: &str, request: IssueRequest) -> TlsPaths {
        std::fs::create_dir_all(self.path().join(name)).unwrap();
        let paths = self.paths(name);
        let issued = issue::issue(&self.ca.load().unwrap(), &request).unwrap();
        issue::write_new(&issued, &paths.cert, &paths.key).unwrap();
        self.install_bundle(&paths);
        paths
    }

    /// Copies the CA directory's current bundle to a node.
    pub fn install_bundle(&self, paths: &TlsPaths) {
        let tmp = paths.ca_bundle.with_extension("tmp");
        std::fs::copy(self.ca.bundle_path(), &tmp).unwrap();
        std::fs::rename(&tmp, &paths.ca_bundle).unwrap();
    }
}
