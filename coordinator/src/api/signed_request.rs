//! Verification of signed merchant write requests: a bearer token alone can be
//! replayed by anyone who sees one request, so writes may also carry a
//! signature over the whole request, a timestamp and a single-use nonce.
//!
//! This module is pure: no I/O, the current time is an argument. It checks the
//! headers, the time window and the signature; the caller then records the
//! nonce durably (per merchant) and refuses a nonce it has seen before, which is
//! what actually stops a replay inside the time window.
//!
//! # Headers
//!
//! | header | value |
//! |---|---|
//! | `keyfold-timestamp` | Unix time in decimal seconds, 1 to 12 digits |
//! | `keyfold-nonce` | 16 to 64 characters of `A-Z a-z 0-9 _ -`, fresh per request |
//! | `keyfold-signature` | `v1=<base64>` (HMAC-SHA256) or `v1a=<base64>` (Ed25519) |
//!
//! Either all three headers are sent or none; each at most once, visible ASCII
//! only. Base64 is the standard alphabet with padding. The scheme must be the
//! one registered for the merchant's key: an HMAC key never accepts `v1a`, an
//! Ed25519 key never accepts `v1` (otherwise a public key could be misused as
//! an HMAC secret).
//!
//! # Canonical string
//!
//! The signed message is the UTF-8 string made of six lines joined by `\n`,
//! with no trailing newline:
//!
//! ```text
//! KEYFOLD-REQUEST-V1
//! <METHOD, upper case>
//! <path and query exactly as sent, e.g. /v1/orders?x=1>
//! <timestamp, exactly as sent in keyfold-timestamp>
//! <nonce, exactly as sent in keyfold-nonce>
//! <lowercase hex SHA-256 of the raw body bytes>
//! ```
//!
//! A request without a body hashes the empty string
//! (`e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855`).
//!
//! - `v1`: HMAC-SHA256 of the canonical string keyed with the merchant's
//!   shared secret bytes; the 32-byte tag, base64. Compared in constant time.
//! - `v1a`: Ed25519 signature (64 bytes, base64) of the canonical string,
//!   verified with `verify_strict` against the merchant's 32-byte public key.
//!
//! # Rules
//!
//! The timestamp must be within [`MAX_SKEW_SECS`] of the server's clock in
//! either direction (exactly 300 s away is accepted). Cheap format and time
//! checks run before the cryptographic check. Every refusal maps to one error
//! code ([`SignedRequestError::code`]); the worked example and the merchant's
//! view are in `docs/signed-requests.md`, whose values the tests below assert.

use std::fmt;

use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::error::ErrorCode;

/// Header carrying the Unix time of signing, in decimal seconds.
pub(crate) const TIMESTAMP_HEADER: &str = "keyfold-timestamp";
/// Header carrying the single-use nonce.
pub(crate) const NONCE_HEADER: &str = "keyfold-nonce";
/// Header carrying `v1=<base64>` or `v1a=<base64>`.
pub(crate) const SIGNATURE_HEADER: &str = "keyfold-signature";

/// Largest accepted distance, in seconds, between the request's timestamp and
/// the server's clock, in either direction.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

/// First line of the canonical string; versioned so that a later format can
/// never be confused with this one.
const CANONICAL_PREFIX: &str = "KEYFOLD-REQUEST-V1";

/// Longest accepted timestamp, in digits (keeps the parse within `i64`).
const MAX_TIMESTAMP_DIGITS: usize = 12;
/// Shortest accepted nonce (16 random characters are plenty against guessing
/// a collision; shorter ones suggest a counter or a bug).
const MIN_NONCE_LEN: usize = 16;
/// Longest accepted nonce (bounds what the caller stores per request).
const MAX_NONCE_LEN: usize = 64;

/// Length of an HMAC-SHA256 tag.
const HMAC_LEN: usize = 32;
/// Length of an Ed25519 signature.
const ED25519_LEN: usize = 64;

/// A signature scheme, named by its prefix in `keyfold-signature`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `v1`: HMAC-SHA256 with a shared secret.
    Hmac,
    /// `v1a`: Ed25519 with the merchant's public key.
    Ed25519,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::Hmac => f.write_str("v1 (HMAC-SHA256)"),
            Scheme::Ed25519 => f.write_str("v1a (Ed25519)"),
        }
    }
}

/// The key a merchant registered to sign requests with.
pub(crate) enum RequestKey {
    /// Shared secret for `v1` (HMAC-SHA256); wiped from memory on drop.
    Hmac(Zeroizing<Vec<u8>>),
    /// Public key for `v1a` (Ed25519).
    Ed25519(VerifyingKey),
}

