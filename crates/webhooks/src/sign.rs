//! Standard Webhooks 1.0 signatures: `v1` (HMAC-SHA256 with a `whsec_`
//! secret) and `v1a` (Ed25519 with a `whsk_` signing key, checked with its
//! `whpk_` public key).
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, the body
//! being the raw bytes sent. [`verify`] takes the current time as an argument,
//! accepts any matching signature of the space-separated
//! `webhook-signature` header (so a secret can be rotated without downtime:
//! see [`signature_header`]) and refuses timestamps more than
//! [`TOLERANCE_SECS`] away from `now`, which bounds replays.

use std::fmt;
use std::str::FromStr;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SECRET_KEY_LENGTH, SIGNATURE_LENGTH};
use hmac::digest::crypto_common::KeySizeUser;
use hmac::digest::typenum::Unsigned;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, OsRng, RngCore};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

type HmacSha256 = Hmac<Sha256>;

// `Secret::mac` zero-pads keys to HMAC's block size, which is only the HMAC
// of the key itself while no secret is longer than a block.
const _: () =
    assert!(MAX_SECRET_BYTES <= <<HmacSha256 as KeySizeUser>::KeySize as Unsigned>::USIZE);

/// Name of the header carrying the message id.
pub const HEADER_ID: &str = "webhook-id";
/// Name of the header carrying the attempt's unix timestamp in seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Name of the header carrying the space-separated signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Largest accepted distance, in seconds, between a message's timestamp and
/// the verifier's clock (either direction), as the spec's reference
/// libraries use.
pub const TOLERANCE_SECS: u64 = 300;

/// Prefix of a serialized symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Prefix of a serialized Ed25519 signing key (its 32-byte seed).
pub const SIGNING_KEY_PREFIX: &str = "whsk_";
/// Prefix of a serialized Ed25519 public key.
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
/// Prefix of the message ids made by [`new_message_id`].
pub const MESSAGE_ID_PREFIX: &str = "msg_";

/// Fewest bytes a symmetric secret may have (the spec's minimum, 192 bits).
pub const MIN_SECRET_BYTES: usize = 24;
/// Most bytes a symmetric secret may have (the spec's maximum, 512 bits).
pub const MAX_SECRET_BYTES: usize = 64;
/// Bytes in a secret made by [`Secret::generate`].
pub const GENERATED_SECRET_BYTES: usize = 32;

/// Longest `webhook-signature` header [`verify`] reads, so a hostile sender
/// cannot make the receiver decode megabytes.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 4096;
/// Most signatures [`verify`] reads from one header: each one may cost an
/// Ed25519 verification per public key.
pub const MAX_SIGNATURES: usize = 16;
/// Longest message id [`verify`] accepts.
pub const MAX_MESSAGE_ID_LEN: usize = 256;

/// Characters of the random part of a message id: 26 characters of 5 bits.
const MESSAGE_ID_RANDOM_CHARS: usize = 26;
/// Lowercase Crockford base32 (no `i`, `l`, `o`, `u`): URL-safe, no `.`,
/// and unambiguous when read aloud or retyped from a support ticket.
const CROCKFORD_LOWER: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Longest serialized key we decode: base64 of [`MAX_SECRET_BYTES`] with
/// padding. Checked before decoding so parsing work stays bounded.
const MAX_KEY_BASE64_LEN: usize = 88;

/// Standard-alphabet base64 that accepts the input with or without `=`
/// padding: the reference libraries pad missing `=` before decoding, so
/// unpadded secrets copied from elsewhere still parse.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A key or secret string that does not parse.
///
/// The messages never quote the input: it may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The string does not start with the expected prefix.
    #[error("a webhook {kind} starts with `{prefix}`; check that the right kind of key was pasted, whole")]
    Prefix {
        /// What was being parsed.
        kind: &'static str,
        /// The prefix it must start with.
        prefix: &'static str,
    },
    /// The part after the prefix is not standard base64.
    #[error("the webhook {kind} after its prefix is not standard base64 (A-Z a-z 0-9 + / and = padding); check it was copied whole")]
    Base64 {
        /// What was being parsed.
        kind: &'static str,
    },
    /// The decoded key has the wrong number of bytes.
    #[error("the webhook {kind} decodes to {got} bytes; it must be {expected}")]
    Length {
        /// What was being parsed.
        kind: &'static str,
        /// Bytes found (or, when the text is far too long, a lower bound).
        got: usize,
        /// The allowed size, in words.
        expected: &'static str,
    },
    /// The public key is not a usable Ed25519 point (not on the curve, or
    /// of small order, which would accept forged signatures).
    #[error("the webhook public key is not a valid Ed25519 public key; ask the sender for its `whpk_` key again")]
    InvalidPublicKey,
}

