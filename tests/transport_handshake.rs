//! The mutual-TLS handshake matrix, each case in both directions: the node with the bad
//! certificate dials (the good node refuses it as a server) and is dialed (the good node
//! refuses it as a client). Real QUIC on loopback, real certificates from rcgen.
//!
//! Every refusal must be reported with a reason by the refusing node, and the refused node
//! must never count the link as up — over TLS 1.3 its handshake completes before the server
//! has checked the client's certificate, so only the hello answer may make a link.

mod transport_support {
    pub mod cluster;
    pub mod node;
    pub mod pki;
    pub mod validity;
}

use regent_raft::NodeId;
use regent_transport::pki::{IssueRequest, NodeIdentity, NodeMaterial, TlsPaths};
use regent_transport::{LinkEvent, Refuser};
use std::net::SocketAddr;
use std::time::Duration;
use transport_support::{cluster::*, node::*, pki::*};

const WAIT: Duration = Duration::from_secs(10);

/// The certificate the bad node presents.
#[derive(Clone, Copy, Debug)]
enum Bad {
    OtherCa,
    Expired,
    NotYetValid,
    /// Signed by the right CA but naming node 3, a configured peer of the good node.
    OtherNode,
    /// Signed by the right CA, right id, other cluster.
    OtherCluster,
}

/// Issues the bad certificate, with the good CA's bundle so only the good node refuses.
fn bad_paths(pki: &Pki, other: &Pki, bad: Bad, id: u64) -> TlsPaths {
    let name = format!("bad-{bad:?}-{id}");
    let paths = match bad {
        Bad::OtherCa => other.node(&name, id),
        Bad::Expired => pki.node_with_validity(&name, id, -10, -1),
        Bad::NotYetValid => pki.node_with_validity(&name, id, 1, 10),
        Bad::OtherNode => pki.node(&name, 3),
        Bad::OtherCluster => {
            let identity = NodeIdentity::new("other", NodeId(id)).unwrap();
            pki.issue_into(&name, IssueRequest::new(identity, 30))
        }
    };
    pki.install_bundle(&paths);
    paths
}

/// What the good node's refusal must mention.
fn expected_reason(bad: Bad, good_is_server: bool) -> &'static str {
    match (bad, good_is_server) {
        (Bad::OtherCa, _) => "UnknownIssuer",
        (Bad::Expired, _) => "expired",
        (Bad::NotYetValid, _) => "not valid",
        (Bad::OtherNode, true) => "certificate names n3",
        (Bad::OtherNode, false) => {
            "names node 3 of cluster test, but this connection expects node 2"
        }
        (Bad::OtherCluster, true) => "not of cluster test",
        (Bad::OtherCluster, false) => {
            "names node 2 of cluster other, but this connection expects node 2"
        }
    }
}