impl RequestKey {
    /// The only scheme this key accepts.
    pub(crate) fn scheme(&self) -> Scheme {
        match self {
            RequestKey::Hmac(_) => Scheme::Hmac,
            RequestKey::Ed25519(_) => Scheme::Ed25519,
        }
    }
}

// By hand: a derived Debug would print the shared secret into logs.
impl fmt::Debug for RequestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestKey::Hmac(_) => f.write_str("RequestKey::Hmac(<redacted>)"),
            RequestKey::Ed25519(key) => {
                write!(f, "RequestKey::Ed25519({})", hex::encode(key.as_bytes()))
            }
        }
    }
}

/// The three signature headers of one request, checked to be present once
/// each and visible ASCII, not yet parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignedParts<'a> {
    /// Value of `keyfold-timestamp`.
    pub(crate) timestamp: &'a str,
    /// Value of `keyfold-nonce`.
    pub(crate) nonce: &'a str,
    /// Value of `keyfold-signature`.
    pub(crate) signature: &'a str,
}

/// What a verified request carried; the caller records the nonce durably
/// (per API key, at least as long as [`MAX_SKEW_SECS`] after `timestamp`) and
/// refuses it when seen again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedRequest {
    /// The request's Unix time, in seconds.
    pub(crate) timestamp: i64,
    /// The request's nonce.
    pub(crate) nonce: String,
}

/// Why a signed request was refused. Messages name the header at fault and
/// what to change; they never echo the signature or the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignedRequestError {
    /// Some signature headers were sent but not all three.
    #[error(
        "the request is missing the {missing} header: send all of keyfold-timestamp, \
         keyfold-nonce and keyfold-signature, or none of them"
    )]
    Incomplete {
        /// The missing header names, comma separated.
        missing: String,
    },
    /// A signature header appears more than once.
    #[error("the {header} header appears more than once: send it exactly once")]
    Duplicate {
        /// The repeated header.
        header: &'static str,
    },
    /// A signature header holds characters other than visible ASCII.
    #[error(
        "the {header} header holds characters other than visible ASCII \
         (no spaces, no control or non-ASCII characters): send it as documented"
    )]
    NotVisibleAscii {
        /// The offending header.
        header: &'static str,
    },
    /// The timestamp is not 1 to 12 decimal digits.
    #[error(
        "the keyfold-timestamp header must be the Unix time in decimal seconds \
         (1 to 12 digits, nothing else): sign with the current time"
    )]
    BadTimestamp,
    /// The timestamp is too far from the server's clock.
    #[error(
        "the keyfold-timestamp {timestamp} is {} s away from the server's clock \
         (at most {MAX_SKEW_SECS} s): sign with the current time",
        .now.abs_diff(*.timestamp)
    )]
    Stale {
        /// The request's timestamp.
        timestamp: i64,
        /// The server's clock.
        now: i64,
    },
    /// The nonce has the wrong length or characters.
    #[error(
        "the keyfold-nonce header must be 16 to 64 characters of A-Z, a-z, 0-9, '_' or '-': \
         send a fresh random value with each request"
    )]
    BadNonce,
    /// The signature header cannot be parsed.
    #[error(
        "the keyfold-signature header is malformed ({reason}): send v1=<base64 HMAC-SHA256> \
         or v1a=<base64 Ed25519 signature>"
    )]
    Malformed {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signature uses another scheme than the one registered for the key.
    #[error(
        "this API key signs with {expected} but the request carries a {got} signature: \
         sign with the registered scheme"
    )]
    WrongScheme {
        /// The key's scheme.
        expected: Scheme,
        /// The request's scheme.
        got: Scheme,
    },
    /// The signature does not match the request.
    #[error(
        "the keyfold-signature does not match the request: sign the canonical string \
         (method, path and query as sent, timestamp, nonce, SHA-256 of the exact body bytes) \
         with this API key's secret, see docs/signed-requests.md"
    )]
    BadSignature,
}

impl SignedRequestError {
    /// The API error code for this refusal.
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            SignedRequestError::Incomplete { .. }
            | SignedRequestError::Duplicate { .. }
            | SignedRequestError::NotVisibleAscii { .. }
            | SignedRequestError::BadTimestamp
            | SignedRequestError::BadNonce
            | SignedRequestError::Malformed { .. } => ErrorCode::SignatureMalformed,
            SignedRequestError::Stale { .. } => ErrorCode::RequestStale,
            SignedRequestError::WrongScheme { .. } | SignedRequestError::BadSignature => {
                ErrorCode::SignatureInvalid
            }
        }
    }
}