/// Why [`verify`] refused a webhook.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Neither a secret nor a public key was given, so nothing could match.
    #[error("no webhook secret or public key was given to verify with; configure the endpoint's `whsec_` secret or the sender's `whpk_` key")]
    NoKeys,
    /// A header or the message id is not of the Standard Webhooks form.
    #[error("malformed webhook headers: {reason}")]
    Malformed {
        /// What is wrong, in words.
        reason: &'static str,
    },
    /// The timestamp is more than [`TOLERANCE_SECS`] from `now`: a replay,
    /// or a clock that is off on one side.
    #[error("webhook timestamp {timestamp} is more than {TOLERANCE_SECS} s from now ({now}); refused as a possible replay (if every message is refused, check both clocks with NTP)")]
    Stale {
        /// The message's timestamp.
        timestamp: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// No signature in the header matches any given secret or public key.
    #[error("no webhook signature matches the configured secrets or public keys; check the endpoint's secret (after a rotation, configure the new one) and that the body is verified exactly as received, before any JSON parsing")]
    NoMatch,
}

/// A symmetric `v1` secret: 24 to 64 random bytes, shown as `whsec_` and
/// standard base64.
///
/// The bytes are zeroized on drop and `Debug` prints `Secret(<redacted>)`.
/// There is deliberately no `Display`: [`Secret::to_string`] must be asked
/// for by name.
#[derive(Clone)]
pub struct Secret {
    bytes: Zeroizing<Vec<u8>>,
}

impl Secret {
    /// A new secret of [`GENERATED_SECRET_BYTES`] bytes from the operating
    /// system's random source.
    pub fn generate() -> Self {
        Self::generate_with(&mut OsRng)
    }

