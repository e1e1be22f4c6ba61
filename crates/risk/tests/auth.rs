//! Customer payment authentication: device binding, device signatures
//! (Ed25519 and P-256, signed here with the curves' own crates), the nonce
//! log, one-time codes (RFC 6238 vectors), payment passwords and KYC tier
//! limits. Every refusal code has a test that produces it.
mod common;

use common::*;
use ed25519_dalek::{Signer, SigningKey};
use keyfold_risk::auth::*;
use keyfold_risk::*;
use p256::ecdsa::{Signature as P256Signature, SigningKey as P256SigningKey};

/// Replay window used throughout, seconds.
const WINDOW: u64 = 300;

fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, AuthRefusal>) -> &'static str {
    match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e.code(),
    }
}

fn ed_key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

fn p256_key(i: u8) -> P256SigningKey {
    ok(P256SigningKey::from_slice(&[i; 32]))
}

fn ed_device(i: u8) -> DeviceKey {
    DeviceKey::Ed25519(ed_key(i).verifying_key().to_bytes())
}

fn p256_device(i: u8) -> DeviceKey {
    let point = p256_key(i).verifying_key().to_encoded_point(false);
    ok(DeviceKey::parse("p256", &hex::encode(point.as_bytes())))
}

/// Customer `c-1` with `phone-1` (Ed25519, key 7) and `phone-2` (P-256,
/// key 7), registered at T0.
fn devices() -> CustomerDevices {
    let d = ok(CustomerDevices::new("c-1"));
    let d = ok(d.register(T0, "phone-1", ed_device(7), 3));
    ok(d.register(T0, "phone-2", p256_device(7), 3))
}

/// The worked example of docs/risk.md.
fn body() -> DevicePayment {
    DevicePayment {
        customer_id: "c-1".into(),
        device_id: "phone-1".into(),
        payment: Payment {
            chain: "base".into(),
            asset: "USDC".into(),
            amount: 25_000_000,
            destination: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            wallet: "hot-1".into(),
            merchant: Some("shop".into()),
        },
        payout_id: "po-42".into(),
        timestamp: 1_700_000_000,
        nonce: (0u8..16).collect(),
    }
}

/// `body()` at `timestamp` with nonce `[n; 16]`.
fn body_at(device: &str, timestamp: u64, n: u8) -> DevicePayment {
    DevicePayment {
        device_id: device.into(),
        timestamp,
        nonce: vec![n; 16],
        ..body()
    }
}

fn sign_ed(key: &SigningKey, body: DevicePayment) -> SignedDevicePayment {
    let bytes = ok(body.canonical_bytes());
    SignedDevicePayment {
        signature: key.sign(&bytes).to_bytes().to_vec(),
        body,
    }
}

fn sign_p256_der(key: &P256SigningKey, body: DevicePayment) -> SignedDevicePayment {
    let bytes = ok(body.canonical_bytes());
    let sig: P256Signature = key.sign(&bytes);
    SignedDevicePayment {
        signature: sig.to_der().as_bytes().to_vec(),
        body,
    }
}

fn verify(
    devices: &CustomerDevices,
    nonces: &NonceLog,
    signed: &SignedDevicePayment,
    now: u64,
) -> Result<NonceLog, AuthRefusal> {
    verify_device_signature(devices, nonces, signed, now, WINDOW)
}

// ---------------------------------------------------------------- the worked example

/// The canonical bytes of `body()`, as printed in docs/risk.md.
const EXAMPLE_BYTES: &str = "6b6579666f6c642d7269736b2f6465766963652d7061796d656e742f76310000000003632d310000000770686f6e652d31000000046261736500000004555344430000000832353030303030300000002a30783561616562363035336633653934633962396130396633333636393433356537656631626561656400000005686f742d310000000473686f7000000005706f2d3432000000006553f10000000010000102030405060708090a0b0c0d0e0f";
/// Ed25519 public key of the seed `07` × 32.
const EXAMPLE_ED_PK: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
/// Its signature over `EXAMPLE_BYTES`.
const EXAMPLE_ED_SIG: &str = "77df451fcc5c6a6db2fde145a63969fdd23db38ef2d1b6ce9c97520be49beecc8203f0c158fd1e271f116a66faa014876d975c215a1758db69e6b17768486003";
/// P-256 public key (compressed) of the scalar `07` × 32.
const EXAMPLE_P256_PK: &str = "031e18532fd4754c02f3041d9c75ceb33b83ffd81ac7ce4fe882ccb1c98bc5896e";
/// Its RFC 6979 ECDSA-SHA-256 signature over `EXAMPLE_BYTES`, DER.
const EXAMPLE_P256_SIG: &str = "3044022053e605b0eefdc99aa8344dc54aaeb0ce87448a79ce646c04cf4ee07a068e5800022016cb18c1f97f166a64799cef71423c0610a2e9b9914640acc3d002dcce5ffe01";

const RISK_DOC: &str = include_str!("../../../docs/risk.md");

/// The doc wraps long hex over several lines of a code block; join them.
fn doc_hex() -> String {
    RISK_DOC
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect::<Vec<_>>()
        .join("")
}

#[test]
fn worked_example_bytes_and_signatures_match_the_docs() {
    let bytes = ok(body().canonical_bytes());
    assert_eq!(hex::encode(&bytes), EXAMPLE_BYTES);
    assert_eq!(bytes.len(), 177);
    assert!(bytes.starts_with(b"keyfold-risk/device-payment/v1\0"));
    // The destination is signed in lower case (canonical_destination).
    assert!(bytes
        .windows(42)
        .any(|w| w == b"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"));

    let docs = doc_hex();
    for (what, h) in [
        ("canonical bytes", EXAMPLE_BYTES),
        ("Ed25519 public key", EXAMPLE_ED_PK),
        ("Ed25519 signature", EXAMPLE_ED_SIG),
        ("P-256 public key", EXAMPLE_P256_PK),
        ("P-256 signature", EXAMPLE_P256_SIG),
    ] {
        assert!(docs.contains(h), "docs/risk.md lacks the example's {what}");
    }

    // Ed25519 is deterministic: the same key signs the same bytes.
    assert_eq!(
        hex::encode(ed_key(7).verifying_key().to_bytes()),
        EXAMPLE_ED_PK
    );
    assert_eq!(
        hex::encode(ed_key(7).sign(&bytes).to_bytes()),
        EXAMPLE_ED_SIG
    );
    // So is P-256 with RFC 6979 nonces.
    let p = p256_key(7);
    assert_eq!(
        hex::encode(p.verifying_key().to_encoded_point(true).as_bytes()),
        EXAMPLE_P256_PK
    );
    let sig: P256Signature = p.sign(&bytes);
    assert_eq!(hex::encode(sig.to_der().as_bytes()), EXAMPLE_P256_SIG);

    // And the documented signatures verify, from the documented keys.
    let d = ok(CustomerDevices::new("c-1"));
    let d = ok(d.register(
        T0,
        "phone-1",
        ok(DeviceKey::parse("ed25519", EXAMPLE_ED_PK)),
        3,
    ));
    let d = ok(d.register(
        T0,
        "phone-2",
        ok(DeviceKey::parse("p256", EXAMPLE_P256_PK)),
        3,
    ));
    let now = 1_700_000_010;
    let signed = SignedDevicePayment {
        body: body(),
        signature: ok(hex::decode(EXAMPLE_ED_SIG)),
    };
    let log = ok(verify(&d, &NonceLog::new(), &signed, now));
    let signed = SignedDevicePayment {
        body: DevicePayment {
            device_id: "phone-2".into(),
            ..body()
        },
        signature: ok(hex::decode(EXAMPLE_P256_SIG)),
    };
    // The P-256 example signs phone-1's bytes, so as phone-2's it fails.
    assert_eq!(code(verify(&d, &log, &signed, now)), "wrong_device_key");
    let signed = SignedDevicePayment {
        body: body(),
        signature: ok(hex::decode(EXAMPLE_P256_SIG)),
    };
    let p_only = ok(ok(CustomerDevices::new("c-1")).register(
        T0,
        "phone-1",
        ok(DeviceKey::parse("p256", EXAMPLE_P256_PK)),
        3,
    ));
    ok(verify(&p_only, &NonceLog::new(), &signed, now));
}