/// One signature header: `None` if absent, its value if present exactly once
/// and visible ASCII.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<Option<&'a str>, SignedRequestError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SignedRequestError::Duplicate { header: name });
    }
    // Stricter than `HeaderValue::to_str`, which lets spaces and tabs through:
    // none of the three values can contain them, and refusing them here keeps
    // what is signed identical to what is parsed.
    let bytes = value.as_bytes();
    if !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(SignedRequestError::NotVisibleAscii { header: name });
    }
    std::str::from_utf8(bytes)
        .map(Some)
        .map_err(|_| SignedRequestError::NotVisibleAscii { header: name })
}

/// The signature headers of a request: `None` if none of the three is
/// present, an error if only some are, if one is repeated or if one holds
/// anything but visible ASCII.
pub(crate) fn parts(headers: &HeaderMap) -> Result<Option<SignedParts<'_>>, SignedRequestError> {
    let timestamp = single_header(headers, TIMESTAMP_HEADER)?;
    let nonce = single_header(headers, NONCE_HEADER)?;
    let signature = single_header(headers, SIGNATURE_HEADER)?;
    match (timestamp, nonce, signature) {
        (None, None, None) => Ok(None),
        (Some(timestamp), Some(nonce), Some(signature)) => Ok(Some(SignedParts {
            timestamp,
            nonce,
            signature,
        })),
        (timestamp, nonce, signature) => {
            let missing: Vec<&str> = [
                (TIMESTAMP_HEADER, timestamp.is_none()),
                (NONCE_HEADER, nonce.is_none()),
                (SIGNATURE_HEADER, signature.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, absent)| absent.then_some(name))
            .collect();
            Err(SignedRequestError::Incomplete {
                missing: missing.join(", "),
            })
        }
    }
}

/// The string a merchant signs (see the module documentation). The method is
/// upper-cased; everything else is used exactly as given.
pub(crate) fn canonical_string(
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let body_hash = hex::encode(Sha256::digest(body));
    format!(
        "{CANONICAL_PREFIX}\n{}\n{path_and_query}\n{timestamp}\n{nonce}\n{body_hash}",
        method.to_ascii_uppercase()
    )
}

/// Parses the timestamp: 1 to 12 decimal digits.
fn parse_timestamp(timestamp: &str) -> Result<i64, SignedRequestError> {
    if timestamp.is_empty()
        || timestamp.len() > MAX_TIMESTAMP_DIGITS
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignedRequestError::BadTimestamp);
    }
    // Cannot fail after the checks above (12 digits fit an i64), but an error
    // is still better than a panic if the limit is ever raised.
    timestamp
        .parse()
        .map_err(|_| SignedRequestError::BadTimestamp)
}

/// Checks the nonce's length and alphabet.
fn check_nonce(nonce: &str) -> Result<(), SignedRequestError> {
    let ok = (MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(SignedRequestError::BadNonce)
    }
}

/// Splits `v1=<base64>` / `v1a=<base64>` into its scheme and decoded bytes,
/// checking the length the scheme needs.
fn parse_signature(value: &str) -> Result<(Scheme, Vec<u8>), SignedRequestError> {
    let (prefix, encoded) = value.split_once('=').ok_or(SignedRequestError::Malformed {
        reason: "no scheme prefix",
    })?;
    let (scheme, len) = match prefix {
        "v1" => (Scheme::Hmac, HMAC_LEN),
        "v1a" => (Scheme::Ed25519, ED25519_LEN),
        _ => {
            return Err(SignedRequestError::Malformed {
                reason: "unknown scheme",
            })
        }
    };
    // The two valid encodings are 44 and 88 characters; refusing anything
    // much longer before decoding bounds the work an attacker can ask for.
    if encoded.len() > 2 * ED25519_LEN {
        return Err(SignedRequestError::Malformed {
            reason: "signature too long",
        });
    }
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| SignedRequestError::Malformed {
            reason: "not standard base64 with padding",
        })?;
    if bytes.len() != len {
        return Err(SignedRequestError::Malformed {
            reason: match scheme {
                Scheme::Hmac => "a v1 signature is 32 bytes",
                Scheme::Ed25519 => "a v1a signature is 64 bytes",
            },
        });
    }
    Ok((scheme, bytes))
}