    /// A new secret of [`GENERATED_SECRET_BYTES`] bytes from `rng` (tests
    /// pass a seeded one).
    pub fn generate_with<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new(vec![0u8; GENERATED_SECRET_BYTES]);
        rng.fill_bytes(&mut bytes);
        Self { bytes }
    }

    /// Parses `whsec_` followed by the standard base64 of 24 to 64 bytes
    /// (the `=` padding may be left out).
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        const KIND: &str = "secret";
        let bytes = decode_prefixed(s, SECRET_PREFIX, KIND)?;
        check_secret_len(bytes.len(), KIND)?;
        Ok(Self { bytes })
    }

    /// A secret from raw bytes (24 to 64 of them).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        check_secret_len(bytes.len(), "secret")?;
        Ok(Self {
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// The `whsec_...` form, to show once to the endpoint's owner. The
    /// string is zeroized when dropped.
    pub fn to_string(&self) -> Zeroizing<String> {
        encode_prefixed(SECRET_PREFIX, &self.bytes)
    }

    /// The raw secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A keyed HMAC-SHA256. HMAC pads a key shorter than the hash's 64-byte
    /// block with zeros, and secrets are at most 64 bytes, so padding here
    /// gives the same MAC through the infallible fixed-size constructor.
    fn mac(&self) -> HmacSha256 {
        let mut block = hmac::digest::Key::<HmacSha256>::default();
        for (dst, src) in block.iter_mut().zip(self.bytes.iter()) {
            *dst = *src;
        }
        let mac = <HmacSha256 as KeyInit>::new(&block);
        let bytes: &mut [u8] = &mut block;
        bytes.zeroize();
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl FromStr for Secret {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An Ed25519 `v1a` signing key, shown as `whsk_` and the standard base64 of
/// its 32-byte seed.
///
/// Zeroized on drop (ed25519-dalek's `zeroize` feature); `Debug` prints
/// `SigningKey(<redacted>)`.
#[derive(Clone)]
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Self {
        Self::generate_with(&mut OsRng)
    }

    /// A new key from `rng` (tests pass a seeded one).
    pub fn generate_with<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; SECRET_KEY_LENGTH]);
        rng.fill_bytes(&mut *seed);
        Self {
            inner: ed25519_dalek::SigningKey::from_bytes(&seed),
        }
    }

    /// Parses `whsk_` followed by the standard base64 of a 32-byte seed.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        const KIND: &str = "signing key";
        let bytes = decode_prefixed(s, SIGNING_KEY_PREFIX, KIND)?;
        let mut seed = Zeroizing::new([0u8; SECRET_KEY_LENGTH]);
        if bytes.len() != SECRET_KEY_LENGTH {
            return Err(KeyError::Length {
                kind: KIND,
                got: bytes.len(),
                expected: "exactly 32 (an Ed25519 seed)",
            });
        }
        seed.copy_from_slice(&bytes);
        Ok(Self {
            inner: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// The `whsk_...` form, to store sealed. Zeroized when dropped.
    pub fn to_string(&self) -> Zeroizing<String> {
        let seed = Zeroizing::new(self.inner.to_bytes());
        encode_prefixed(SIGNING_KEY_PREFIX, &*seed)
    }

    /// The `whpk_...` form of the public key, to publish to receivers.
    pub fn public_key(&self) -> String {
        self.verifying_key().to_string()
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey {
            inner: self.inner.verifying_key(),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl FromStr for SigningKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An Ed25519 public key for `v1a` signatures, shown as `whpk_` and the
/// standard base64 of its 32 bytes (`Display` and `Debug` print that form:
/// it is public).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey {
    inner: ed25519_dalek::VerifyingKey,
}

impl VerifyingKey {
    /// Parses `whpk_` followed by the standard base64 of 32 bytes; refuses
    /// points off the curve and small-order points.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        const KIND: &str = "public key";
        let bytes = decode_prefixed(s, PUBLIC_KEY_PREFIX, KIND)?;
        let array: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
            kind: KIND,
            got: bytes.len(),
            expected: "exactly 32 (an Ed25519 public key)",
        })?;
        let inner = ed25519_dalek::VerifyingKey::from_bytes(&array)
            .map_err(|_| KeyError::InvalidPublicKey)?;
        // A small-order key verifies signatures nobody made; refuse it here
        // rather than rely on every verification path to notice.
        if inner.is_weak() {
            return Err(KeyError::InvalidPublicKey);
        }
        Ok(Self { inner })
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.inner.as_bytes()
    }
}

impl fmt::Display for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PUBLIC_KEY_PREFIX)?;
        f.write_str(&STANDARD.encode(self.inner.as_bytes()))
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({self})")
    }
}