async fn refused(bad: Bad, bad_dials: bool) {
    let pki = Pki::new();
    let other = Pki::new();
    let (good_id, bad_id) = if bad_dials { (2, 1) } else { (1, 2) };
    let (good_socket, good_addr) = bind();
    let (bad_socket, bad_addr) = bind();
    // Node 3 is configured (so a certificate naming it passes the peer check) but silent.
    let (_n3_socket, n3_addr) = bind();
    let good_paths = pki.node("good", good_id);
    let bad_paths = bad_paths(&pki, &other, bad, bad_id);
    let mut good = start(
        config(
            good_id,
            good_addr,
            &[(bad_id, bad_addr), (3, n3_addr)],
            &good_paths,
        ),
        good_socket,
    );
    let bad_material = NodeMaterial::load_unverified(&bad_paths).unwrap();
    // The full checks refuse to run with this certificate at all.
    let identity = NodeIdentity::new(CLUSTER, NodeId(bad_id)).unwrap();
    assert!(
        NodeMaterial::load(&bad_paths, &identity).is_err(),
        "{bad:?}"
    );
    let mut bad_node = start_with_material(
        config(bad_id, bad_addr, &[(good_id, good_addr)], &bad_paths),
        bad_socket,
        Some(bad_material),
    );

    let good_is_server = bad_dials;
    let want = expected_reason(bad, good_is_server);
    let event = wait_event(&mut good.events, WAIT, "the good node's refusal", |e| {
        matches!(
            e,
            LinkEvent::Rejected {
                by: Refuser::Us,
                ..
            }
        )
    })
    .await;
    let LinkEvent::Rejected { reason, .. } = &event else {
        unreachable!()
    };
    println!("{bad:?}, bad node dials: {bad_dials}: refused with {reason:?}");
    assert!(
        reason.to_lowercase().contains(&want.to_lowercase()),
        "{bad:?} (bad dials: {bad_dials}): reason {reason:?} should mention {want:?}"
    );
    // The refused side learns it was refused and never counts a link.
    wait_event(
        &mut bad_node.events,
        WAIT,
        "the bad node learning it was refused",
        |e| {
            matches!(
                e,
                LinkEvent::Rejected {
                    by: Refuser::Peer,
                    ..
                }
            )
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (node, peer) in [(&good, bad_id), (&bad_node, good_id)] {
        let status = node.handle.peer_status(NodeId(peer)).unwrap();
        assert_eq!(
            status.links_up,
            0,
            "{bad:?}: {} counted a link",
            node.handle.node_id()
        );
    }
    good.shutdown().await;
    bad_node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_pair_is_accepted_both_ways() {
    for ids in [[1, 2], [2, 1]] {
        let pki = Pki::new();
        let nodes = start_cluster(&pki, &ids);
        for (a, b) in [(0, 1), (1, 0)] {
            let peer = NodeId(ids[b]);
            assert!(nodes[a].handle.wait_connected(peer, WAIT).await);
            let cert = nodes[a]
                .handle
                .peer_status(peer)
                .unwrap()
                .peer_cert
                .unwrap();
            assert_eq!(cert.identity().unwrap().node_id, peer);
        }
        for node in nodes {
            node.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    refused(Bad::OtherCa, true).await;
    refused(Bad::OtherCa, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused() {
    refused(Bad::Expired, true).await;
    refused(Bad::Expired, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_yet_valid_certificate_is_refused() {
    refused(Bad::NotYetValid, true).await;
    refused(Bad::NotYetValid, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_identity_is_refused() {
    refused(Bad::OtherNode, true).await;
    refused(Bad::OtherNode, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clusters_identity_is_refused() {
    refused(Bad::OtherCluster, true).await;
    refused(Bad::OtherCluster, false).await;
}

/// A raw QUIC client presenting no certificate. A TLS 1.3 server always presents one, so the
/// other direction does not exist; instead both nodes of a pair — the one that dials and the
/// one that accepts — are tried as its target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused_by_either_node() {
    let pki = Pki::new();
    let mut nodes = start_cluster(&pki, &[1, 2]);
    assert!(nodes[0].handle.wait_connected(NodeId(2), WAIT).await);
    for node in nodes.iter_mut() {
        let addr = node.handle.local_addr();
        // The TLS 1.3 trap: the client's handshake succeeds...
        let conn = raw_connect_without_certificate(addr).await;
        // ...but the server refuses it, and the hello never gets an answer.
        let answered = match conn.open_bi().await {
            Ok((mut send, mut recv)) => {
                let _ = send.write_all(&[0u8; 16]).await;
                let mut buf = [0u8; 16];
                recv.read(&mut buf).await.is_ok()
            }
            Err(_) => false,
        };
        assert!(!answered, "{}: no answer must come", node.handle.node_id());
        let close = conn.closed().await.to_string();
        assert!(close.contains("peer sent no certificates"), "{close}");
        let event = wait_event(
            &mut node.events,
            WAIT,
            "refusal of a client without certificate",
            |e| {
                matches!(
                    e,
                    LinkEvent::Rejected {
                        by: Refuser::Us,
                        ..
                    }
                )
            },
        )
        .await;
        let LinkEvent::Rejected { reason, peer, .. } = event else {
            unreachable!()
        };
        assert_eq!(peer, None);
        assert!(
            reason.contains("no certificates"),
            "{}: {reason}",
            node.handle.node_id()
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

async fn raw_connect_without_certificate(addr: SocketAddr) -> quinn::Connection {
    use quinn::crypto::rustls::QuicClientConfig;
    let provider = regent_transport::pki::crypto_provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAnyServer))
        .with_no_client_auth();
    tls.alpn_protocols = vec![regent_transport::tls::ALPN.to_vec()];
    let config = quinn::ClientConfig::new(std::sync::Arc::new(
        QuicClientConfig::try_from(tls).unwrap(),
    ));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint
        .connect_with(config, addr, "regent-peer")
        .unwrap()
        .await
        .expect("over TLS 1.3 the client's handshake completes before the server refuses it")
}

#[derive(Debug)]
struct AcceptAnyServer;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        regent_transport::pki::crypto_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
