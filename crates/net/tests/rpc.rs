//! Mutual TLS and RPC over real QUIC on 127.0.0.1: round trips, refusals
//! (foreign CA, no certificate, no keyfold identity, wrong role, wrong server
//! identity), frame limits, restart of a peer.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use keyfold_net::frame::{read_frame, write_frame};
use keyfold_net::{Ca, Identity, NetError, Node, PeerAddr, PeerIdentity, Refusal, Role, ALPN};

fn raw_client_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client(localhost()).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Ca) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.cert_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

fn quinn_client(tls: rustls::ClientConfig) -> quinn::ClientConfig {
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ))
}

/// One request on a raw connection; the result of reading the answer.
async fn raw_request(conn: &quinn::Connection, payload: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    write_frame(&mut send, payload)
        .await
        .map_err(|e| e.to_string())?;
    let _ = send.finish();
    read_frame(&mut recv, 1 << 20)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_round_trip_coordinator_to_signer() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let signer = node(&ca, "signer-1", Role::Signer);
    let coord = node(&ca, "coord", Role::Coordinator);
    let echo = serve_echo(&signer, &[Role::Coordinator]);
    let to = addr(&signer);

    let answer = coord.request(&to, b"hello", T).await.unwrap();
    assert_eq!(answer, b"coord/coordinator:hello");

    // Many concurrent requests share the cached connection.
    let futs = (0..50).map(|i| {
        let coord = coord.clone();
        let to = to.clone();
        async move { coord.request(&to, format!("{i}").as_bytes(), T).await }
    });
    let answers = futures::future::join_all(futs).await;
    for (i, a) in answers.into_iter().enumerate() {
        assert_eq!(a.unwrap(), format!("coord/coordinator:{i}").into_bytes());
    }
    // An empty request and a large one (1 MiB) both pass.
    assert_eq!(
        coord.request(&to, b"", T).await.unwrap(),
        b"coord/coordinator:"
    );
    let big = vec![7u8; 1 << 20];
    assert_eq!(
        coord.request(&to, &big, T).await.unwrap().len(),
        (1 << 20) + 18
    );
    assert_eq!(echo.hits(), 53);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_from_another_ca_is_refused() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let rogue_ca = Ca::generate("rogue ca").unwrap();
    let signer = node(&ca, "signer-1", Role::Signer);
    let echo = serve_echo(&signer, &[Role::Coordinator]);
    // Same node id and role, but issued by another CA, which trusts ours as root
    // so that only the server's check can refuse it.
    let rogue_cert = rogue_ca.issue(&id("coord"), Role::Coordinator).unwrap();
    let rogue = Identity::from_pem(
        &rogue_ca.cert_pem,
        &rogue_cert.cert_pem,
        &rogue_cert.key_pem,
    )
    .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&ca))
        .with_client_auth_cert(
            rustls_pemfile::certs(&mut rogue.cert_pem().as_bytes())
                .map(Result::unwrap)
                .collect(),
            rustls_pemfile::private_key(&mut rogue.key_pem().as_bytes())
                .unwrap()
                .unwrap(),
        )
        .unwrap();
    let mut tls = tls;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let ep = raw_client_endpoint();
    let result = async {
        let conn = ep
            .connect_with(quinn_client(tls), addr(&signer).addr, "signer-1")
            .unwrap()
            .await
            .map_err(|e| e.to_string())?;
        raw_request(&conn, b"let me in").await
    }
    .await;
    let err = result.expect_err("a certificate from another CA must be refused");
    assert!(
        err.contains("connection lost") || err.contains("aborted") || err.contains("TLS"),
        "{err}"
    );

    // Through the Node API too: a node of the rogue CA trusts only its own CA,
    // so the handshake fails on both sides.
    let rogue_node = Node::bind(localhost(), &rogue, cfg()).unwrap();
    let err = rogue_node
        .request(&addr(&signer), b"x", T)
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Handshake { .. }), "{err}");
    assert_eq!(echo.hits(), 0, "nothing may reach the handler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let signer = node(&ca, "signer-1", Role::Signer);
    let echo = serve_echo(&signer, &[Role::Coordinator, Role::Client, Role::Signer]);
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&ca))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let ep = raw_client_endpoint();
    let started = Instant::now();
    // With TLS 1.3 connect() may succeed: the refusal shows on the first request.
    let result = async {
        let conn = ep
            .connect_with(quinn_client(tls), addr(&signer).addr, "signer-1")
            .unwrap()
            .await
            .map_err(|e| e.to_string())?;
        raw_request(&conn, b"let me in").await
    }
    .await;
    let err = result.expect_err("a client without certificate must be refused");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refusal took {:?}",
        started.elapsed()
    );
    assert!(!err.is_empty());
    assert_eq!(echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_without_keyfold_identity_is_refused() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let signer = node(&ca, "signer-1", Role::Signer);
    let echo = serve_echo(&signer, &[Role::Coordinator, Role::Client, Role::Signer]);

    // A certificate chained to OUR CA but without the keyfold SAN URI, made with
    // rcgen directly (the CA's subject is O=Keyfold, CN=<name>).
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem).unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Keyfold");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test ca");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["coord".to_string()]).unwrap();
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let cert = params.signed_by(&key, &issuer).unwrap();
    assert!(PeerIdentity::from_certificate(cert.der()).is_err());
    assert!(Identity::from_pem(&ca.cert_pem, &cert.pem(), &key.serialize_pem()).is_err());

    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots(&ca))
        .with_client_auth_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let ep = raw_client_endpoint();
    let conn = ep
        .connect_with(quinn_client(tls), addr(&signer).addr, "signer-1")
        .unwrap()
        .await
        .unwrap(); // the chain is valid: the handshake succeeds
    let err = raw_request(&conn, b"let me in").await.unwrap_err();
    match conn.closed().await {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code.into_inner(), Refusal::BadIdentity.code())
        }
        other => panic!("unexpected close {other} ({err})"),
    }
    assert_eq!(echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_with_a_role_that_is_not_allowed_is_refused() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let signer = node(&ca, "signer-1", Role::Signer);
    let other_signer = node(&ca, "signer-2", Role::Signer);
    let client = node(&ca, "tool", Role::Client);
    let coord = node(&ca, "coord", Role::Coordinator);
    let echo = serve_echo(&signer, &[Role::Coordinator]);
    let to = addr(&signer);
    for n in [&other_signer, &client] {
        let err = n.request(&to, b"sign this", T).await.unwrap_err();
        assert!(
            matches!(err, NetError::Refused { reason: Refusal::RoleNotAllowed, ref peer } if peer.as_str() == "signer-1"),
            "{err}"
        );
    }
    assert_eq!(echo.hits(), 0, "nothing may reach the handler");
    // The allowed role still gets through.
    assert!(coord.request(&to, b"ok", T).await.is_ok());
    // A node with no handler refuses every request.
    let err = coord.request(&addr(&client), b"x", T).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Refused {
                reason: Refusal::NoHandler,
                ..
            }
        ),
        "{err}"
    );
}