impl FromStr for VerifyingKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The `v1` signature `v1,<base64 HMAC-SHA256>` of
/// `{msg_id}.{timestamp}.{body}`.
///
/// `msg_id` must not contain `.` (else a signature for one id and timestamp
/// could be replayed as another split of the same bytes); the ids of
/// [`new_message_id`] never do, and [`verify`] refuses such ids.
pub fn sign_v1(secret: &Secret, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = secret.mac();
    // Fed piecewise: no copy of a possibly large body.
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `v1a` signature `v1a,<base64 Ed25519 signature>` of
/// `{msg_id}.{timestamp}.{body}`; the same rule on `msg_id` as [`sign_v1`].
pub fn sign_v1a(key: &SigningKey, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let content = signed_content(msg_id, timestamp, body);
    let signature = key.inner.sign(&content);
    format!("v1a,{}", STANDARD.encode(signature.to_bytes()))
}

/// The `webhook-signature` header value: the signatures separated by single
/// spaces. During a secret rotation the sender signs with both the old and
/// the new secret and sends both, so receivers configured with either keep
/// verifying.
pub fn signature_header(signatures: &[String]) -> String {
    signatures.join(" ")
}

/// Verifies a webhook: `header_value` is the `webhook-signature` header,
/// `msg_id` the `webhook-id` header, `timestamp` the parsed
/// `webhook-timestamp` (see [`parse_timestamp`]), `body` the raw body as
/// received, `now` the verifier's unix time in seconds.
///
/// Accepts when any `v1` signature matches any of `secrets` or any `v1a`
/// signature matches any of `public_keys`. Signatures of unknown versions
/// are skipped, as the spec asks for forward compatibility. The checks run
/// in this order: keys given, header form, timestamp within
/// [`TOLERANCE_SECS`] of `now`, then signatures; a malformed entry only
/// causes [`VerifyError::Malformed`] when no other entry matched.
/// HMACs are compared in constant time.
pub fn verify(
    header_value: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    now: i64,
    secrets: &[Secret],
    public_keys: &[VerifyingKey],
) -> Result<(), VerifyError> {
    if secrets.is_empty() && public_keys.is_empty() {
        return Err(VerifyError::NoKeys);
    }
    check_message_id(msg_id)?;
    if header_value.len() > MAX_SIGNATURE_HEADER_LEN {
        return Err(VerifyError::Malformed {
            reason: "the webhook-signature header is longer than 4096 bytes",
        });
    }
    let entries: Vec<&str> = header_value.split_ascii_whitespace().collect();
    if entries.is_empty() {
        return Err(VerifyError::Malformed {
            reason: "the webhook-signature header is empty",
        });
    }
    if entries.len() > MAX_SIGNATURES {
        return Err(VerifyError::Malformed {
            reason: "the webhook-signature header has more than 16 signatures",
        });
    }
    if now.abs_diff(timestamp) > TOLERANCE_SECS {
        return Err(VerifyError::Stale { timestamp, now });
    }

    let mut malformed: Option<&'static str> = None;
    // Built only when a v1a signature is present.
    let mut content: Option<Vec<u8>> = None;
    for entry in entries {
        let Some((version, encoded)) = entry.split_once(',') else {
            malformed.get_or_insert("a signature is not of the form `<version>,<base64>`");
            continue;
        };
        match version {
            "v1" => {
                let Some(sig) = decode_signature(encoded, 32) else {
                    malformed.get_or_insert("a v1 signature is not the base64 of 32 bytes");
                    continue;
                };
                for secret in secrets {
                    let mut mac = secret.mac();
                    mac.update(msg_id.as_bytes());
                    mac.update(b".");
                    mac.update(timestamp.to_string().as_bytes());
                    mac.update(b".");
                    mac.update(body);
                    // `verify_slice` compares in constant time.
                    if mac.verify_slice(&sig).is_ok() {
                        return Ok(());
                    }
                }
            }
            "v1a" => {
                let Some(sig) = decode_signature(encoded, SIGNATURE_LENGTH) else {
                    malformed.get_or_insert("a v1a signature is not the base64 of 64 bytes");
                    continue;
                };
                let Ok(array) = <[u8; SIGNATURE_LENGTH]>::try_from(sig.as_slice()) else {
                    continue;
                };
                let signature = ed25519_dalek::Signature::from_bytes(&array);
                let content =
                    content.get_or_insert_with(|| signed_content(msg_id, timestamp, body));
                for key in public_keys {
                    // Strict: refuses non-canonical signatures and
                    // small-order components, so a signature has one form.
                    if key.inner.verify_strict(content, &signature).is_ok() {
                        return Ok(());
                    }
                }
            }
            // Unknown versions are skipped: a sender may add newer schemes
            // alongside the ones this receiver knows.
            _ => {}
        }
    }
    match malformed {
        Some(reason) => Err(VerifyError::Malformed { reason }),
        None => Err(VerifyError::NoMatch),
    }
}

/// Parses a `webhook-timestamp` header: unix seconds, decimal digits only
/// (no sign, no fraction), at most 18 digits.
pub fn parse_timestamp(header_value: &str) -> Result<i64, VerifyError> {
    const REASON: &str = "the webhook-timestamp header is not unix seconds (decimal digits only)";
    let value = header_value.trim();
    // 18 digits always fit an i64, so the parse below cannot overflow.
    if value.is_empty() || value.len() > 18 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::Malformed { reason: REASON });
    }
    value
        .parse()
        .map_err(|_| VerifyError::Malformed { reason: REASON })
}

