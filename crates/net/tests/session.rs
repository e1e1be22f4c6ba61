//! MPC sessions over real QUIC on 127.0.0.1: FROST and cggmp21 ECDSA key
//! generation and signing, verified with ed25519-dalek / k256; timeouts naming
//! the absent party; forged senders and outsiders refused; a party whose
//! connection dies; a party that restarted (stale cached connection).

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use keyfold_mpc::delivery::Envelope;
use keyfold_mpc::ecdsa::{self, HashAlg};
use keyfold_mpc::{
    eddsa, test_fixtures, KeyId, MpcError, ProtocolKind, RequestId, SessionDescriptor, SignerSet,
    Threshold,
};
use keyfold_net::{Ca, NetBlame, NetError, Node, PeerAddr, Role, SessionCulprit, SessionDelivery};
use round_based::{Delivery, MessageType, Outgoing};
use serde::de::DeserializeOwned;
use serde::Serialize;

const MSG: &[u8] = b"withdraw 1.5 BTC to bc1q-treasury";
const ROUND: Duration = Duration::from_secs(20);

fn signers(ca: &Ca, n: usize) -> Vec<Node> {
    (1..=n)
        .map(|i| node(ca, &format!("signer-{i}"), Role::Signer))
        .collect()
}

fn keygen_descriptor(protocol: ProtocolKind, t: u16, n: u16) -> SessionDescriptor {
    SessionDescriptor::new(
        protocol,
        KeyId::random(),
        RequestId::new("net-test-keygen").unwrap(),
        Threshold::new(t, n).unwrap(),
        SignerSet::all(n),
    )
    .unwrap()
}

fn sign_descriptor(
    protocol: ProtocolKind,
    key: KeyId,
    threshold: Threshold,
    signers: &[u16],
) -> SessionDescriptor {
    SessionDescriptor::new(
        protocol,
        key,
        RequestId::new("net-test-sign").unwrap(),
        threshold,
        SignerSet::new(signers, threshold).unwrap(),
    )
    .unwrap()
}

/// Runs `party(position, delivery)` on each of `members` (indices into
/// `nodes`; session index = position in `members`), each in its own task.
/// Member `late` (if any) joins 300 ms after the others, so their streams to it
/// arrive before its `join_session` and are parked.
async fn run<M, T, F, Fut>(
    nodes: &[Node],
    members: &[usize],
    session: [u8; 32],
    round_timeout: Duration,
    late: Option<usize>,
    party: F,
) -> Vec<Result<T, MpcError>>
where
    M: Serialize + DeserializeOwned + Send + Unpin + 'static,
    T: Send + 'static,
    F: Fn(u16, SessionDelivery<M>) -> Fut,
    Fut: Future<Output = Result<T, MpcError>> + Send + 'static,
{
    let parties: Vec<PeerAddr> = members.iter().map(|&k| addr(&nodes[k])).collect();
    let mut order: Vec<usize> = (0..members.len()).collect();
    if let Some(l) = late {
        order.retain(|&p| p != l);
        order.push(l);
    }
    let mut handles: Vec<Option<tokio::task::JoinHandle<Result<T, MpcError>>>> =
        (0..members.len()).map(|_| None).collect();
    for pos in order {
        if Some(pos) == late {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let delivery = nodes[members[pos]]
            .join_session::<M>(session, pos as u16, parties.clone(), round_timeout)
            .await
            .unwrap();
        handles[pos] = Some(tokio::spawn(party(pos as u16, delivery)));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.unwrap().await.unwrap());
    }
    out
}

fn dalek_verify(public_key: &[u8; 32], message: &[u8], sig: &[u8; 64]) {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(public_key).unwrap();
    vk.verify_strict(message, &ed25519_dalek::Signature::from_bytes(sig))
        .expect("ed25519-dalek rejects the signature");
}