/// Verifies a signed request against the merchant's key at time `now_unix`
/// (Unix seconds). On success the caller must still refuse a reused nonce.
pub(crate) fn verify(
    key: &RequestKey,
    parts: &SignedParts,
    method: &str,
    path_and_query: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<VerifiedRequest, SignedRequestError> {
    let timestamp = parse_timestamp(parts.timestamp)?;
    check_nonce(parts.nonce)?;
    let (scheme, signature) = parse_signature(parts.signature)?;
    if scheme != key.scheme() {
        return Err(SignedRequestError::WrongScheme {
            expected: key.scheme(),
            got: scheme,
        });
    }
    // `abs_diff` cannot overflow, whatever the two clocks say.
    if now_unix.abs_diff(timestamp) > MAX_SKEW_SECS.unsigned_abs() {
        return Err(SignedRequestError::Stale {
            timestamp,
            now: now_unix,
        });
    }

    let message = canonical_string(method, path_and_query, parts.timestamp, parts.nonce, body);
    match key {
        RequestKey::Hmac(secret) => {
            // An empty secret would let anyone compute the tag: treat it as a
            // key that verifies nothing rather than trusting the registration.
            if secret.is_empty() {
                return Err(SignedRequestError::BadSignature);
            }
            let mut mac = Hmac::<Sha256>::new_from_slice(secret)
                .map_err(|_| SignedRequestError::BadSignature)?;
            mac.update(message.as_bytes());
            // `verify_slice` compares in constant time.
            mac.verify_slice(&signature)
                .map_err(|_| SignedRequestError::BadSignature)?;
        }
        RequestKey::Ed25519(public) => {
            let bytes: [u8; ED25519_LEN] = signature
                .as_slice()
                .try_into()
                .map_err(|_| SignedRequestError::BadSignature)?;
            // `verify_strict` refuses small-order keys and non-canonical
            // signatures, so one request has exactly one valid signature.
            public
                .verify_strict(message.as_bytes(), &Signature::from_bytes(&bytes))
                .map_err(|_| SignedRequestError::BadSignature)?;
        }
    }
    Ok(VerifiedRequest {
        timestamp,
        nonce: parts.nonce.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use ed25519_dalek::{Signer, SigningKey};

    // The worked example of docs/signed-requests.md; the expected values were
    // computed independently with Python's hmac/hashlib/base64 modules.
    const DOC_SECRET: &str = "kfs_3f1c9a0b7d2e4f6a8b1c3d5e7f9a0b2c";
    const DOC_METHOD: &str = "POST";
    const DOC_PATH: &str = "/v1/payouts";
    const DOC_TIMESTAMP: &str = "1796601600";
    const DOC_NOW: i64 = 1_796_601_600;
    const DOC_NONCE: &str = "9f2b7c1e4a6d8053";
    const DOC_BODY: &str = r#"{"payout_id":"p-1001","chain":"eth-l2","asset":"ETH","amount":"25000000000000000","to":"0x8ba1f109551bD432803012645Ac136ddd64DBA72"}"#;
    const DOC_BODY_SHA256: &str =
        "ae72ae2e65afedbb422a75a25c2d78f74d42f520ecc147e8dbaa33bf62cfaa45";
    const DOC_SIGNATURE: &str = "v1=Cal1gDv64u0B81KGui4hJgRY6psJbOkgeLN+IZraisM=";
    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn hmac_key() -> RequestKey {
        RequestKey::Hmac(Zeroizing::new(DOC_SECRET.as_bytes().to_vec()))
    }

    fn doc_parts() -> SignedParts<'static> {
        SignedParts {
            timestamp: DOC_TIMESTAMP,
            nonce: DOC_NONCE,
            signature: DOC_SIGNATURE,
        }
    }

    fn hmac_sign(secret: &[u8], message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
        mac.update(message.as_bytes());
        format!("v1={}", BASE64.encode(mac.finalize().into_bytes()))
    }

    fn ed_signing_key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn ed_sign(key: &SigningKey, message: &str) -> String {
        format!(
            "v1a={}",
            BASE64.encode(key.sign(message.as_bytes()).to_bytes())
        )
    }

    fn verify_doc(
        parts: &SignedParts,
        method: &str,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<VerifiedRequest, SignedRequestError> {
        verify(&hmac_key(), parts, method, path, body, now)
    }

    #[test]
    fn doc_example_canonical_string_and_hash() {
        let canonical = canonical_string(
            DOC_METHOD,
            DOC_PATH,
            DOC_TIMESTAMP,
            DOC_NONCE,
            DOC_BODY.as_bytes(),
        );
        assert_eq!(
            hex::encode(Sha256::digest(DOC_BODY.as_bytes())),
            DOC_BODY_SHA256
        );
        assert_eq!(
            canonical,
            format!(
                "KEYFOLD-REQUEST-V1\nPOST\n/v1/payouts\n1796601600\n9f2b7c1e4a6d8053\n{DOC_BODY_SHA256}"
            )
        );
        assert!(!canonical.ends_with('\n'));
    }

    #[test]
    fn doc_example_hmac_known_answer() {
        let canonical = canonical_string(
            DOC_METHOD,
            DOC_PATH,
            DOC_TIMESTAMP,
            DOC_NONCE,
            DOC_BODY.as_bytes(),
        );
        assert_eq!(hmac_sign(DOC_SECRET.as_bytes(), &canonical), DOC_SIGNATURE);
        let verified = verify_doc(
            &doc_parts(),
            DOC_METHOD,
            DOC_PATH,
            DOC_BODY.as_bytes(),
            DOC_NOW,
        )
        .expect("the documented example verifies");
        assert_eq!(
            verified,
            VerifiedRequest {
                timestamp: DOC_NOW,
                nonce: DOC_NONCE.to_owned()
            }
        );
    }

    #[test]
    fn hmac_known_answer_with_query_and_empty_body() {
        // python3: base64(hmac(secret, "KEYFOLD-REQUEST-V1\nPOST\n/v1/payouts?x=1\n
        // 1700000000\nabcdefghijklmnop\n" + sha256(b"").hexdigest(), sha256))
        let canonical = canonical_string(
            "post",
            "/v1/payouts?x=1",
            "1700000000",
            "abcdefghijklmnop",
            b"",
        );
        assert_eq!(
            canonical,
            format!("KEYFOLD-REQUEST-V1\nPOST\n/v1/payouts?x=1\n1700000000\nabcdefghijklmnop\n{EMPTY_SHA256}")
        );
        let parts = SignedParts {
            timestamp: "1700000000",
            nonce: "abcdefghijklmnop",
            signature: "v1=ihK0boILWqqKJbZcPHICPHT4ZnKgZiPk/1fplmJUw3Q=",
        };
        assert!(verify_doc(&parts, "POST", "/v1/payouts?x=1", b"", 1_700_000_000).is_ok());
        // The query is part of what is signed.
        assert_eq!(
            verify_doc(&parts, "POST", "/v1/payouts", b"", 1_700_000_000),
            Err(SignedRequestError::BadSignature)
        );
    }

    #[test]
    fn ed25519_round_trip() {
        let signing = ed_signing_key();
        let key = RequestKey::Ed25519(signing.verifying_key());
        let canonical = canonical_string(
            "POST",
            "/v1/orders",
            "1700000000",
            "nonce-0123456789",
            b"{}",
        );
        let signature = ed_sign(&signing, &canonical);
        let parts = SignedParts {
            timestamp: "1700000000",
            nonce: "nonce-0123456789",
            signature: &signature,
        };
        let verified = verify(&key, &parts, "POST", "/v1/orders", b"{}", 1_700_000_100)
            .expect("a fresh Ed25519 signature verifies");
        assert_eq!(verified.timestamp, 1_700_000_000);
        assert_eq!(verified.nonce, "nonce-0123456789");

        // Tampered body, and another key.
        assert_eq!(
            verify(&key, &parts, "POST", "/v1/orders", b"{ }", 1_700_000_100),
            Err(SignedRequestError::BadSignature)
        );
        let other = RequestKey::Ed25519(SigningKey::from_bytes(&[8u8; 32]).verifying_key());
        assert_eq!(
            verify(&other, &parts, "POST", "/v1/orders", b"{}", 1_700_000_100),
            Err(SignedRequestError::BadSignature)
        );
    }

    #[test]
    fn tampering_is_refused() {
        let body = DOC_BODY.as_bytes();
        let mut tampered = body.to_vec();
        // One digit of the amount changed.
        if let Some(pos) = tampered.iter().position(|&b| b == b'2') {
            tampered[pos] = b'9';
        }
        assert_ne!(tampered, body);
        let cases: [(&str, &str, &[u8]); 5] = [
            (DOC_METHOD, DOC_PATH, &tampered),
            (DOC_METHOD, DOC_PATH, b""),
            (DOC_METHOD, "/v1/payouts?dry_run=1", body),
            (DOC_METHOD, "/v1/orders", body),
            ("PUT", DOC_PATH, body),
        ];
        for (method, path, body) in cases {
            assert_eq!(
                verify_doc(&doc_parts(), method, path, body, DOC_NOW),
                Err(SignedRequestError::BadSignature),
                "{method} {path}"
            );
        }
        // Another nonce or timestamp with the same signature.
        let mut parts = doc_parts();
        parts.nonce = "9f2b7c1e4a6d8054";
        assert_eq!(
            verify_doc(&parts, DOC_METHOD, DOC_PATH, body, DOC_NOW),
            Err(SignedRequestError::BadSignature)
        );
        let mut parts = doc_parts();
        parts.timestamp = "1796601601";
        assert_eq!(
            verify_doc(&parts, DOC_METHOD, DOC_PATH, body, DOC_NOW),
            Err(SignedRequestError::BadSignature)
        );
        // Another secret.
        let key = RequestKey::Hmac(Zeroizing::new(b"kfs_another_secret".to_vec()));
        assert_eq!(
            verify(&key, &doc_parts(), DOC_METHOD, DOC_PATH, body, DOC_NOW),
            Err(SignedRequestError::BadSignature)
        );
    }

    #[test]
    fn method_is_upper_cased() {
        assert_eq!(
            canonical_string("post", "/", "1", "n", b""),
            canonical_string("POST", "/", "1", "n", b"")
        );
        assert!(verify_doc(&doc_parts(), "post", DOC_PATH, DOC_BODY.as_bytes(), DOC_NOW).is_ok());
    }

    #[test]
    fn time_window_boundaries() {
        let body = DOC_BODY.as_bytes();
        for now in [DOC_NOW - 300, DOC_NOW, DOC_NOW + 300] {
            assert!(
                verify_doc(&doc_parts(), DOC_METHOD, DOC_PATH, body, now).is_ok(),
                "{now}"
            );
        }
        for now in [
            DOC_NOW - 301,
            DOC_NOW + 301,
            DOC_NOW + 100_000,
            0,
            i64::MIN,
            i64::MAX,
        ] {
            let err = verify_doc(&doc_parts(), DOC_METHOD, DOC_PATH, body, now)
                .expect_err("outside the window");
            assert_eq!(
                err,
                SignedRequestError::Stale {
                    timestamp: DOC_NOW,
                    now
                }
            );
            assert_eq!(err.code().as_str(), "request_stale");
        }
    }

    #[test]
    fn stale_message_tells_what_to_do() {
        let err = SignedRequestError::Stale {
            timestamp: 1_700_000_000,
            now: 1_700_000_412,
        };
        assert_eq!(
            err.to_string(),
            "the keyfold-timestamp 1700000000 is 412 s away from the server's clock \
             (at most 300 s): sign with the current time"
        );
        let ahead = SignedRequestError::Stale {
            timestamp: 1_700_000_412,
            now: 1_700_000_000,
        };
        assert!(ahead.to_string().contains("is 412 s away"));
    }

    #[test]
    fn bad_timestamps() {
        for ts in [
            "",
            "-1",
            "+1796601600",
            "1796601600.0",
            " 1796601600",
            "0x6b15a800",
            "1234567890123",
        ] {
            let mut parts = doc_parts();
            parts.timestamp = ts;
            let err = verify_doc(&parts, DOC_METHOD, DOC_PATH, DOC_BODY.as_bytes(), DOC_NOW)
                .expect_err("bad timestamp");
            assert_eq!(err, SignedRequestError::BadTimestamp, "{ts:?}");
            assert_eq!(err.code().as_str(), "signature_malformed");
        }
        // Twelve digits parse (and are then simply stale).
        let mut parts = doc_parts();
        parts.timestamp = "999999999999";
        assert!(matches!(
            verify_doc(&parts, DOC_METHOD, DOC_PATH, DOC_BODY.as_bytes(), DOC_NOW),
            Err(SignedRequestError::Stale {
                timestamp: 999_999_999_999,
                ..
            })
        ));
    }

    #[test]
    fn wrong_scheme_is_refused_both_ways() {
        // An HMAC merchant sending v1a.
        let signing = ed_signing_key();
        let canonical = canonical_string(
            DOC_METHOD,
            DOC_PATH,
            DOC_TIMESTAMP,
            DOC_NONCE,
            DOC_BODY.as_bytes(),
        );
        let ed_signature = ed_sign(&signing, &canonical);
        let parts = SignedParts {
            signature: &ed_signature,
            ..doc_parts()
        };
        let err = verify_doc(&parts, DOC_METHOD, DOC_PATH, DOC_BODY.as_bytes(), DOC_NOW)
            .expect_err("v1a for an HMAC key");
        assert_eq!(
            err,
            SignedRequestError::WrongScheme {
                expected: Scheme::Hmac,
                got: Scheme::Ed25519
            }
        );
        assert_eq!(err.code().as_str(), "signature_invalid");

        // An Ed25519 merchant sending v1, even one keyed with its public key
        // bytes (which anyone knows).
        let public = signing.verifying_key();
        let key = RequestKey::Ed25519(public);
        let v1 = hmac_sign(public.as_bytes(), &canonical);
        let parts = SignedParts {
            signature: &v1,
            ..doc_parts()
        };
        assert_eq!(
            verify(
                &key,
                &parts,
                DOC_METHOD,
                DOC_PATH,
                DOC_BODY.as_bytes(),
                DOC_NOW
            ),
            Err(SignedRequestError::WrongScheme {
                expected: Scheme::Ed25519,
                got: Scheme::Hmac
            })
        );
    }

    #[test]
    fn malformed_signatures() {
        let cases = [
            "",
            "Cal1gDv64u0B81KGui4hJgRY6psJbOkgeLN+IZraisM=",
            "v2=Cal1gDv64u0B81KGui4hJgRY6psJbOkgeLN+IZraisM=",
            "V1=Cal1gDv64u0B81KGui4hJgRY6psJbOkgeLN+IZraisM=",
            // Padding missing.
            "v1=Cal1gDv64u0B81KGui4hJgRY6psJbOkgeLN+IZraisM",
            // URL-safe alphabet.
            "v1=Cal1gDv64u0B81KGui4hJgRY6psJbOkgeLN-IZraisM=",
            "v1=!!!!",
            // Valid base64, wrong lengths.
            "v1=AAAA",
            "v1=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
            "v1a=Cal1gDv64u0B81KGui4hJgRY6psJbOkgeLN+IZraisM=",
            // Far too long.
            &format!("v1={}", "A".repeat(1000)),
        ];
        for signature in cases {
            let parts = SignedParts {
                signature,
                ..doc_parts()
            };
            // A 32-byte v1a is malformed, not the wrong scheme: the length is
            // checked when the header is parsed, before the key is consulted.
            match verify_doc(&parts, DOC_METHOD, DOC_PATH, DOC_BODY.as_bytes(), DOC_NOW) {
                Err(ref e @ SignedRequestError::Malformed { .. }) => {
                    assert_eq!(e.code().as_str(), "signature_malformed")
                }
                other => panic!("{signature:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_nonces() {
        let long = "a".repeat(65);
        for nonce in [
            "",
            "short",
            "123456789012345",
            &long,
            "9f2b7c1e4a6d805 ",
            "9f2b7c1e4a6d8053!",
            "9f2b7c1e4a6d8053/",
            "9f2b7c1e4a6d8053=",
            "9f2b7c1e.4a6d8053",
            "9f2b7c1e4a6d8053\u{e9}",
        ] {
            let parts = SignedParts {
                nonce,
                ..doc_parts()
            };
            let err = verify_doc(&parts, DOC_METHOD, DOC_PATH, DOC_BODY.as_bytes(), DOC_NOW)
                .expect_err("bad nonce");
            assert_eq!(err, SignedRequestError::BadNonce, "{nonce:?}");
            assert_eq!(err.code().as_str(), "signature_malformed");
        }
        // The bounds and the full alphabet are accepted (and then fail only
        // on the signature, which was made for another nonce).
        let max = "A".repeat(64);
        for nonce in ["abcdefghijklmnop", "AZaz09_-AZaz09_-", &max] {
            let parts = SignedParts {
                nonce,
                ..doc_parts()
            };
            assert_eq!(
                verify_doc(&parts, DOC_METHOD, DOC_PATH, DOC_BODY.as_bytes(), DOC_NOW),
                Err(SignedRequestError::BadSignature),
                "{nonce:?}"
            );
        }
    }

    #[test]
    fn empty_hmac_secret_verifies_nothing() {
        let key = RequestKey::Hmac(Zeroizing::new(Vec::new()));
        let canonical = canonical_string(DOC_METHOD, DOC_PATH, DOC_TIMESTAMP, DOC_NONCE, b"");
        let signature = hmac_sign(b"", &canonical);
        let parts = SignedParts {
            signature: &signature,
            ..doc_parts()
        };
        assert_eq!(
            verify(&key, &parts, DOC_METHOD, DOC_PATH, b"", DOC_NOW),
            Err(SignedRequestError::BadSignature)
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                *name,
                HeaderValue::from_str(value).expect("valid header value"),
            );
        }
        map
    }

    #[test]
    fn parts_from_headers() {
        assert_eq!(parts(&HeaderMap::new()), Ok(None));
        assert_eq!(parts(&headers(&[("authorization", "Bearer x")])), Ok(None));

        let map = headers(&[
            (TIMESTAMP_HEADER, DOC_TIMESTAMP),
            (NONCE_HEADER, DOC_NONCE),
            (SIGNATURE_HEADER, DOC_SIGNATURE),
        ]);
        let got = parts(&map).expect("well formed").expect("present");
        assert_eq!(got, doc_parts());
        assert!(verify_doc(&got, DOC_METHOD, DOC_PATH, DOC_BODY.as_bytes(), DOC_NOW).is_ok());

        // Header names are case-insensitive on the wire.
        let mut upper = HeaderMap::new();
        upper.insert("Keyfold-Timestamp", HeaderValue::from_static(DOC_TIMESTAMP));
        upper.insert("KEYFOLD-NONCE", HeaderValue::from_static(DOC_NONCE));
        upper.insert("keyfold-Signature", HeaderValue::from_static(DOC_SIGNATURE));
        assert_eq!(parts(&upper), Ok(Some(doc_parts())));
    }

    #[test]
    fn partial_headers_are_refused() {
        let err = parts(&headers(&[(SIGNATURE_HEADER, DOC_SIGNATURE)])).expect_err("partial");
        assert_eq!(
            err,
            SignedRequestError::Incomplete {
                missing: "keyfold-timestamp, keyfold-nonce".to_owned()
            }
        );
        assert_eq!(err.code().as_str(), "signature_malformed");
        assert!(err
            .to_string()
            .contains("missing the keyfold-timestamp, keyfold-nonce header"));

        let err = parts(&headers(&[
            (TIMESTAMP_HEADER, DOC_TIMESTAMP),
            (NONCE_HEADER, DOC_NONCE),
        ]))
        .expect_err("partial");
        assert_eq!(
            err,
            SignedRequestError::Incomplete {
                missing: "keyfold-signature".to_owned()
            }
        );
    }

    #[test]
    fn duplicate_headers_are_refused() {
        for dup in [TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER] {
            let mut map = headers(&[
                (TIMESTAMP_HEADER, DOC_TIMESTAMP),
                (NONCE_HEADER, DOC_NONCE),
                (SIGNATURE_HEADER, DOC_SIGNATURE),
            ]);
            map.append(dup, HeaderValue::from_static("x"));
            let err = parts(&map).expect_err("duplicate");
            assert_eq!(err, SignedRequestError::Duplicate { header: dup });
            assert_eq!(err.code().as_str(), "signature_malformed");
        }
        // Even the same value twice, and even alone.
        let map = headers(&[(NONCE_HEADER, DOC_NONCE), (NONCE_HEADER, DOC_NONCE)]);
        assert_eq!(
            parts(&map),
            Err(SignedRequestError::Duplicate {
                header: NONCE_HEADER
            })
        );
    }

    #[test]
    fn non_visible_ascii_is_refused() {
        let space = HeaderValue::from_static("v1=Cal1gDv64u0B81KGui4hJgRY6psJbOkgeLN+IZraisM= ");
        let tab = HeaderValue::from_static("9f2b7c1e\t4a6d8053");
        let high =
            HeaderValue::from_bytes(b"9f2b7c1e4a6d8053\xc3\xa9").expect("obs-text is allowed");
        for (name, value) in [
            (SIGNATURE_HEADER, space),
            (NONCE_HEADER, tab),
            (NONCE_HEADER, high),
        ] {
            let mut map = headers(&[
                (TIMESTAMP_HEADER, DOC_TIMESTAMP),
                (NONCE_HEADER, DOC_NONCE),
                (SIGNATURE_HEADER, DOC_SIGNATURE),
            ]);
            map.insert(name, value);
            let err = parts(&map).expect_err("not visible ASCII");
            assert_eq!(err, SignedRequestError::NotVisibleAscii { header: name });
            assert_eq!(err.code().as_str(), "signature_malformed");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", hmac_key());
        assert!(!shown.contains(DOC_SECRET), "{shown}");
        assert!(!shown.contains("3f1c9a0b"), "{shown}");
        let public = ed_signing_key().verifying_key();
        let shown = format!("{:?}", RequestKey::Ed25519(public));
        assert!(shown.contains(&hex::encode(public.as_bytes())), "{shown}");
    }

    #[test]
    fn codes_cover_every_variant() {
        let cases = [
            (
                SignedRequestError::Incomplete {
                    missing: String::new(),
                },
                "signature_malformed",
            ),
            (
                SignedRequestError::Duplicate {
                    header: NONCE_HEADER,
                },
                "signature_malformed",
            ),
            (
                SignedRequestError::NotVisibleAscii {
                    header: NONCE_HEADER,
                },
                "signature_malformed",
            ),
            (SignedRequestError::BadTimestamp, "signature_malformed"),
            (SignedRequestError::BadNonce, "signature_malformed"),
            (
                SignedRequestError::Malformed { reason: "x" },
                "signature_malformed",
            ),
            (
                SignedRequestError::Stale {
                    timestamp: 0,
                    now: 0,
                },
                "request_stale",
            ),
            (
                SignedRequestError::WrongScheme {
                    expected: Scheme::Hmac,
                    got: Scheme::Ed25519,
                },
                "signature_invalid",
            ),
            (SignedRequestError::BadSignature, "signature_invalid"),
        ];
        for (err, code) in cases {
            assert_eq!(err.code().as_str(), code, "{err:?}");
            // Messages never echo signature material.
            assert!(!err.to_string().contains(DOC_SIGNATURE));
        }
    }
}