/// A new message id: `msg_` and 26 characters of lowercase Crockford base32
/// (`0-9` and `a-z` without `i l o u`), 130 random bits from the operating
/// system. URL-safe, never contains `.`, 30 characters in all.
pub fn new_message_id() -> String {
    new_message_id_with(&mut OsRng)
}

/// As [`new_message_id`], with randomness from `rng`.
pub fn new_message_id_with<R: RngCore + CryptoRng>(rng: &mut R) -> String {
    let mut random = [0u8; MESSAGE_ID_RANDOM_CHARS];
    rng.fill_bytes(&mut random);
    let mut id = String::with_capacity(MESSAGE_ID_PREFIX.len() + MESSAGE_ID_RANDOM_CHARS);
    id.push_str(MESSAGE_ID_PREFIX);
    // 32 divides 256, so the low 5 bits of a uniform byte are uniform.
    id.extend(
        random
            .iter()
            .map(|b| char::from(CROCKFORD_LOWER[usize::from(b & 31)])),
    );
    id
}

/// `{msg_id}.{timestamp}.{body}` as one buffer (Ed25519 signs a whole
/// message; HMAC is fed piecewise instead).
fn signed_content(msg_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let timestamp = timestamp.to_string();
    let mut content = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Refuses ids that are empty, too long, or contain `.`, whitespace or
/// non-ASCII: a `.` would let one signed content be split into another id
/// and timestamp.
fn check_message_id(msg_id: &str) -> Result<(), VerifyError> {
    if msg_id.is_empty() || msg_id.len() > MAX_MESSAGE_ID_LEN {
        return Err(VerifyError::Malformed {
            reason: "the webhook-id header is empty or longer than 256 bytes",
        });
    }
    if !msg_id.bytes().all(|b| b.is_ascii_graphic() && b != b'.') {
        return Err(VerifyError::Malformed {
            reason: "the webhook-id header contains `.`, whitespace or non-ASCII characters",
        });
    }
    Ok(())
}

/// Decodes a signature of exactly `len` bytes; `None` if it is not one.
fn decode_signature(encoded: &str, len: usize) -> Option<Vec<u8>> {
    // Bound the work before decoding: base64 of 64 bytes is 88 characters.
    if encoded.len() > MAX_KEY_BASE64_LEN {
        return None;
    }
    let bytes = BASE64_LENIENT.decode(encoded).ok()?;
    (bytes.len() == len).then_some(bytes)
}

fn check_secret_len(len: usize, kind: &'static str) -> Result<(), KeyError> {
    if (MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&len) {
        Ok(())
    } else {
        Err(KeyError::Length {
            kind,
            got: len,
            expected: "24 to 64",
        })
    }
}

/// Strips `prefix` and decodes the base64 rest into a zeroizing buffer.
fn decode_prefixed(
    s: &str,
    prefix: &'static str,
    kind: &'static str,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let encoded = s
        .strip_prefix(prefix)
        .ok_or(KeyError::Prefix { kind, prefix })?;
    if encoded.len() > MAX_KEY_BASE64_LEN {
        return Err(KeyError::Length {
            kind,
            // At least this many bytes; the exact count does not matter.
            got: encoded.len() / 4 * 3,
            expected: if prefix == SECRET_PREFIX {
                "24 to 64"
            } else {
                "exactly 32"
            },
        });
    }
    // `decode` allocates its output once at the final capacity, so no
    // unzeroized copy of the key is left behind by a reallocation.
    BASE64_LENIENT
        .decode(encoded)
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Base64 { kind })
}

