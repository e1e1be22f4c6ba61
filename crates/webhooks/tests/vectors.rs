//! Known-answer vectors for Standard Webhooks signatures, computed outside
//! this crate: `v1` by the reference Python library `standardwebhooks`
//! 1.3.0 (and by Python's own `hmac` module), `v1a` by Python's
//! `cryptography` 51.0.1 and PyNaCl 1.6.2, which agree.

use keyfold_webhooks::{sign_v1, sign_v1a, verify, Secret, SigningKey, VerifyError, VerifyingKey};

const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const TIMESTAMP: i64 = 1_614_265_330;
const BODY: &[u8] = br#"{"test": 2432232314}"#;

/// The vector of the spec's reference libraries.
const V1_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const V1_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// Seed of RFC 8032 test 1 (9d61b19d...7f60) and its public key
/// (d75a9801...511a), signing the same content as the v1 vector.
const V1A_SIGNING_KEY: &str = "whsk_nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const V1A_PUBLIC_KEY: &str = "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const V1A_SIGNATURE: &str =
    "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==";

#[test]
fn v1_reference_vector() {
    let secret = Secret::parse(V1_SECRET).unwrap();
    assert_eq!(sign_v1(&secret, MSG_ID, TIMESTAMP, BODY), V1_SIGNATURE);
    assert_eq!(
        verify(
            V1_SIGNATURE,
            MSG_ID,
            TIMESTAMP,
            BODY,
            TIMESTAMP + 60,
            &[secret],
            &[]
        ),
        Ok(())
    );
}

#[test]
fn v1a_vector() {
    let key = SigningKey::parse(V1A_SIGNING_KEY).unwrap();
    assert_eq!(key.public_key(), V1A_PUBLIC_KEY);
    assert_eq!(&*key.to_string(), V1A_SIGNING_KEY);
    assert_eq!(sign_v1a(&key, MSG_ID, TIMESTAMP, BODY), V1A_SIGNATURE);
    let public = VerifyingKey::parse(V1A_PUBLIC_KEY).unwrap();
    assert_eq!(
        verify(
            V1A_SIGNATURE,
            MSG_ID,
            TIMESTAMP,
            BODY,
            TIMESTAMP,
            &[],
            &[public]
        ),
        Ok(())
    );
}

#[test]
fn both_vectors_in_one_header() {
    let header = format!("{V1_SIGNATURE} {V1A_SIGNATURE}");
    let secret = Secret::parse(V1_SECRET).unwrap();
    let public = VerifyingKey::parse(V1A_PUBLIC_KEY).unwrap();
    assert_eq!(
        verify(&header, MSG_ID, TIMESTAMP, BODY, TIMESTAMP, &[secret], &[]),
        Ok(())
    );
    assert_eq!(
        verify(&header, MSG_ID, TIMESTAMP, BODY, TIMESTAMP, &[], &[public]),
        Ok(())
    );
    // Five minutes and one second later the same message is a replay.
    assert_eq!(
        verify(
            &header,
            MSG_ID,
            TIMESTAMP,
            BODY,
            TIMESTAMP + 301,
            &[],
            &[public]
        ),
        Err(VerifyError::Stale {
            timestamp: TIMESTAMP,
            now: TIMESTAMP + 301
        })
    );
}