fn k256_verify(public_key: &[u8; 33], message: &[u8], sig: &[u8; 64]) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(sig).unwrap();
    assert!(sig.normalize_s().is_none(), "signature is high-S");
    let digest: [u8; 32] = sha2::Sha256::digest(message).into();
    vk.verify_prehash(&digest, &sig)
        .expect("k256 rejects the signature");
}

async fn frost_keygen(
    nodes: &[Node],
    members: &[usize],
    late: Option<usize>,
) -> Vec<eddsa::KeyShare> {
    let n = members.len() as u16;
    let desc = keygen_descriptor(ProtocolKind::EddsaKeygen, 2, n);
    let out = run::<Envelope<eddsa::KeygenMsg>, _, _, _>(
        nodes,
        members,
        *desc.id().as_bytes(),
        ROUND,
        late,
        |i, d| {
            let desc = desc.clone();
            async move { eddsa::keygen(&desc, i, d).await }
        },
    )
    .await;
    let shares: Vec<_> = out.into_iter().map(Result::unwrap).collect();
    let pk = shares[0].public_key();
    assert!(
        shares.iter().all(|s| s.public_key() == pk),
        "parties disagree on the key"
    );
    shares
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frost_keygen_and_signing_over_quic() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let nodes = signers(&ca, 3);
    // Party 2 joins late: its peers' streams wait for it.
    let shares = frost_keygen(&nodes, &[0, 1, 2], Some(2)).await;

    // Sign with keygen parties {0, 2}: session indices 0 and 1.
    let threshold = shares[0].threshold();
    let desc = sign_descriptor(
        ProtocolKind::EddsaSign,
        shares[0].key_id(),
        threshold,
        &[0, 2],
    );
    let mine = [shares[0].clone(), shares[2].clone()];
    let out = run::<Envelope<eddsa::SignMsg>, _, _, _>(
        &nodes,
        &[0, 2],
        *desc.id().as_bytes(),
        ROUND,
        None,
        |pos, d| {
            let desc = desc.clone();
            let share = mine[usize::from(pos)].clone();
            async move { eddsa::sign(&desc, &share, MSG, d).await }
        },
    )
    .await;
    let pk = shares[0].public_key();
    for sig in out {
        dalek_verify(&pk, MSG, &sig.unwrap().to_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecdsa_keygen_and_signing_over_quic() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let nodes = signers(&ca, 3);
    let aux = test_fixtures::aux_info(3);
    let desc = keygen_descriptor(ProtocolKind::EcdsaKeygen, 2, 3);
    let out = run::<Envelope<ecdsa::KeygenMsg>, _, _, _>(
        &nodes,
        &[0, 1, 2],
        *desc.id().as_bytes(),
        ROUND,
        None,
        |i, d| {
            let desc = desc.clone();
            let aux = aux[usize::from(i)].clone();
            async move { ecdsa::keygen(&desc, i, &aux, d).await }
        },
    )
    .await;
    let shares: Vec<_> = out.into_iter().map(Result::unwrap).collect();
    let pk = shares[0].public_key();
    assert!(shares.iter().all(|s| s.public_key() == pk));

    // Full signing by keygen parties {1, 2}.
    let desc = sign_descriptor(
        ProtocolKind::EcdsaSign,
        shares[0].key_id(),
        shares[0].threshold(),
        &[1, 2],
    );
    let mine = [shares[1].clone(), shares[2].clone()];
    let started = Instant::now();
    let out = run::<Envelope<ecdsa::SignMsg>, _, _, _>(
        &nodes,
        &[1, 2],
        *desc.id().as_bytes(),
        ROUND,
        None,
        |pos, d| {
            let desc = desc.clone();
            let share = mine[usize::from(pos)].clone();
            async move { ecdsa::sign(&desc, &share, MSG, HashAlg::Sha256, None, d).await }
        },
    )
    .await;
    tracing::info!(elapsed = ?started.elapsed(), "ECDSA signing over QUIC");
    for sig in out {
        k256_verify(&pk, MSG, &sig.unwrap().to_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn absent_party_makes_the_others_time_out_naming_it() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let nodes = signers(&ca, 3);
    let round = Duration::from_secs(2);

    // Through the protocol: signer-3 (party 2) never joins.
    let desc = keygen_descriptor(ProtocolKind::EddsaKeygen, 2, 3);
    let parties: Vec<PeerAddr> = nodes.iter().map(addr).collect();
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..2u16 {
        let d = nodes[usize::from(i)]
            .join_session::<Envelope<eddsa::KeygenMsg>>(
                *desc.id().as_bytes(),
                i,
                parties.clone(),
                round,
            )
            .await
            .unwrap();
        let desc = desc.clone();
        handles.push(tokio::spawn(
            async move { eddsa::keygen(&desc, i, d).await },
        ));
    }
    for h in handles {
        let err = h.await.unwrap().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, MpcError::Transport { .. }), "{text}");
        assert!(text.contains("party 2 (signer-3)"), "{text}");
        assert!(
            !text.contains("party 1 (signer-2)") && !text.contains("party 0 (signer-1)"),
            "{text}"
        );
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= round && elapsed < round * 2, "took {elapsed:?}");

    // The structured error, at the delivery level: party 0 sent one message,
    // party 2 none; party 1 names party 2 only.
    let session = [7u8; 32];
    let d0 = nodes[0]
        .join_session::<String>(session, 0, parties.clone(), round)
        .await
        .unwrap();
    let d1 = nodes[1]
        .join_session::<String>(session, 1, parties.clone(), round)
        .await
        .unwrap();
    let (_in0, mut out0) = d0.split();
    let (mut in1, _out1) = d1.split();
    out0.send(Outgoing::broadcast("round 1 from party 0".to_string()))
        .await
        .unwrap();
    let first = in1.next().await.unwrap().unwrap();
    assert_eq!(
        (first.sender, first.msg_type, first.id),
        (0, MessageType::Broadcast, 0)
    );
    assert_eq!(first.msg, "round 1 from party 0");
    let started = Instant::now();
    match in1.next().await.unwrap() {
        Err(
            ref e @ NetError::Timeout {
                session: s,
                ref waiting_for,
                after,
            },
        ) => {
            assert_eq!(s, session);
            assert_eq!(after, round);
            assert_eq!(*waiting_for, vec![(2, id("signer-3"))]);
            // The same, as data: party 2 is blamed as silent, party 0 is not.
            assert_eq!(
                e.culprits(),
                vec![SessionCulprit {
                    party: 2,
                    node: id("signer-3"),
                    blame: NetBlame::Silent
                }]
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() >= round - Duration::from_millis(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_senders_and_outsiders_are_refused_and_the_session_is_unaffected() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let nodes = signers(&ca, 3);
    let forger = node(&ca, "signer-4", Role::Signer);
    let outsider = node(&ca, "signer-5", Role::Signer);
    let coord = node(&ca, "coord", Role::Coordinator);
    let desc = keygen_descriptor(ProtocolKind::EddsaKeygen, 2, 3);
    let session = *desc.id().as_bytes();
    let parties: Vec<PeerAddr> = nodes.iter().map(addr).collect();

    let mut deliveries = Vec::new();
    for i in 0..3u16 {
        deliveries.push(
            nodes[usize::from(i)]
                .join_session::<Envelope<eddsa::KeygenMsg>>(session, i, parties.clone(), ROUND)
                .await
                .unwrap(),
        );
    }

    // signer-4 claims to be party 1 (signer-2) towards signer-1.
    let forged_parties = vec![parties[0].clone(), addr(&forger)];
    let (mut forged_in, mut forged_out) = forger
        .join_session::<serde_json::Value>(session, 1, forged_parties, ROUND)
        .await
        .unwrap()
        .split();
    let _ = forged_out
        .send(Outgoing::broadcast(serde_json::json!({"forged": true})))
        .await;
    // signer-5 claims index 3, outside the 3-party session, towards everyone.
    let mut outside_parties = parties.clone();
    outside_parties.push(addr(&outsider));
    let (mut outside_in, mut outside_out) = outsider
        .join_session::<serde_json::Value>(session, 3, outside_parties, ROUND)
        .await
        .unwrap()
        .split();
    let _ = outside_out
        .send(Outgoing::broadcast(serde_json::json!({"outside": true})))
        .await;
    // Both learn that they were refused (their streams are stopped).
    for incoming in [&mut forged_in, &mut outside_in] {
        let got = tokio::time::timeout(Duration::from_secs(5), incoming.next())
            .await
            .unwrap();
        match got {
            Some(Err(NetError::PeerGone { reason, .. })) => {
                assert!(reason.contains("not a party of that session"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // A coordinator (not a signer) opening a session stream is refused too.
    let conn = coord.connect(&parties[0]).await.unwrap();
    let mut raw = conn.open_uni().await.unwrap();
    let mut header = b"KFS1".to_vec();
    header.extend_from_slice(&session);
    header.extend_from_slice(&1u16.to_be_bytes());
    // The refusal may already hit the write (the role is checked first).
    let code = match keyfold_net::frame::write_frame(&mut raw, &header).await {
        Err(NetError::Write {
            source: quinn::WriteError::Stopped(code),
            ..
        }) => Some(code),
        Err(e) => panic!("unexpected {e}"),
        Ok(()) => tokio::time::timeout(Duration::from_secs(5), raw.stopped())
            .await
            .unwrap()
            .unwrap(),
    };
    assert_eq!(
        code.map(|c| c.into_inner()),
        Some(keyfold_net::Refusal::NotInSession.code())
    );

    // The real session runs as if nothing happened.
    let mut handles = Vec::new();
    for (i, d) in deliveries.into_iter().enumerate() {
        let desc = desc.clone();
        handles.push(tokio::spawn(async move {
            eddsa::keygen(&desc, i as u16, d).await
        }));
    }
    let mut keys = Vec::new();
    for h in handles {
        keys.push(h.await.unwrap().unwrap().public_key());
    }
    assert!(keys.iter().all(|k| *k == keys[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn party_whose_node_goes_away_is_reported_gone() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let nodes = signers(&ca, 2);
    let parties: Vec<PeerAddr> = nodes.iter().map(addr).collect();
    let session = [9u8; 32];
    let (mut in0, _out0) = nodes[0]
        .join_session::<u32>(session, 0, parties.clone(), ROUND)
        .await
        .unwrap()
        .split();
    let (_in1, mut out1) = nodes[1]
        .join_session::<u32>(session, 1, parties.clone(), ROUND)
        .await
        .unwrap()
        .split();
    out1.send(Outgoing::p2p(0, 42)).await.unwrap();
    let m = in0.next().await.unwrap().unwrap();
    assert_eq!((m.sender, m.msg_type, m.msg), (1, MessageType::P2P, 42));
    // Bad recipients are refused locally.
    assert!(matches!(
        out1.send(Outgoing::p2p(1, 1)).await,
        Err(NetError::BadRecipient { recipient: 1, .. })
    ));
    assert!(matches!(
        out1.send(Outgoing::p2p(5, 1)).await,
        Err(NetError::BadRecipient { recipient: 5, .. })
    ));
    // The same session cannot be joined twice on one node.
    assert!(matches!(
        nodes[0]
            .join_session::<u32>(session, 0, parties.clone(), ROUND)
            .await,
        Err(NetError::SessionExists { .. })
    ));

    nodes[1].close();
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(5), in0.next())
        .await
        .unwrap()
    {
        Some(Err(e @ NetError::PeerGone { .. })) => {
            assert_eq!(
                e.culprits(),
                vec![SessionCulprit {
                    party: 1,
                    node: id("signer-2"),
                    blame: NetBlame::Gone
                }],
                "{e}"
            );
        }
        other => panic!("expected PeerGone, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_does_not_decode_blames_its_sender() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let nodes = signers(&ca, 3);
    let parties: Vec<PeerAddr> = nodes.iter().map(addr).collect();
    let session = [11u8; 32];
    // Party 0 expects numbers; party 1 sends one, party 2 sends text.
    let (mut in0, _out0) = nodes[0]
        .join_session::<u32>(session, 0, parties.clone(), ROUND)
        .await
        .unwrap()
        .split();
    let (_in1, mut out1) = nodes[1]
        .join_session::<u32>(session, 1, parties.clone(), ROUND)
        .await
        .unwrap()
        .split();
    let (_in2, mut out2) = nodes[2]
        .join_session::<String>(session, 2, parties.clone(), ROUND)
        .await
        .unwrap()
        .split();
    out1.send(Outgoing::p2p(0, 7)).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), in0.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((m.sender, m.msg), (1, 7));
    // The text names party 1; only the typed culprit counts.
    out2.send(Outgoing::p2p(0, "party 1 (signer-2) is gone".to_string()))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), in0.next())
        .await
        .unwrap()
    {
        Some(Err(e @ NetError::Malformed { .. })) => assert_eq!(
            e.culprits(),
            vec![SessionCulprit {
                party: 2,
                node: id("signer-3"),
                blame: NetBlame::Malformed
            }],
            "{e}"
        ),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn join_session_checks_its_parameters() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let nodes = signers(&ca, 2);
    let coord = node(&ca, "coord", Role::Coordinator);
    let parties: Vec<PeerAddr> = nodes.iter().map(addr).collect();
    let s = [1u8; 32];
    let bad = |r: Result<SessionDelivery<u8>, NetError>| {
        matches!(r, Err(NetError::InvalidSession { .. }))
    };
    assert!(
        bad(nodes[0].join_session(s, 1, parties.clone(), ROUND).await),
        "not our index"
    );
    assert!(
        bad(nodes[0].join_session(s, 2, parties.clone(), ROUND).await),
        "out of range"
    );
    assert!(bad(nodes[0]
        .join_session(s, 0, vec![parties[0].clone(), parties[0].clone()], ROUND)
        .await));
    assert!(bad(nodes[0].join_session(s, 0, vec![], ROUND).await));
    assert!(bad(nodes[0]
        .join_session(s, 0, parties.clone(), Duration::ZERO)
        .await));
    let mut with_coord = parties.clone();
    with_coord[0] = addr(&coord);
    assert!(
        bad(coord.join_session(s, 0, with_coord, ROUND).await),
        "coordinators take no part"
    );
    // Leaving a session (dropping its delivery) allows joining it again.
    let d = nodes[0]
        .join_session::<u8>(s, 0, parties.clone(), ROUND)
        .await
        .unwrap();
    drop(d);
    assert!(nodes[0]
        .join_session::<u8>(s, 0, parties, ROUND)
        .await
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_party_is_reached_again_through_a_stale_connection() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let b_identity = identity(&ca, "signer-2", Role::Signer);
    let a = node(&ca, "signer-1", Role::Signer);
    let b = Node::bind(localhost(), &b_identity, cfg()).unwrap();
    let c = node(&ca, "signer-3", Role::Signer);
    // A and C reach B through relays, so a crash of B stays unnoticed by them.
    let relay_a = Relay::start(b.local_addr().unwrap()).await;
    let relay_c = Relay::start(b.local_addr().unwrap()).await;
    let b_seen_by = |relay: &Relay| PeerAddr::new(id("signer-2"), relay.front);

    let keygen = |nodes: [Node; 3], views: [Vec<PeerAddr>; 3]| async move {
        let desc = keygen_descriptor(ProtocolKind::EddsaKeygen, 2, 3);
        let mut handles = Vec::new();
        for (i, (n, parties)) in nodes.iter().zip(views).enumerate() {
            let d = n
                .join_session::<Envelope<eddsa::KeygenMsg>>(
                    *desc.id().as_bytes(),
                    i as u16,
                    parties,
                    ROUND,
                )
                .await
                .unwrap();
            let desc = desc.clone();
            handles.push(tokio::spawn(async move {
                eddsa::keygen(&desc, i as u16, d).await
            }));
        }
        let mut keys = Vec::new();
        for h in handles {
            keys.push(h.await.unwrap().unwrap().public_key());
        }
        assert!(keys.iter().all(|k| *k == keys[0]));
    };
    let views = |b_node: &Node| {
        [
            vec![addr(&a), b_seen_by(&relay_a), addr(&c)],
            vec![addr(&a), addr(b_node), addr(&c)],
            vec![addr(&a), b_seen_by(&relay_c), addr(&c)],
        ]
    };
    keygen([a.clone(), b.clone(), c.clone()], views(&b)).await;

    // B "crashes" and a new process with the same identity takes its place.
    let b2 = Node::bind(localhost(), &b_identity, cfg()).unwrap();
    relay_a.switch(b2.local_addr().unwrap()).await;
    relay_c.switch(b2.local_addr().unwrap()).await;
    let started = Instant::now();
    keygen([a.clone(), b2.clone(), c.clone()], views(&b2)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_for_a_session_never_joined_is_dropped_after_the_round_timeout() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let x = node(&ca, "signer-1", Role::Signer);
    let parked = keyfold_net::NetConfig {
        round_timeout: Duration::from_secs(1),
        ..cfg()
    };
    let y = Node::bind(
        localhost(),
        &identity(&ca, "signer-2", Role::Signer),
        parked,
    )
    .unwrap();
    let parties = vec![addr(&x), addr(&y)];
    let (mut incoming, mut outgoing) = x
        .join_session::<u8>([5u8; 32], 0, parties, ROUND)
        .await
        .unwrap()
        .split();
    outgoing.send(Outgoing::p2p(1, 5)).await.unwrap();
    let started = Instant::now();
    match tokio::time::timeout(Duration::from_secs(5), incoming.next())
        .await
        .unwrap()
    {
        Some(Err(NetError::PeerGone {
            party,
            node,
            reason,
            ..
        })) => {
            assert_eq!((party, node.as_str()), (1, "signer-2"));
            assert!(reason.contains("not joined in time"), "{reason}");
        }
        other => panic!("expected PeerGone, got {other:?}"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

/// Aux-info generation over QUIC (the largest messages: about 850 KB per party
/// for 3 parties). About 30 s of CPU per party on one core, so ignored by
/// default: `cargo test -p keyfold-net --test session -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "slow: about 30 s of CPU per party"]
async fn ecdsa_aux_info_over_quic() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let nodes = signers(&ca, 3);
    let desc = SessionDescriptor::new(
        ProtocolKind::EcdsaAuxInfo,
        KeyId::random(),
        RequestId::new("net-test-aux").unwrap(),
        ecdsa::aux_threshold(3).unwrap(),
        SignerSet::all(3),
    )
    .unwrap();
    let started = Instant::now();
    let out = run::<Envelope<ecdsa::AuxMsg>, _, _, _>(
        &nodes,
        &[0, 1, 2],
        *desc.id().as_bytes(),
        Duration::from_secs(300),
        None,
        |i, d| {
            let desc = desc.clone();
            let primes = test_fixtures::safe_primes(usize::from(i));
            async move { ecdsa::aux_info_gen(&desc, i, primes, d).await }
        },
    )
    .await;
    let aux: Vec<_> = out.into_iter().map(Result::unwrap).collect();
    tracing::info!(elapsed = ?started.elapsed(), "aux info over QUIC");
    assert!(aux
        .iter()
        .enumerate()
        .all(|(i, a)| a.i() == i as u16 && a.n() == 3));
}