/// `prefix` and the standard base64 of `bytes`, allocated once at its final
/// size so no unzeroized copy is left by a reallocation.
fn encode_prefixed(prefix: &str, bytes: &[u8]) -> Zeroizing<String> {
    let capacity = prefix.len() + base64::encoded_len(bytes.len(), true).unwrap_or(0);
    let mut out = Zeroizing::new(String::with_capacity(capacity));
    out.push_str(prefix);
    STANDARD.encode_string(bytes, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    /// A deterministic, not at all random, source for tests.
    struct CountingRng(u8);
    impl RngCore for CountingRng {
        fn next_u32(&mut self) -> u32 {
            rand_core::impls::next_u32_via_fill(self)
        }
        fn next_u64(&mut self) -> u64 {
            rand_core::impls::next_u64_via_fill(self)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.0;
                self.0 = self.0.wrapping_add(1);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl CryptoRng for CountingRng {}

    fn spec_secret() -> Secret {
        Secret::parse(SPEC_SECRET).unwrap()
    }

    #[test]
    fn spec_vector_signs() {
        assert_eq!(
            sign_v1(&spec_secret(), MSG_ID, TS, BODY),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn padded_hmac_key_equals_the_variable_length_key() {
        for len in [24, 33, 63, 64] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8 ^ 0x5a).collect();
            let secret = Secret::from_bytes(&bytes).unwrap();
            let mut ours = secret.mac();
            let mut reference = <HmacSha256 as Mac>::new_from_slice(&bytes).unwrap();
            ours.update(b"content");
            reference.update(b"content");
            assert_eq!(
                ours.finalize().into_bytes(),
                reference.finalize().into_bytes()
            );
        }
    }

    #[test]
    fn secret_round_trips_and_generates() {
        let s = spec_secret();
        assert_eq!(s.as_bytes().len(), 24);
        assert_eq!(&*s.to_string(), SPEC_SECRET);
        let g = Secret::generate();
        assert_eq!(g.as_bytes().len(), GENERATED_SECRET_BYTES);
        let again = Secret::parse(&g.to_string()).unwrap();
        assert_eq!(again.as_bytes(), g.as_bytes());
        assert_ne!(Secret::generate().as_bytes(), g.as_bytes());
        // Unpadded base64 is accepted, as the reference libraries do.
        let padded = Secret::from_bytes(&[7u8; 25]).unwrap().to_string();
        assert!(padded.ends_with('='));
        let unpadded = padded.trim_end_matches('=');
        assert_eq!(Secret::parse(unpadded).unwrap().as_bytes(), &[7u8; 25]);
        assert_eq!(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
                .parse::<Secret>()
                .unwrap()
                .as_bytes(),
            s.as_bytes()
        );
    }

    #[test]
    fn secret_parse_errors() {
        assert!(matches!(
            Secret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(KeyError::Prefix { .. })
        ));
        assert!(matches!(
            Secret::parse("whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(KeyError::Prefix { .. })
        ));
        assert!(matches!(
            Secret::parse("whsec_not base64!"),
            Err(KeyError::Base64 { .. })
        ));
        assert!(matches!(
            Secret::parse("whsec_"),
            Err(KeyError::Length { got: 0, .. })
        ));
        // 23 bytes: one short of the minimum.
        let short = format!("whsec_{}", STANDARD.encode([1u8; 23]));
        assert!(matches!(
            Secret::parse(&short),
            Err(KeyError::Length { got: 23, .. })
        ));
        let long = format!("whsec_{}", STANDARD.encode([1u8; 65]));
        assert!(matches!(Secret::parse(&long), Err(KeyError::Length { .. })));
        let max = format!("whsec_{}", STANDARD.encode([1u8; 64]));
        assert_eq!(Secret::parse(&max).unwrap().as_bytes().len(), 64);
        let huge = format!("whsec_{}", "A".repeat(10_000));
        assert!(matches!(Secret::parse(&huge), Err(KeyError::Length { .. })));
        assert!(Secret::from_bytes(&[0u8; 23]).is_err());
    }

    #[test]
    fn errors_never_quote_the_secret() {
        let bad = "whsec_MfKQ9r8GKYqrTwjUPD8I!PZIo2LaLaSw";
        let err = Secret::parse(bad).unwrap_err().to_string();
        assert!(!err.contains("MfKQ9r8"), "{err}");
        assert!(!format!("{:?}", Secret::parse(bad)).contains("MfKQ9r8"));
    }

    #[test]
    fn debug_is_redacted() {
        let s = spec_secret();
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        let k = SigningKey::generate();
        assert_eq!(format!("{k:?}"), "SigningKey(<redacted>)");
        let seed = k.to_string();
        assert!(!format!("{k:?}").contains(&seed[5..]));
        let pk = k.verifying_key();
        assert_eq!(format!("{pk:?}"), format!("VerifyingKey({pk})"));
    }

    #[test]
    fn signing_key_round_trips() {
        let k = SigningKey::generate_with(&mut CountingRng(0));
        let s = k.to_string();
        assert!(s.starts_with("whsk_"));
        let k2 = SigningKey::parse(&s).unwrap();
        assert_eq!(k2.public_key(), k.public_key());
        assert!(k.public_key().starts_with("whpk_"));
        let pk = VerifyingKey::parse(&k.public_key()).unwrap();
        assert_eq!(pk, k.verifying_key());
        assert_eq!(pk.to_string().parse::<VerifyingKey>().unwrap(), pk);
        assert_ne!(
            SigningKey::generate().public_key(),
            SigningKey::generate().public_key()
        );
    }

    #[test]
    fn key_parse_errors() {
        assert!(matches!(
            SigningKey::parse("whpk_AAAA"),
            Err(KeyError::Prefix { .. })
        ));
        let short = format!("whsk_{}", STANDARD.encode([1u8; 31]));
        assert!(matches!(
            SigningKey::parse(&short),
            Err(KeyError::Length { got: 31, .. })
        ));
        let long = format!("whsk_{}", STANDARD.encode([1u8; 64]));
        assert!(matches!(
            SigningKey::parse(&long),
            Err(KeyError::Length { got: 64, .. })
        ));
        assert!(matches!(
            VerifyingKey::parse("whsk_AAAA"),
            Err(KeyError::Prefix { .. })
        ));
        let short = format!("whpk_{}", STANDARD.encode([1u8; 33]));
        assert!(matches!(
            VerifyingKey::parse(&short),
            Err(KeyError::Length { got: 33, .. })
        ));
        // The identity point (small order) and a y with no curve point.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let id = format!("whpk_{}", STANDARD.encode(identity));
        assert_eq!(VerifyingKey::parse(&id), Err(KeyError::InvalidPublicKey));
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        let off = format!("whpk_{}", STANDARD.encode(off_curve));
        assert_eq!(VerifyingKey::parse(&off), Err(KeyError::InvalidPublicKey));
    }

    #[test]
    fn verify_accepts_v1_within_tolerance() {
        let sig = sign_v1(&spec_secret(), MSG_ID, TS, BODY);
        let secrets = [spec_secret()];
        for now in [TS, TS - 300, TS + 300] {
            assert_eq!(verify(&sig, MSG_ID, TS, BODY, now, &secrets, &[]), Ok(()));
        }
        for now in [TS - 301, TS + 301, i64::MIN, i64::MAX] {
            assert_eq!(
                verify(&sig, MSG_ID, TS, BODY, now, &secrets, &[]),
                Err(VerifyError::Stale { timestamp: TS, now })
            );
        }
    }

    #[test]
    fn verify_rejects_tampering() {
        let secrets = [spec_secret()];
        let sig = sign_v1(&secrets[0], MSG_ID, TS, BODY);
        let no = Err(VerifyError::NoMatch);
        assert_eq!(
            verify(
                &sig,
                MSG_ID,
                TS,
                br#"{"test": 2432232315}"#,
                TS,
                &secrets,
                &[]
            ),
            no
        );
        assert_eq!(verify(&sig, "msg_other", TS, BODY, TS, &secrets, &[]), no);
        assert_eq!(verify(&sig, MSG_ID, TS + 1, BODY, TS, &secrets, &[]), no);
        let other = [Secret::generate()];
        assert_eq!(verify(&sig, MSG_ID, TS, BODY, TS, &other, &[]), no);
        // A v1 signature does not satisfy an Ed25519 key, and vice versa.
        let key = SigningKey::generate();
        assert_eq!(
            verify(&sig, MSG_ID, TS, BODY, TS, &[], &[key.verifying_key()]),
            no
        );
        let sig_a = sign_v1a(&key, MSG_ID, TS, BODY);
        assert_eq!(verify(&sig_a, MSG_ID, TS, BODY, TS, &secrets, &[]), no);
    }

    #[test]
    fn verify_accepts_any_of_several_signatures_and_secrets() {
        let old = Secret::generate();
        let new = Secret::generate();
        let key = SigningKey::generate();
        let header = signature_header(&[
            sign_v1(&old, MSG_ID, TS, BODY),
            sign_v1(&new, MSG_ID, TS, BODY),
            sign_v1a(&key, MSG_ID, TS, BODY),
        ]);
        assert_eq!(header.split(' ').count(), 3);
        // Receivers that know only the old, only the new, or only the
        // public key all accept during the rotation.
        for secrets in [
            vec![old.clone()],
            vec![new.clone()],
            vec![Secret::generate(), new],
        ] {
            assert_eq!(verify(&header, MSG_ID, TS, BODY, TS, &secrets, &[]), Ok(()));
        }
        assert_eq!(
            verify(&header, MSG_ID, TS, BODY, TS, &[], &[key.verifying_key()]),
            Ok(())
        );
        // Unknown versions and extra spaces are skipped.
        let future = format!("  v9,AAAA   {}  ", sign_v1(&old, MSG_ID, TS, BODY));
        assert_eq!(verify(&future, MSG_ID, TS, BODY, TS, &[old], &[]), Ok(()));
    }

    #[test]
    fn verify_v1a() {
        let key = SigningKey::generate();
        let sig = sign_v1a(&key, MSG_ID, TS, BODY);
        assert!(sig.starts_with("v1a,"));
        let pks = [SigningKey::generate().verifying_key(), key.verifying_key()];
        assert_eq!(verify(&sig, MSG_ID, TS, BODY, TS, &[], &pks), Ok(()));
        assert_eq!(
            verify(&sig, MSG_ID, TS, b"x", TS, &[], &pks),
            Err(VerifyError::NoMatch)
        );
    }

    #[test]
    fn verify_malformed() {
        let secrets = [spec_secret()];
        let good = sign_v1(&secrets[0], MSG_ID, TS, BODY);
        let mal = |h: &str, id: &str| verify(h, id, TS, BODY, TS, &secrets, &[]);
        assert!(matches!(
            mal("", MSG_ID),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            mal("   ", MSG_ID),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            mal("v1", MSG_ID),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            mal("v1,!!!", MSG_ID),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            mal("v1,AAAA", MSG_ID),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            mal("v1a,AAAA", MSG_ID),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            mal(&format!("v1,{}", "A".repeat(5000)), MSG_ID),
            Err(VerifyError::Malformed { .. })
        ));
        let many = vec!["v9,x"; MAX_SIGNATURES + 1].join(" ");
        assert!(matches!(
            mal(&many, MSG_ID),
            Err(VerifyError::Malformed { .. })
        ));
        // A malformed neighbour does not hide a matching signature.
        assert_eq!(mal(&format!("garbage {good}"), MSG_ID), Ok(()));
        // Message ids that could shift the id/timestamp split are refused.
        for id in ["", "msg.1", "msg 1", "msg_é", &"a".repeat(257)] {
            assert!(
                matches!(mal(&good, id), Err(VerifyError::Malformed { .. })),
                "{id:?}"
            );
        }
        assert_eq!(
            verify(&good, MSG_ID, TS, BODY, TS, &[], &[]),
            Err(VerifyError::NoKeys)
        );
    }

    #[test]
    fn timestamp_header() {
        assert_eq!(parse_timestamp("1614265330"), Ok(TS));
        assert_eq!(parse_timestamp(" 1614265330 "), Ok(TS));
        assert_eq!(parse_timestamp("0"), Ok(0));
        assert_eq!(
            parse_timestamp("999999999999999999"),
            Ok(999_999_999_999_999_999)
        );
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            "1e9",
            "9999999999999999999",
            "0x10",
            "1 2",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn message_ids() {
        let id = new_message_id();
        assert_eq!(id.len(), 30);
        assert!(id.starts_with("msg_"));
        assert!(id[4..].bytes().all(|b| CROCKFORD_LOWER.contains(&b)));
        assert!(check_message_id(&id).is_ok());
        assert_ne!(new_message_id(), id);
        let fixed = new_message_id_with(&mut CountingRng(0));
        assert_eq!(fixed, "msg_0123456789abcdefghjkmnpqrs");
    }
}
