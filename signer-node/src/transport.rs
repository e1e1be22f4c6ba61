//! The one place where the transport's blame becomes the protocol engine's.
//!
//! `keyfold-net` and `keyfold-mpc` do not depend on each other: net names the
//! parties of a session it blames as [`keyfold_net::SessionCulprit`]s, mpc
//! reads culprits from a [`TransportError`] in its delivery's error chain.
//! [`blaming`] wraps a [`SessionDelivery`] so that every error it yields is a
//! [`TransportError`] carrying the culprits of the [`NetError`], as data (the
//! error text is kept for people only).

use futures::sink::SinkMapErr;
use futures::stream::MapErr;
use futures::{SinkExt, TryStreamExt};
use keyfold_mpc::delivery::TransportError;
use keyfold_mpc::{BlameKind, Culprit};
use keyfold_net::{NetBlame, NetError, SessionDelivery, SessionIncoming, SessionOutgoing};
use round_based::Delivery;
use serde::de::DeserializeOwned;
use serde::Serialize;

type Adapt = fn(NetError) -> TransportError;

/// A [`SessionDelivery`] whose errors are [`TransportError`]s (a
/// `round_based::Delivery`, as an (incoming, outgoing) pair).
pub(crate) type Blaming<M> = (
    MapErr<SessionIncoming<M>, Adapt>,
    SinkMapErr<SessionOutgoing<M>, Adapt>,
);

/// Wraps `delivery` so that its errors name their culprits for `keyfold-mpc`.
pub(crate) fn blaming<M>(delivery: SessionDelivery<M>) -> Blaming<M>
where
    M: Serialize + DeserializeOwned + Send + Unpin + 'static,
{
    let (incoming, outgoing) = delivery.split();
    (
        incoming.map_err(transport_error as Adapt),
        outgoing.sink_map_err(transport_error as Adapt),
    )
}

/// The transport error `keyfold-mpc` understands: `e`'s culprits (session
/// indices, as net numbers them too), and its text.
pub(crate) fn transport_error(e: NetError) -> TransportError {
    let culprits = e
        .culprits()
        .into_iter()
        .filter_map(|c| {
            let kind = match c.blame {
                NetBlame::Silent => BlameKind::Silent,
                NetBlame::Gone => BlameKind::Disconnected,
                NetBlame::Malformed => BlameKind::Malformed,
                // A kind this build does not know blames nobody.
                _ => return None,
            };
            Some(Culprit::new(c.party, kind))
        })
        .collect();
    TransportError::new(culprits, e.to_string())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use keyfold_mpc::delivery::Envelope;
    use keyfold_mpc::{eddsa, KeyId, MpcError, ProtocolKind, RequestId, SessionDescriptor};
    use keyfold_mpc::{SignerSet, Threshold};
    use keyfold_net::{Ca, NetConfig, Node, NodeId, PeerAddr, Role};

    use super::*;

    fn node(name: &str) -> NodeId {
        NodeId::new(name).unwrap()
    }

    #[test]
    fn net_culprits_become_mpc_culprits() {
        let timeout = NetError::Timeout {
            session: [1; 32],
            waiting_for: vec![(2, node("signer-3"))],
            after: Duration::from_secs(1),
        };
        let t = transport_error(timeout);
        assert_eq!(t.culprits, vec![Culprit::new(2, BlameKind::Silent)]);
        assert!(t.reason.contains("signer-3"), "{}", t.reason);

        let gone = NetError::PeerGone {
            session: [1; 32],
            party: 0,
            node: node("signer-1"),
            reason: "connection lost".into(),
        };
        assert_eq!(
            transport_error(gone).culprits,
            vec![Culprit::new(0, BlameKind::Disconnected)]
        );
        let malformed = NetError::Malformed {
            session: [1; 32],
            party: 1,
            node: node("signer-2"),
            reason: "expected u32".into(),
        };
        assert_eq!(
            transport_error(malformed).culprits,
            vec![Culprit::new(1, BlameKind::Malformed)]
        );
        // Text that names a party blames nobody.
        let local = NetError::Encode {
            session: [1; 32],
            reason: "party 1 (signer-2) is gone".into(),
        };
        assert!(transport_error(local).culprits.is_empty());
    }

    /// Over real QUIC: signer-3 (party 2) never joins an Ed25519 key
    /// generation; both others fail naming it, as data, and only it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn absent_party_is_named_through_the_adapter() {
        let ca = Ca::generate("test ca").unwrap();
        // signer-3's node runs but never joins: it parks the others' streams
        // for its own round timeout, longer than the session's, so they see
        // silence (not a refusal) first.
        let cfg = NetConfig {
            connect_timeout: Duration::from_secs(3),
            round_timeout: Duration::from_secs(10),
            ..NetConfig::default()
        };
        let nodes: Vec<Node> = (1..=3)
            .map(|i| {
                let id = ca
                    .issue_identity(&node(&format!("signer-{i}")), Role::Signer)
                    .unwrap();
                Node::bind("127.0.0.1:0".parse().unwrap(), &id, cfg.clone()).unwrap()
            })
            .collect();
        let parties: Vec<PeerAddr> = nodes
            .iter()
            .map(|n| PeerAddr::new(n.node_id().clone(), n.local_addr().unwrap()))
            .collect();
        let threshold = Threshold::new(2, 3).unwrap();
        let desc = SessionDescriptor::new(
            ProtocolKind::EddsaKeygen,
            KeyId::random(),
            RequestId::new("adapter-test").unwrap(),
            threshold,
            SignerSet::all(3),
        )
        .unwrap();
        let mut handles = Vec::new();
        for i in 0..2u16 {
            let d = nodes[usize::from(i)]
                .join_session::<Envelope<eddsa::KeygenMsg>>(
                    *desc.id().as_bytes(),
                    i,
                    parties.clone(),
                    Duration::from_secs(2),
                )
                .await
                .unwrap();
            let desc = desc.clone();
            handles.push(tokio::spawn(async move {
                eddsa::keygen(&desc, i, blaming(d)).await
            }));
        }
        for h in handles {
            let err = h.await.unwrap().unwrap_err();
            assert!(matches!(err, MpcError::Transport { .. }), "{err}");
            assert_eq!(
                err.culprits(),
                vec![Culprit::new(2, BlameKind::Silent)],
                "{err}"
            );
        }
    }
}
