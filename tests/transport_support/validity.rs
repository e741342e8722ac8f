//! Certificates valid over a chosen period (expired, not yet valid), for the refusal tests.

use super::pki::{Pki, CLUSTER};
use regent_raft::NodeId;
use regent_transport::pki::issue::{IssueRequest, Validity};
use regent_transport::pki::{NodeIdentity, TlsPaths};

impl Pki {
    /// A certificate valid from `from_days` to `to_days` relative to now.
    pub fn node_with_validity(
        &self,
        name: &str,
        id: u64,
        from_days: i64,
        to_days: i64,
    ) -> TlsPaths {
        let identity = NodeIdentity::new(CLUSTER, NodeId(id)).unwrap();
        let now = regent_transport::pki::identity::unix_now();
        let mut request = IssueRequest::new(identity, 30);
        request.validity = Validity {
            not_before_unix: now + from_days * 86_400,
            not_after_unix: now + to_days * 86_400,
        };
        self.issue_into(name, request)
    }
}