// ---------------------------------------------------------------- device keys

#[test]
fn device_keys_parse_from_json_for_both_curves() {
    let ed = format!(r#"{{"curve": "ed25519", "public_key": "{EXAMPLE_ED_PK}"}}"#);
    let k = ok(DeviceKey::from_json(&ed));
    assert_eq!(k, ed_device(7));
    assert_eq!(k.curve(), Curve::Ed25519);

    // P-256 compressed and uncompressed name the same key.
    let compressed = format!(r#"{{"curve": "p256", "public_key": "{EXAMPLE_P256_PK}"}}"#);
    let unc = hex::encode(
        p256_key(7)
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes(),
    );
    let uncompressed = format!(r#"{{"curve": "p256", "public_key": "{unc}"}}"#);
    assert_eq!(
        ok(DeviceKey::from_json(&compressed)),
        ok(DeviceKey::from_json(&uncompressed))
    );
    // Written back compressed, and read again.
    let json = ok(serde_json::to_string(&p256_device(7)));
    assert_eq!(
        json,
        format!(r#"{{"curve":"p256","public_key":"{EXAMPLE_P256_PK}"}}"#)
    );
    assert_eq!(ok(serde_json::from_str::<DeviceKey>(&json)), p256_device(7));
}

#[test]
fn unknown_curve_is_a_typed_error_naming_it() {
    let r = DeviceKey::from_json(r#"{"curve": "secp256k1", "public_key": "00"}"#);
    assert_eq!(
        r,
        Err(AuthError::UnknownCurve {
            curve: "secp256k1".into()
        })
    );
    assert!(ok_err(r).contains("secp256k1"));
}

fn ok_err<T: std::fmt::Debug>(r: Result<T, AuthError>) -> String {
    match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_keys_are_refused() {
    // Wrong lengths, not hex, off the curve.
    for (curve, key) in [
        ("ed25519", "00".repeat(31)),
        ("ed25519", "zz".repeat(32)),
        ("p256", "02".to_string() + &"00".repeat(31)),
        ("p256", "05".to_string() + &"11".repeat(32)),
        ("p256", "04".to_string() + &"ff".repeat(64)),
        ("p256", "00".into()),
    ] {
        assert!(
            matches!(
                DeviceKey::parse(curve, &key),
                Err(AuthError::BadPublicKey { .. })
            ),
            "{curve} {key}"
        );
    }
    // The Ed25519 identity point (small order): it verifies forged signatures.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert!(matches!(
        DeviceKey::parse("ed25519", &hex::encode(identity)),
        Err(AuthError::BadPublicKey { .. })
    ));
    // Nor may one be registered when built directly.
    let d = ok(CustomerDevices::new("c-1"));
    assert!(d
        .register(T0, "x", DeviceKey::Ed25519(identity), 3)
        .is_err());
    // Oversized documents and unknown fields.
    assert!(matches!(
        DeviceKey::from_json(&" ".repeat(2000)),
        Err(AuthError::BadKeyDocument(_))
    ));
    assert!(matches!(
        DeviceKey::from_json(r#"{"curve":"ed25519","public_key":"00","x":1}"#),
        Err(AuthError::BadKeyDocument(_))
    ));
    // A stored state with a bad key does not load.
    let bad = r#"{"customer_id":"c","devices":[{"id":"d","key":{"curve":"p256","public_key":"0011"},"registered_at":1}]}"#;
    assert!(serde_json::from_str::<CustomerDevices>(bad).is_err());
}

// ---------------------------------------------------------------- binding

#[test]
fn active_devices_are_capped_and_revoked_ones_free_a_place() {
    let d = devices();
    assert_eq!(d.active_count(), 2);
    let d = ok(d.register(T0 + 1, "tablet", ed_device(8), 3));
    let refused = d.register(T0 + 2, "laptop", ed_device(9), 3);
    assert_eq!(
        refused,
        Err(AuthError::DeviceCapReached {
            customer_id: "c-1".into(),
            cap: 3
        })
    );
    assert!(ok_err(refused).contains('3'));
    let d = ok(d.revoke(T0 + 3, "tablet"));
    let d = ok(d.register(T0 + 4, "laptop", ed_device(9), 3));
    assert_eq!(d.active_count(), 3);
    assert_eq!(d.devices.len(), 4);
}

#[test]
fn ids_and_keys_are_never_reused() {
    let d = ok(devices().revoke(T0 + 1, "phone-1"));
    assert_eq!(
        d.register(T0 + 2, "phone-1", ed_device(8), 5),
        Err(AuthError::DeviceIdTaken {
            device_id: "phone-1".into()
        })
    );
    // phone-1's key was revoked: presumed compromised.
    assert_eq!(
        d.register(T0 + 2, "phone-9", ed_device(7), 5),
        Err(AuthError::DuplicateKey {
            device_id: "phone-1".into(),
            revoked: true
        })
    );
    // The same P-256 key given compressed is the same key.
    let compressed = ok(DeviceKey::parse("p256", EXAMPLE_P256_PK));
    assert_eq!(
        d.register(T0 + 2, "phone-9", compressed, 5),
        Err(AuthError::DuplicateKey {
            device_id: "phone-2".into(),
            revoked: false
        })
    );
}

#[test]
fn revocation_is_idempotent_and_unknown_devices_are_named() {
    let d = ok(devices().revoke(T0 + 10, "phone-1"));
    let again = ok(d.revoke(T0 + 20, "phone-1"));
    assert_eq!(again, d);
    assert_eq!(
        again.get("phone-1").and_then(|x| x.revoked_at),
        Some(T0 + 10)
    );
    assert_eq!(
        d.revoke(T0, "nope"),
        Err(AuthError::NoSuchDevice {
            customer_id: "c-1".into(),
            device_id: "nope".into()
        })
    );
}

#[test]
fn a_new_device_waits_before_authorizing_large_payments() {
    let delay = 72 * 3600;
    let d = devices();
    assert_eq!(
        code(d.may_authorize_large(T0 + delay - 1, "phone-1", delay)),
        "device_too_new"
    );
    assert_eq!(
        d.may_authorize_large(T0 + 10, "phone-1", delay),
        Err(AuthRefusal::DeviceTooNew {
            device_id: "phone-1".into(),
            registered_at: T0,
            usable_at: T0 + delay
        })
    );
    assert_eq!(d.may_authorize_large(T0 + delay, "phone-1", delay), Ok(()));
    assert_eq!(
        code(d.may_authorize_large(T0 + delay, "ghost", delay)),
        "unknown_device"
    );
    let d = ok(d.revoke(T0 + delay, "phone-1"));
    assert_eq!(
        code(d.may_authorize_large(T0 + 2 * delay, "phone-1", delay)),
        "device_revoked"
    );
}

#[test]
fn device_state_round_trips_through_json() {
    let d = ok(devices().revoke(T0 + 5, "phone-2"));
    let json = ok(serde_json::to_string(&d));
    assert_eq!(ok(serde_json::from_str::<CustomerDevices>(&json)), d);
}

// ---------------------------------------------------------------- signatures

#[test]
fn valid_signatures_pass_for_both_curves() {
    let d = devices();
    let now = T0 + 100;
    let log = ok(verify(
        &d,
        &NonceLog::new(),
        &sign_ed(&ed_key(7), body_at("phone-1", now, 1)),
        now,
    ));
    let log = ok(verify(
        &d,
        &log,
        &sign_p256_der(&p256_key(7), body_at("phone-2", now, 2)),
        now,
    ));
    assert_eq!(log.len("phone-1"), 1);
    assert_eq!(log.len("phone-2"), 1);
}

#[test]
fn p256_accepts_raw_and_der_and_either_s() {
    let d = devices();
    let now = T0 + 100;
    let b = body_at("phone-2", now, 3);
    let bytes = ok(b.canonical_bytes());
    let sig: P256Signature = p256_key(7).sign(&bytes);
    let (low, high) = match sig.normalize_s() {
        // `sig` had a high S; the normalised one is low.
        Some(normalised) => (normalised, sig),
        None => {
            let (r, s) = sig.split_scalars();
            (sig, ok(P256Signature::from_scalars(*r, -*s)))
        }
    };
    assert!(high.normalize_s().is_some(), "not a high-S signature");
    for (i, s) in [
        low.to_bytes().to_vec(),
        low.to_der().as_bytes().to_vec(),
        high.to_bytes().to_vec(),
        high.to_der().as_bytes().to_vec(),
    ]
    .into_iter()
    .enumerate()
    {
        let signed = SignedDevicePayment {
            body: b.clone(),
            signature: s,
        };
        assert!(
            verify(&d, &NonceLog::new(), &signed, now).is_ok(),
            "form {i}"
        );
    }
}

#[test]
fn unknown_device_is_refused() {
    let now = T0 + 100;
    let signed = sign_ed(&ed_key(7), body_at("phone-3", now, 1));
    assert_eq!(
        code(verify(&devices(), &NonceLog::new(), &signed, now)),
        "unknown_device"
    );
    // A signature for another customer, checked against c-1's devices.
    let mut b = body_at("phone-1", now, 1);
    b.customer_id = "c-2".into();
    let signed = sign_ed(&ed_key(7), b);
    assert_eq!(
        code(verify(&devices(), &NonceLog::new(), &signed, now)),
        "unknown_device"
    );
}

#[test]
fn revoked_device_is_refused() {
    let now = T0 + 100;
    let d = ok(devices().revoke(now - 1, "phone-1"));
    let signed = sign_ed(&ed_key(7), body_at("phone-1", now, 1));
    assert_eq!(
        code(verify(&d, &NonceLog::new(), &signed, now)),
        "device_revoked"
    );
    // Even when checked at a time before the revocation (a lagging clock).
    assert_eq!(
        code(verify(&d, &NonceLog::new(), &signed, now - 50)),
        "device_revoked"
    );
}

#[test]
fn wrong_key_and_every_changed_field_are_refused() {
    let d = devices();
    let now = T0 + 100;
    // Signed by a key that is not phone-1's.
    let signed = sign_ed(&ed_key(8), body_at("phone-1", now, 1));
    assert_eq!(
        code(verify(&d, &NonceLog::new(), &signed, now)),
        "wrong_device_key"
    );
    let signed = sign_p256_der(&p256_key(8), body_at("phone-2", now, 1));
    assert_eq!(
        code(verify(&d, &NonceLog::new(), &signed, now)),
        "wrong_device_key"
    );

    type Change = fn(&mut DevicePayment);
    let changes: [(&str, Change); 9] = [
        ("amount", |b| b.payment.amount += 1),
        ("destination", |b| {
            b.payment.destination = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAee".into()
        }),
        ("nonce", |b| b.nonce[0] ^= 1),
        ("timestamp", |b| b.timestamp += 1),
        ("asset", |b| b.payment.asset = "USDT".into()),
        ("chain", |b| b.payment.chain = "ethereum".into()),
        ("wallet", |b| b.payment.wallet = "hot-2".into()),
        ("merchant", |b| b.payment.merchant = None),
        ("payout_id", |b| b.payout_id = "po-43".into()),
    ];
    for (field, change) in changes {
        for (key, device) in [(0u8, "phone-1"), (1, "phone-2")] {
            let mut signed = if key == 0 {
                sign_ed(&ed_key(7), body_at(device, now, 1))
            } else {
                sign_p256_der(&p256_key(7), body_at(device, now, 1))
            };
            change(&mut signed.body);
            assert_eq!(
                code(verify(&d, &NonceLog::new(), &signed, now)),
                "wrong_device_key",
                "{field} changed on {device}"
            );
        }
    }
}

#[test]
fn destination_letter_case_is_not_a_change() {
    // The device signs the canonical (lower-case) spelling; the checksum
    // spelling of the same address verifies.
    let d = devices();
    let now = T0 + 100;
    let mut signed = sign_ed(&ed_key(7), body_at("phone-1", now, 1));
    signed.body.payment.destination = signed.body.payment.destination.to_lowercase();
    assert!(verify(&d, &NonceLog::new(), &signed, now).is_ok());
}

#[test]
fn timestamps_outside_the_window_are_stale() {
    let d = devices();
    let now = T0 + 10_000;
    for ts in [now - WINDOW - 1, now + WINDOW + 1, 0] {
        let signed = sign_ed(&ed_key(7), body_at("phone-1", ts, 1));
        assert_eq!(
            code(verify(&d, &NonceLog::new(), &signed, now)),
            "stale_timestamp",
            "{ts}"
        );
    }
    // The window's edges are inside.
    for (i, ts) in [now - WINDOW, now + WINDOW].into_iter().enumerate() {
        let signed = sign_ed(&ed_key(7), body_at("phone-1", ts, i as u8));
        assert!(verify(&d, &NonceLog::new(), &signed, now).is_ok(), "{ts}");
    }
    let e = AuthRefusal::StaleTimestamp {
        timestamp: now - 400,
        now,
        window_secs: WINDOW,
    };
    assert!(e.to_string().contains("400 s"), "{e}");
}

#[test]
fn a_replayed_signature_is_refused() {
    let d = devices();
    let now = T0 + 100;
    let signed = sign_ed(&ed_key(7), body_at("phone-1", now, 1));
    let log = ok(verify(&d, &NonceLog::new(), &signed, now));
    assert_eq!(
        code(verify(&d, &log, &signed, now + 5)),
        "replayed_device_signature"
    );
    // The refused attempt changes nothing; a fresh nonce passes.
    let log = ok(verify(
        &d,
        &log,
        &sign_ed(&ed_key(7), body_at("phone-1", now, 2)),
        now + 6,
    ));
    assert_eq!(log.len("phone-1"), 2);
    // Another device may use the same nonce value.
    ok(verify(
        &d,
        &log,
        &sign_p256_der(&p256_key(7), body_at("phone-2", now, 1)),
        now + 7,
    ));
    // After the window, the replay is stale rather than accepted.
    assert_eq!(
        code(verify(&d, &log, &signed, now + WINDOW + 1)),
        "stale_timestamp"
    );
}

#[test]
fn a_reordered_signature_is_accepted_once_within_the_window() {
    let d = devices();
    let now = T0 + 1000;
    let newer = sign_ed(&ed_key(7), body_at("phone-1", now - 10, 1));
    let older = sign_ed(&ed_key(7), body_at("phone-1", now - 200, 2));
    let log = ok(verify(&d, &NonceLog::new(), &newer, now));
    let log = ok(verify(&d, &log, &older, now + 1));
    assert_eq!(
        code(verify(&d, &log, &older, now + 2)),
        "replayed_device_signature"
    );
    // One that fell out of the window is not accepted even if never seen.
    let too_old = sign_ed(&ed_key(7), body_at("phone-1", now - WINDOW - 5, 3));
    assert_eq!(code(verify(&d, &log, &too_old, now + 2)), "stale_timestamp");
}

#[test]
fn the_log_forgets_only_what_can_no_longer_be_accepted() {
    let d = devices();
    let t = T0 + 1000;
    let first = sign_ed(&ed_key(7), body_at("phone-1", t, 1));
    let log = ok(verify(&d, &NonceLog::new(), &first, t));
    // Past the window, the next verification prunes the first nonce.
    let later = sign_ed(&ed_key(7), body_at("phone-1", t + WINDOW + 10, 2));
    let log = ok(verify(&d, &log, &later, t + WINDOW + 10));
    assert_eq!(log.len("phone-1"), 1);
    // Widening the window afterwards does not revive the forgotten replay.
    assert_eq!(
        code(verify_device_signature(
            &d,
            &log,
            &first,
            t + WINDOW + 10,
            10 * WINDOW
        )),
        "stale_timestamp"
    );
    // Nor does a coordinator whose clock lags: the log's time never goes back.
    assert_eq!(code(verify(&d, &log, &first, t + 1)), "stale_timestamp");
    // Pruning keeps nothing once everything is out of every window.
    assert!(log.pruned(t + 10 * WINDOW, WINDOW).is_empty());
}

#[test]
fn a_full_nonce_log_refuses_rather_than_forgets() {
    let d = devices();
    let now = T0 + 1000;
    let nonces: serde_json::Map<String, serde_json::Value> = (0..MAX_NONCES_PER_DEVICE)
        .map(|i| (format!("{i:032x}"), serde_json::Value::from(now)))
        .collect();
    let log: NonceLog = ok(serde_json::from_value(serde_json::json!({
        "now": now,
        "devices": { "phone-1": nonces }
    })));
    assert_eq!(log.len("phone-1"), MAX_NONCES_PER_DEVICE);
    let signed = sign_ed(&ed_key(7), body_at("phone-1", now, 0xee));
    assert_eq!(code(verify(&d, &log, &signed, now)), "nonce_log_full");
    // A replay of a remembered nonce is still a replay.
    let mut replay = body_at("phone-1", now, 0);
    replay.nonce = ok(hex::decode(format!("{:032x}", 5)));
    assert_eq!(
        code(verify(&d, &log, &sign_ed(&ed_key(7), replay), now)),
        "replayed_device_signature"
    );
    // The other device is unaffected; and once the window passes, room returns.
    ok(verify(
        &d,
        &log,
        &sign_p256_der(&p256_key(7), body_at("phone-2", now, 1)),
        now,
    ));
    let later = now + WINDOW + 1;
    ok(verify(
        &d,
        &log,
        &sign_ed(&ed_key(7), body_at("phone-1", later, 0xee)),
        later,
    ));
}

#[test]
fn malformed_signatures_are_refused() {
    let d = devices();
    let now = T0 + 100;
    for (device, sig) in [
        ("phone-1", vec![0u8; 63]),
        ("phone-1", vec![]),
        ("phone-1", vec![1u8; 200]),
        ("phone-2", vec![0u8; 64]),
        ("phone-2", vec![0x30, 0x02, 0x01]),
        ("phone-2", vec![7u8; 70]),
        ("phone-2", vec![7u8; 73]),
    ] {
        let signed = SignedDevicePayment {
            body: body_at(device, now, 1),
            signature: sig.clone(),
        };
        assert_eq!(
            code(verify(&d, &NonceLog::new(), &signed, now)),
            "malformed_signature",
            "{device} {}",
            hex::encode(&sig)
        );
    }
}

#[test]
fn malformed_requests_are_refused() {
    let d = devices();
    let now = T0 + 100;
    type Change = fn(&mut DevicePayment);
    let changes: [(&str, Change); 5] = [
        ("nonce", |b| b.nonce = vec![1; 15]),
        ("nonce", |b| b.nonce = vec![1; 65]),
        ("payout_id", |b| b.payout_id.clear()),
        ("payment.merchant", |b| {
            b.payment.merchant = Some(String::new())
        }),
        ("customer_id", |b| b.customer_id = "c".repeat(129)),
    ];
    for (field, change) in changes {
        let mut b = body_at("phone-1", now, 1);
        change(&mut b);
        let signed = SignedDevicePayment {
            body: b,
            signature: vec![0; 64],
        };
        match verify(&d, &NonceLog::new(), &signed, now) {
            Err(AuthRefusal::MalformedRequest { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    // The bounds are inclusive.
    for n in [16, 64] {
        let mut b = body_at("phone-1", now, 1);
        b.nonce = vec![9; n];
        ok(verify(&d, &NonceLog::new(), &sign_ed(&ed_key(7), b), now));
    }
}

#[test]
fn device_signature_refusals_count_toward_the_risk_features() {
    let d = devices();
    let now = T0 + 100;
    let mut state = RiskState::new();
    let forged = sign_ed(&ed_key(9), body_at("phone-1", now, 1));
    let refusal = match verify(&d, &NonceLog::new(), &forged, now) {
        Err(e) => e,
        Ok(_) => panic!("forgery accepted"),
    };
    assert!(refusal.counts_as_device_refusal());
    ok(state.record_refusal(Some("c-1"), Some("phone-1"), now));
    let request = RiskRequest {
        payment: body().payment,
        context: ClientContext {
            customer_id: Some("c-1".into()),
            device_id: Some("phone-1".into()),
            ..ClientContext::default()
        },
        at: now + 1,
    };
    let features = ok(state.features(&default(), &request));
    assert_eq!(features.device_signature_refusals, 1);
    // Step-up and tier refusals are not device-signature refusals.
    assert!(!AuthRefusal::BadTotp.counts_as_device_refusal());
    assert!(!AuthRefusal::BadPassword { remaining: 1 }.counts_as_device_refusal());
}

#[test]
fn refusal_codes_are_stable() {
    let all = [
        (
            AuthRefusal::UnknownDevice {
                customer_id: "c".into(),
                device_id: "d".into(),
            },
            "unknown_device",
        ),
        (
            AuthRefusal::DeviceRevoked {
                device_id: "d".into(),
                revoked_at: 1,
            },
            "device_revoked",
        ),
        (
            AuthRefusal::WrongDeviceKey {
                device_id: "d".into(),
            },
            "wrong_device_key",
        ),
        (
            AuthRefusal::StaleTimestamp {
                timestamp: 1,
                now: 1000,
                window_secs: 300,
            },
            "stale_timestamp",
        ),
        (
            AuthRefusal::ReplayedDeviceSignature {
                device_id: "d".into(),
                window_secs: 300,
            },
            "replayed_device_signature",
        ),
        (
            AuthRefusal::NonceLogFull {
                device_id: "d".into(),
                cap: 1,
                window_secs: 300,
            },
            "nonce_log_full",
        ),
        (
            AuthRefusal::MalformedSignature {
                device_id: "d".into(),
                curve: "p256",
                why: "x".into(),
            },
            "malformed_signature",
        ),
        (
            AuthRefusal::MalformedRequest {
                field: "nonce",
                why: "x".into(),
            },
            "malformed_request",
        ),
        (
            AuthRefusal::DeviceTooNew {
                device_id: "d".into(),
                registered_at: 1,
                usable_at: 2,
            },
            "device_too_new",
        ),
        (AuthRefusal::BadTotp, "bad_totp"),
        (AuthRefusal::TotpReused { step_secs: 30 }, "totp_reused"),
        (AuthRefusal::TotpLocked { locked_until: 1 }, "totp_locked"),
        (AuthRefusal::BadPassword { remaining: 1 }, "bad_password"),
        (
            AuthRefusal::PasswordLocked { locked_until: 1 },
            "password_locked",
        ),
        (
            AuthRefusal::KycTierLimit {
                tier: KycTier::Basic,
                asset: "USDC".into(),
                kind: LimitKind::Single,
                limit: 1,
                attempted: 2,
                allowed_by: None,
            },
            "kyc_tier_limit",
        ),
    ];
    for (refusal, expected) in all {
        assert_eq!(refusal.code(), expected);
        assert!(!refusal.to_string().is_empty());
    }
}

#[test]
fn signed_payments_and_nonce_logs_round_trip_through_json() {
    let d = devices();
    let now = T0 + 100;
    let signed = sign_ed(&ed_key(7), body_at("phone-1", now, 1));
    let json = ok(serde_json::to_string(&signed));
    let back: SignedDevicePayment = ok(serde_json::from_str(&json));
    assert_eq!(back, signed);
    let log = ok(verify(&d, &NonceLog::new(), &back, now));
    let log: NonceLog = ok(serde_json::from_str(&ok(serde_json::to_string(&log))));
    assert_eq!(
        code(verify(&d, &log, &signed, now)),
        "replayed_device_signature"
    );
}

// ---------------------------------------------------------------- one-time codes

/// RFC 6238 appendix B, SHA-1 rows: the ASCII secret "12345678901234567890",
/// 8 digits.
const RFC6238_SHA1: [(u64, &str); 6] = [
    (59, "94287082"),
    (1_111_111_109, "07081804"),
    (1_111_111_111, "14050471"),
    (1_234_567_890, "89005924"),
    (2_000_000_000, "69279037"),
    (20_000_000_000, "65353130"),
];

fn rfc_enrolment() -> TotpEnrolment {
    ok(TotpEnrolment::enrol_with_digits(
        TotpSecret::new(*b"12345678901234567890"),
        8,
    ))
}

#[test]
fn totp_matches_the_rfc_6238_vectors() {
    for (t, expected) in RFC6238_SHA1 {
        let e = rfc_enrolment();
        assert_eq!(e.code_at(t).as_str(), expected, "T={t}");
        let next = ok(e.check(expected, t));
        assert_eq!(next.last_used_step(), Some(t / 30));
    }
}

fn enrolment() -> TotpEnrolment {
    TotpEnrolment::enrol(TotpSecret::new([0x5a; TOTP_SECRET_BYTES]))
}

#[test]
fn totp_accepts_one_step_of_skew_either_side() {
    let e = enrolment();
    let now = T0 + 15;
    for offset in [-30i64, 0, 30] {
        let at = now.saturating_add_signed(offset);
        let c = e.code_at(at);
        assert_eq!(c.len(), 6);
        assert!(e.check(&c, now).is_ok(), "offset {offset}");
    }
    for offset in [-60i64, 60, 3600] {
        let at = now.saturating_add_signed(offset);
        assert_eq!(
            code(e.check(&e.code_at(at), now)),
            "bad_totp",
            "offset {offset}"
        );
    }
}

#[test]
fn bad_totp_codes_are_refused() {
    let e = enrolment();
    let now = T0;
    let right = e.code_at(now);
    let mut wrong: Vec<u8> = right.as_bytes().to_vec();
    wrong[0] = if wrong[0] == b'9' { b'0' } else { wrong[0] + 1 };
    let wrong = String::from_utf8(wrong).unwrap_or_default();
    for c in [
        wrong.as_str(),
        "",
        "12345",
        "1234567",
        "12a456",
        " 123456",
        "１２３４５６",
    ] {
        assert_eq!(code(e.check(c, now)), "bad_totp", "{c:?}");
    }
    // Before the first 30 s: no previous step, no underflow.
    for t in [0, 1, 29] {
        assert!(e.check(&e.code_at(t), t).is_ok());
    }
}

#[test]
fn a_totp_code_is_accepted_once_and_steps_only_move_forward() {
    let e = enrolment();
    let now = T0 + 45;
    let current = e.code_at(now);
    let e2 = ok(e.check(&current, now));
    assert_eq!(code(e2.check(&current, now)), "totp_reused");
    assert_eq!(code(e2.check(&current, now + 20)), "totp_reused");
    // The previous step's code, still inside the skew, is older: refused.
    assert_eq!(code(e2.check(&e.code_at(now - 30), now)), "totp_reused");
    // The next step's code is accepted.
    let e3 = ok(e2.check(&e.code_at(now + 30), now + 30));
    assert_eq!(e3.last_used_step(), Some((now + 30) / 30));
    assert_eq!(
        AuthRefusal::TotpReused { step_secs: 30 }.to_string(),
        "this one-time code was already used; wait for the next code (every 30 s)"
    );
}

#[test]
fn wrong_codes_lock_the_codes_and_a_right_one_resets_the_count() {
    let e = enrolment();
    let now = T0 + 45;
    let right = e.code_at(now);
    let wrong = if right.as_str() == "000000" {
        "000001"
    } else {
        "000000"
    };
    // Two wrong codes, then the right one: the count starts again.
    let mut state = e.clone();
    for _ in 0..2 {
        let c = state.check_counting(wrong, now, 3, 900);
        assert_eq!(c.result.map_err(|r| r.code()), Err("bad_totp"));
        state = c.state;
    }
    let c = state.check_counting(&right, now, 3, 900);
    assert!(c.result.is_ok());
    state = c.state;
    // Three wrong codes in a row lock them, and while locked even the
    // right code is refused without being compared.
    for _ in 0..3 {
        state = state.check_counting(wrong, now + 30, 3, 900).state;
    }
    assert_eq!(state.locked_until(now + 30), Some(now + 930));
    let c = state.check_counting(&e.code_at(now + 60), now + 60, 3, 900);
    assert_eq!(c.result.map_err(|r| r.code()), Err("totp_locked"));
    // After the lock, the next step's code passes.
    let later = now + 960;
    let c = state.check_counting(&e.code_at(later), later, 3, 900);
    assert!(c.result.is_ok(), "{:?}", c.result);
    assert_eq!(c.state.locked_until(later), None);
    // A reused code is the customer's own: it does not count.
    let reused = c.state.check_counting(&e.code_at(later), later, 1, 900);
    assert_eq!(reused.result.map_err(|r| r.code()), Err("totp_reused"));
    assert_eq!(reused.state.locked_until(later), None);
}

#[test]
fn totp_secrets_stay_out_of_debug_and_round_trip() {
    let e = ok(enrolment().check(&enrolment().code_at(T0), T0));
    let dbg = format!("{e:?}");
    assert!(dbg.contains("redacted"), "{dbg}");
    assert!(!dbg.contains("5a5a") && !dbg.contains("90, 90"), "{dbg}");
    let json = ok(serde_json::to_string(&e));
    let back: TotpEnrolment = ok(serde_json::from_str(&json));
    assert_eq!(back, e);
    assert!(serde_json::from_str::<TotpEnrolment>(r#"{"secret":"00"}"#).is_err());
    let secret = "5a".repeat(TOTP_SECRET_BYTES);
    let digits_9 = format!(r#"{{"secret":"{secret}","digits":9}}"#);
    assert!(serde_json::from_str::<TotpEnrolment>(&digits_9).is_err());
    assert!(TotpEnrolment::enrol_with_digits(TotpSecret::new([1; 20]), 9).is_err());
}

#[test]
fn totp_provisioning_uri() {
    let e = rfc_enrolment();
    let uri = ok(e.provisioning_uri("Keyfold Pay", "alice@example.com"));
    assert_eq!(
        uri.as_str(),
        "otpauth://totp/Keyfold%20Pay:alice%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
         &issuer=Keyfold%20Pay&algorithm=SHA1&digits=8&period=30"
    );
    assert!(e.provisioning_uri("", "a").is_err());
}

// ---------------------------------------------------------------- payment password

fn password(p: &str) -> PaymentPassword {
    ok(PaymentPassword::new(p.to_string()))
}

/// Cheap argon2 costs for the timeline tests (the defaults are tested once).
fn cheap() -> PasswordConfig {
    PasswordConfig {
        memory_kib: 64,
        iterations: 1,
        ..PasswordConfig::default()
    }
}

#[test]
fn password_is_argon2id_at_the_default_costs() {
    let cfg = PasswordConfig::default();
    let s = ok(PasswordState::set(
        &password("correct horse"),
        &[3; 16],
        &cfg,
    ));
    assert!(
        s.phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{}",
        s.phc()
    );
    let checked = s.check(&password("correct horse"), T0, &cfg);
    assert_eq!(checked.result, Ok(()));
    let checked = s.check(&password("correct horsf"), T0, &cfg);
    assert_eq!(code(checked.result), "bad_password");
}

#[test]
fn password_lockout_timeline() {
    let cfg = cheap();
    let right = password("2468");
    let wrong = password("1357");
    let mut s = ok(PasswordState::set(&right, &[1; 16], &cfg));
    let mut now = T0;

    // Four failures count down, the fifth locks for 15 minutes.
    for remaining in [4, 3, 2, 1] {
        let c = s.check(&wrong, now, &cfg);
        assert_eq!(c.result, Err(AuthRefusal::BadPassword { remaining }));
        s = c.state;
        now += 10;
    }
    let c = s.check(&wrong, now, &cfg);
    assert_eq!(
        c.result,
        Err(AuthRefusal::PasswordLocked {
            locked_until: now + 900
        })
    );
    s = c.state;
    let until = now + 900;
    assert!(s.is_locked(until - 1) && !s.is_locked(until));

    // While locked, even the right password is refused, and nothing changes.
    let c = s.check(&right, until - 1, &cfg);
    assert_eq!(code(c.result), "password_locked");
    assert_eq!(c.state, s);

    // After the lock: five more failures lock for twice as long.
    now = until;
    for _ in 0..4 {
        s = s.check(&wrong, now, &cfg).state;
    }
    let c = s.check(&wrong, now, &cfg);
    assert_eq!(
        c.result,
        Err(AuthRefusal::PasswordLocked {
            locked_until: now + 1800
        })
    );
    s = c.state;
    assert_eq!(s.locks(), 2);

    // A success resets failures and the doubling.
    now += 1800;
    let c = s.check(&right, now, &cfg);
    assert_eq!(c.result, Ok(()));
    s = c.state;
    assert_eq!((s.failures(), s.locks(), s.locked_until()), (0, 0, None));
    let c = s.check(&wrong, now, &cfg);
    assert_eq!(c.result, Err(AuthRefusal::BadPassword { remaining: 4 }));

    // Locks double up to 24 hours.
    let lengths: Vec<u64> = (1..=9).map(|n| cfg.lock_length(n)).collect();
    assert_eq!(
        lengths,
        [900, 1800, 3600, 7200, 14_400, 28_800, 57_600, 86_400, 86_400]
    );
    assert_eq!(cfg.lock_length(u32::MAX), 86_400);
}

#[test]
fn passwords_and_hashes_stay_out_of_debug() {
    let cfg = cheap();
    let p = password("hunter2hunter2");
    assert!(!format!("{p:?}").contains("hunter2"));
    let s = ok(PasswordState::set(&p, &[2; 16], &cfg));
    let dbg = format!("{s:?}");
    assert!(!dbg.contains(s.phc()) && !dbg.contains("argon2"), "{dbg}");
}

#[test]
fn password_state_round_trips_and_bad_hashes_do_not_load() {
    let cfg = cheap();
    let s = ok(PasswordState::set(&password("1234"), &[4; 16], &cfg));
    let s = s.check(&password("0000"), T0, &cfg).state;
    let json = ok(serde_json::to_string(&s));
    let back: PasswordState = ok(serde_json::from_str(&json));
    assert_eq!(back, s);
    assert_eq!(back.failures(), 1);

    let phc = s.phc().to_string();
    for bad in [
        phc.replace("argon2id", "argon2i"),
        phc.replace("m=64", "m=4194304"),
        "plaintext".to_string(),
        "$argon2id$v=19$m=64,t=1,p=1".to_string(),
    ] {
        let json = serde_json::json!({ "phc": bad }).to_string();
        assert!(
            serde_json::from_str::<PasswordState>(&json).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn password_bounds_and_config_are_checked() {
    assert!(PaymentPassword::new(String::new()).is_err());
    assert!(PaymentPassword::new("x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    assert!(PaymentPassword::new("x".repeat(MAX_PASSWORD_BYTES)).is_ok());
    for bad in [
        PasswordConfig {
            max_failures: 0,
            ..cheap()
        },
        PasswordConfig {
            lockout_secs: 0,
            ..cheap()
        },
        PasswordConfig {
            max_lockout_secs: 10,
            ..cheap()
        },
        PasswordConfig {
            memory_kib: 1,
            ..cheap()
        },
        PasswordConfig {
            memory_kib: MAX_MEMORY_KIB + 1,
            ..cheap()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
        assert!(PasswordState::set(&password("1"), &[0; 16], &bad).is_err());
    }
    let cfg: PasswordConfig = ok(toml::from_str("max_failures = 3\nlockout_secs = 60"));
    assert_eq!(cfg.max_failures, 3);
    assert_eq!(cfg.max_lockout_secs, 86_400);
}

// ---------------------------------------------------------------- KYC tiers

const LIMITS: &str = r#"
[none]
USDC = { max_single = "0", max_24h = "0" }
[basic]
USDC = { max_single = "1000000000", max_24h = "5000000000" }
[full]
USDC = { max_single = "100000000000", max_24h = "500000000000" }
ETH = { max_single = "10000000000000000000", max_24h = "50000000000000000000" }
"#;

fn limits() -> TierLimits {
    ok(TierLimits::from_toml(LIMITS))
}

#[test]
fn payments_within_the_tier_pass() {
    let l = limits();
    assert_eq!(
        l.check_tier(KycTier::Basic, "USDC", 1_000_000_000, 0),
        Ok(())
    );
    assert_eq!(
        l.check_tier(KycTier::Basic, "USDC", 1_000_000_000, 4_000_000_000),
        Ok(())
    );
    assert_eq!(
        l.check_tier(KycTier::Full, "ETH", 10_000_000_000_000_000_000, 0),
        Ok(())
    );
    assert_eq!(l.check_tier(KycTier::None, "USDC", 0, 0), Ok(()));
}

#[test]
fn a_payment_over_the_single_limit_names_the_tier_that_allows_it() {
    let r = limits().check_tier(KycTier::Basic, "USDC", 2_000_000_000, 0);
    assert_eq!(
        r,
        Err(AuthRefusal::KycTierLimit {
            tier: KycTier::Basic,
            asset: "USDC".into(),
            kind: LimitKind::Single,
            limit: 1_000_000_000,
            attempted: 2_000_000_000,
            allowed_by: Some(KycTier::Full),
        })
    );
    let msg = match r {
        Err(e) => e.to_string(),
        Ok(()) => String::new(),
    };
    assert_eq!(
        msg,
        "max_single limit of KYC tier basic for USDC is 1000000000 base units and the \
         payment is 2000000000; KYC tier full allows it"
    );
}

#[test]
fn the_24h_total_counts_the_payment_and_saturates() {
    let l = limits();
    let r = l.check_tier(KycTier::Basic, "USDC", 1_000_000_000, 4_500_000_000);
    match r {
        Err(AuthRefusal::KycTierLimit {
            kind,
            limit,
            attempted,
            allowed_by,
            ..
        }) => {
            assert_eq!(kind, LimitKind::Total24h);
            assert_eq!(limit, 5_000_000_000);
            assert_eq!(attempted, 5_500_000_000);
            assert_eq!(allowed_by, Some(KycTier::Full));
        }
        other => panic!("{other:?}"),
    }
    let r = l.check_tier(KycTier::Full, "USDC", 1, u128::MAX);
    assert!(matches!(
        r,
        Err(AuthRefusal::KycTierLimit {
            attempted: u128::MAX,
            allowed_by: None,
            ..
        })
    ));
}

#[test]
fn an_unlisted_asset_fails_closed() {
    let l = limits();
    match l.check_tier(KycTier::Basic, "ETH", 1, 0) {
        Err(AuthRefusal::KycTierLimit {
            limit, allowed_by, ..
        }) => {
            assert_eq!(limit, 0);
            assert_eq!(allowed_by, Some(KycTier::Full));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        code(l.check_tier(KycTier::Full, "DOGE", 1, 0)),
        "kyc_tier_limit"
    );
    assert_eq!(
        code(TierLimits::default().check_tier(KycTier::Full, "USDC", 1, 0)),
        "kyc_tier_limit"
    );
    assert_eq!(
        code(l.check_tier(KycTier::None, "USDC", 1, 0)),
        "kyc_tier_limit"
    );
}

#[test]
fn inconsistent_tier_limits_are_refused() {
    for bad in [
        // A lower tier above a higher one.
        "[basic]\nUSDC = { max_single = \"10\", max_24h = \"10\" }\n[full]\nUSDC = { max_single = \"5\", max_24h = \"10\" }",
        // Listed at basic, missing at full.
        "[basic]\nUSDC = { max_single = \"10\", max_24h = \"10\" }",
        // max_single above max_24h.
        "[full]\nUSDC = { max_single = \"11\", max_24h = \"10\" }",
        // Not digits, negative, unknown field, unknown tier.
        "[full]\nUSDC = { max_single = \"1e6\", max_24h = \"10\" }",
        "[full]\nUSDC = { max_single = -1, max_24h = \"10\" }",
        "[full]\nUSDC = { max_single = \"1\", max_24h = \"10\", max_week = \"1\" }",
        "[gold]\nUSDC = { max_single = \"1\", max_24h = \"10\" }",
    ] {
        assert!(
            matches!(TierLimits::from_toml(bad), Err(AuthError::TierLimits(_))),
            "{bad}"
        );
    }
    // Serde validates too, and amounts past 2^64 round-trip.
    let l = limits();
    let json = ok(serde_json::to_string(&l));
    assert_eq!(ok(serde_json::from_str::<TierLimits>(&json)), l);
    assert!(serde_json::from_str::<TierLimits>(
        r#"{"basic":{"USDC":{"max_single":"1","max_24h":"1"}}}"#
    )
    .is_err());
}

// ---------------------------------------------------------------- the whole customer

#[test]
fn customer_auth_state_round_trips() {
    let mut c = ok(CustomerAuth::new("c-1"));
    c.kyc_tier = KycTier::Basic;
    c.devices = ok(c.devices.register(T0, "phone-1", ed_device(7), 3));
    c.nonces = ok(verify(
        &c.devices,
        &c.nonces,
        &sign_ed(&ed_key(7), body_at("phone-1", T0 + 10, 1)),
        T0 + 10,
    ));
    c.totp = Some(enrolment());
    c.password = Some(ok(PasswordState::set(
        &password("1234"),
        &[5; 16],
        &cheap(),
    )));
    let json = ok(serde_json::to_string(&c));
    assert_eq!(ok(serde_json::from_str::<CustomerAuth>(&json)), c);
    assert!(CustomerAuth::new("").is_err());
}

// ---------------------------------------------------------------- hostile input

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_key_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            for curve in ["ed25519", "p256"] {
                if let Ok(k) = DeviceKey::parse(curve, &hex::encode(&bytes)) {
                    // Whatever parses is valid and survives a round trip.
                    prop_assert!(k.validate().is_ok());
                    let back = DeviceKey::parse(curve, &k.public_key_hex());
                    prop_assert_eq!(back, Ok(k));
                }
            }
            let _ = P256Key::from_sec1(&bytes);
        }

        #[test]
        fn arbitrary_key_documents_never_panic(text in "\\PC{0,200}") {
            let _ = DeviceKey::from_json(&text);
            let _ = serde_json::from_str::<CustomerDevices>(&text);
            let _ = serde_json::from_str::<NonceLog>(&text);
            let _ = serde_json::from_str::<SignedDevicePayment>(&text);
            let _ = TierLimits::from_toml(&text);
        }

        #[test]
        fn arbitrary_signatures_never_panic_nor_pass(
            sig in proptest::collection::vec(any::<u8>(), 0..100),
            der_like in any::<bool>(),
            now in any::<u64>(),
            timestamp in any::<u64>(),
        ) {
            let d = devices();
            let mut sig = sig;
            if der_like && sig.len() >= 2 {
                // Steer some inputs into the DER parser's paths.
                sig[0] = 0x30;
                sig[1] = u8::try_from(sig.len() - 2).unwrap_or(0);
            }
            for device in ["phone-1", "phone-2"] {
                let signed = SignedDevicePayment {
                    body: body_at(device, timestamp, 1),
                    signature: sig.clone(),
                };
                let r = verify_device_signature(&d, &NonceLog::new(), &signed, now, WINDOW);
                let c = code(r);
                prop_assert!(
                    c == "malformed_signature" || c == "wrong_device_key",
                    "{device}: {c}"
                );
            }
        }

        #[test]
        fn arbitrary_times_never_panic(now in any::<u64>(), timestamp in any::<u64>(), window in any::<u64>()) {
            let d = devices();
            let signed = sign_ed(&ed_key(7), body_at("phone-1", timestamp, 1));
            if let Ok(log) = verify_device_signature(&d, &NonceLog::new(), &signed, now, window) {
                let _ = log.pruned(now, window);
                let _ = verify_device_signature(&d, &log, &signed, now, window);
            }
            let _ = d.may_authorize_large(now, "phone-1", window);
            let e = enrolment();
            let _ = e.check(&e.code_at(now), now);
        }

        #[test]
        fn arbitrary_codes_are_refused(c in "\\PC{0,12}", now in any::<u64>()) {
            let e = enrolment();
            let right = e.code_at(now);
            let r = e.check(&c, now);
            if c.len() == 6 && r.is_ok() {
                // Only a code of the current step or a neighbour passes.
                let near = [now.saturating_sub(30), now, now.saturating_add(30)];
                prop_assert!(near.iter().any(|t| e.code_at(*t).as_str() == c) || *right == c);
            } else {
                prop_assert!(r.is_err());
            }
        }

        #[test]
        fn tier_checks_never_panic(amount in any::<u128>(), spent in any::<u128>(), tier in 0u8..3) {
            let tier = [KycTier::None, KycTier::Basic, KycTier::Full][usize::from(tier)];
            let l = limits();
            match l.check_tier(tier, "USDC", amount, spent) {
                Ok(()) => prop_assert!(spent.checked_add(amount).is_some()),
                Err(AuthRefusal::KycTierLimit { allowed_by, .. }) => {
                    if let Some(t) = allowed_by {
                        prop_assert!(t > tier);
                        prop_assert_eq!(l.check_tier(t, "USDC", amount, spent), Ok(()));
                    }
                }
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