struct Panics;

impl keyfold_net::RpcHandler for Panics {
    fn handle(
        &self,
        _peer: PeerIdentity,
        request: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send + '_>> {
        Box::pin(async move {
            assert!(request != b"boom", "handler bug");
            request
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_fails_only_its_request() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let signer = node(&ca, "signer-1", Role::Signer);
    let coord = node(&ca, "coord", Role::Coordinator);
    signer.serve(Arc::new(Panics), &[Role::Coordinator]);
    let to = addr(&signer);
    let err = coord.request(&to, b"boom", T).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Refused {
                reason: Refusal::Internal,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(coord.request(&to, b"fine", T).await.unwrap(), b"fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_another_node_id_is_refused() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let signer = node(&ca, "signer-1", Role::Signer);
    let coord = node(&ca, "coord", Role::Coordinator);
    let echo = serve_echo(&signer, &[Role::Coordinator]);
    // We expect signer-2 at this address, but signer-1's certificate answers.
    let wrong = PeerAddr::new(id("signer-2"), addr(&signer).addr);
    let err = coord.request(&wrong, b"for signer-2", T).await.unwrap_err();
    assert!(
        matches!(err, NetError::Handshake { ref peer, .. } if peer.as_str() == "signer-2"),
        "{err}"
    );
    assert!(err.to_string().contains("signer-2"), "{err}");
    assert_eq!(echo.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_is_refused_without_reading_and_server_keeps_serving() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let signer = node(&ca, "signer-1", Role::Signer);
    let coord = node(&ca, "coord", Role::Coordinator);
    let other = node(&ca, "coord-2", Role::Coordinator);
    let echo = serve_echo(&signer, &[Role::Coordinator]);
    let to = addr(&signer);

    // A frame announcing 4 GiB - 1 and carrying nothing: refused at once.
    let conn = coord.connect(&to).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let started = Instant::now();
    match recv.read(&mut [0u8; 16]).await {
        Err(quinn::ReadError::Reset(code)) => {
            assert_eq!(code.into_inner(), Refusal::FrameTooLarge.code())
        }
        other => panic!("expected a reset, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));

    // Just over the 8 MiB default through the API: refused locally.
    let too_big = vec![0u8; keyfold_net::DEFAULT_MAX_FRAME + 1];
    let err = coord.request(&to, &too_big, T).await.unwrap_err();
    assert!(
        matches!(err, NetError::FrameTooLarge { max, .. } if max == keyfold_net::DEFAULT_MAX_FRAME),
        "{err}"
    );

    // A client with a bigger limit sends 8 MiB + 1: the server refuses it.
    let generous = Node::bind(
        localhost(),
        &identity(&ca, "coord-3", Role::Coordinator),
        keyfold_net::NetConfig {
            max_frame: 16 << 20,
            ..cfg()
        },
    )
    .unwrap();
    let err = generous
        .request(&to, &too_big, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Refused {
                reason: Refusal::FrameTooLarge,
                ..
            }
        ),
        "{err}"
    );

    // The server keeps serving: the same connection and another client.
    assert_eq!(
        coord.request(&to, b"a", T).await.unwrap(),
        b"coord/coordinator:a"
    );
    assert_eq!(
        other.request(&to, b"b", T).await.unwrap(),
        b"coord-2/coordinator:b"
    );
    assert_eq!(echo.hits(), 2);
}

/// `read_frame` itself, on raw streams: limit, exact limit, truncation, clean end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_frame_limits() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let server_id = identity(&ca, "signer-1", Role::Signer);
    let client_id = identity(&ca, "coord", Role::Coordinator);
    let server_cfg = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_id.server_config().unwrap())
            .unwrap(),
    ));
    let server = quinn::Endpoint::server(server_cfg, localhost()).unwrap();
    let server_addr = server.local_addr().unwrap();
    let client = raw_client_endpoint();
    let client_cfg = quinn_client(client_id.client_config().unwrap());
    let (conn, accepted) = tokio::join!(
        async {
            client
                .connect_with(client_cfg, server_addr, "signer-1")
                .unwrap()
                .await
                .unwrap()
        },
        async { server.accept().await.unwrap().await.unwrap() }
    );
    let peer = PeerIdentity::of_connection(&accepted).unwrap();
    assert_eq!(
        (peer.node.as_str(), peer.role),
        ("coord", Role::Coordinator)
    );

    let mut s = conn.open_uni().await.unwrap();
    write_frame(&mut s, &[1u8; 100]).await.unwrap(); // exactly the limit
    write_frame(&mut s, &[]).await.unwrap();
    s.write_all(&101u32.to_be_bytes()).await.unwrap(); // one over, no body
    let mut r = accepted.accept_uni().await.unwrap();
    assert_eq!(
        read_frame(&mut r, 100).await.unwrap().unwrap(),
        vec![1u8; 100]
    );
    assert_eq!(
        read_frame(&mut r, 100).await.unwrap().unwrap(),
        Vec::<u8>::new()
    );
    let err = read_frame(&mut r, 100).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::FrameTooLarge {
                len: 101,
                max: 100,
                peer: None
            }
        ),
        "{err}"
    );

    let mut s = conn.open_uni().await.unwrap();
    s.write_all(&10u32.to_be_bytes()).await.unwrap();
    s.write_all(b"abc").await.unwrap();
    s.finish().unwrap();
    let mut r = accepted.accept_uni().await.unwrap();
    let err = read_frame(&mut r, 100).await.unwrap_err();
    assert!(
        matches!(
            err,
            NetError::FrameTruncated {
                expected: 10,
                got: 3,
                ..
            }
        ),
        "{err}"
    );

    let mut s = conn.open_uni().await.unwrap();
    write_frame(&mut s, b"last").await.unwrap();
    s.finish().unwrap();
    let mut r = accepted.accept_uni().await.unwrap();
    assert_eq!(read_frame(&mut r, 100).await.unwrap().unwrap(), b"last");
    assert_eq!(read_frame(&mut r, 100).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_peer_answers_the_next_request() {
    init_tracing();
    let ca = Ca::generate("test ca").unwrap();
    let signer_id = identity(&ca, "signer-1", Role::Signer);
    let coord = node(&ca, "coord", Role::Coordinator);

    // 1. A clean restart at the same port: the old connection was closed.
    let signer = Node::bind(localhost(), &signer_id, cfg()).unwrap();
    serve_echo(&signer, &[Role::Coordinator]);
    let to = addr(&signer);
    assert!(coord.request(&to, b"before", T).await.is_ok());
    signer.close();
    signer.wait_idle().await;
    drop(signer);
    let started = Instant::now();
    let signer = loop {
        match Node::bind(to.addr, &signer_id, cfg()) {
            Ok(n) => break n,
            Err(_) if started.elapsed() < Duration::from_secs(3) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("cannot rebind: {e}"),
        }
    };
    serve_echo(&signer, &[Role::Coordinator]);
    assert_eq!(
        coord.request(&to, b"after", T).await.unwrap(),
        b"coord/coordinator:after"
    );

    // 2. A crash: the coordinator never hears that its cached connection died.
    // The new process answers the stale connection with a stateless reset
    // (same identity, same reset key) and the request is retried at once.
    let relay = Relay::start(to.addr).await;
    let via = PeerAddr::new(to.node.clone(), relay.front);
    assert!(coord.request(&via, b"through relay", T).await.is_ok());
    let restarted = Node::bind(localhost(), &signer_id, cfg()).unwrap();
    let echo = serve_echo(&restarted, &[Role::Coordinator]);
    relay.switch(restarted.local_addr().unwrap()).await;
    let started = Instant::now();
    let answer = coord.request(&via, b"after crash", T).await.unwrap();
    assert_eq!(answer, b"coord/coordinator:after crash");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(echo.hits(), 1, "answered exactly once, by the new process");
}

#[test]
fn ca_and_identity_files() {
    let ca = Ca::generate("keyfold test").unwrap();
    assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
    assert!(format!("{ca:?}").contains("<redacted>"));
    // A CA reloaded from PEM issues certificates that chain to it.
    let reloaded = Ca::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
    let cert = reloaded.issue(&id("signer-7"), Role::Signer).unwrap();
    assert!(!format!("{cert:?}").contains("PRIVATE KEY"));
    let ident = Identity::from_pem(&ca.cert_pem, &cert.cert_pem, &cert.key_pem).unwrap();
    assert_eq!(ident.node_id().as_str(), "signer-7");
    assert_eq!(ident.role(), Role::Signer);
    assert!(!format!("{ident:?}").contains("PRIVATE KEY"));

    // Mismatched key, non-CA certificate, foreign chain: refused.
    let other = Ca::generate("other").unwrap();
    assert!(Ca::from_pem(&ca.cert_pem, &other.key_pem).is_err());
    assert!(Ca::from_pem(&cert.cert_pem, &cert.key_pem).is_err());
    assert!(Identity::from_pem(&other.cert_pem, &cert.cert_pem, &cert.key_pem).is_err());
    let other_cert = ca.issue(&id("signer-8"), Role::Signer).unwrap();
    assert!(Identity::from_pem(&ca.cert_pem, &cert.cert_pem, &other_cert.key_pem).is_err());
    assert!(Identity::from_pem(&ca.cert_pem, "garbage", &cert.key_pem).is_err());

    // Files round trip; the key file is private.
    let dir = tempfile::tempdir().unwrap();
    let (c, e, k) = (
        dir.path().join("ca.pem"),
        dir.path().join("node.pem"),
        dir.path().join("node.key"),
    );
    ident.write(&c, &e, &k).unwrap();
    let loaded = Identity::load(&c, &e, &k).unwrap();
    assert_eq!(loaded.node_id(), ident.node_id());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(matches!(
        Identity::load(dir.path().join("missing.pem"), &e, &k),
        Err(NetError::File { .. })
    ));
    // An oversized file is refused before parsing.
    std::fs::write(&c, vec![b'a'; (2 << 20) as usize]).unwrap();
    assert!(matches!(
        Identity::load(&c, &e, &k),
        Err(NetError::Pem { .. })
    ));
}
