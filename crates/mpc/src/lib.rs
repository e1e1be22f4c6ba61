//! Keyfold's threshold-signing protocol engine.
//!
//! This crate holds the protocol logic only: it never opens a socket or a file.
//! Every protocol is an `async fn` over a [`round_based::Mpc`] party, so the same
//! code runs in one process ([`local`], used by tests, benches and the demo) and
//! over the network (the `keyfold-net` transport).
//!
//! * [`ecdsa`]: threshold ECDSA on secp256k1 with `cggmp21`: aux info, t-of-n key
//!   generation, presignatures, the one-round online step, full signing and
//!   non-hardened HD derivation.
//! * [`eddsa`]: threshold Ed25519 with `givre` (FROST): key generation and signing.
//! * [`primes`]: the safe-prime pool that keeps aux-info generation off the hot path.
//! * [`session`]: session descriptors; every execution id is derived from one and is
//!   bound to the protocol, key id, request id and signer set.
//! * [`delivery`]: the envelope that carries the session descriptor with every
//!   message and refuses messages from another session.
//! * [`blame`]: typed culprits ([`Culprit`], [`BlameKind`]): which party of a
//!   session a failure is attributed to, carried by [`MpcError::culprits`].
//!
//! Safety rules are enforced by types rather than by callers' discipline: an
//! [`ecdsa::Presignature`] is consumed by value, can only sign a whole message
//! (the digest is computed here, never supplied by the caller) and has no HD
//! derivation method; secret material is zeroized on drop and its `Debug` prints
//! `<redacted>`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blame;
pub mod codec;
pub mod delivery;
pub mod ecdsa;
pub mod eddsa;
mod error;
pub mod local;
pub mod params;
pub mod primes;
pub mod session;
#[cfg(feature = "test-fixtures")]
pub mod test_fixtures;

pub use blame::{BlameKind, Culprit};
pub use error::{MpcError, SessionField};
pub use params::{KeyId, RequestId, SignerSet, Threshold, MAX_PARTIES};
pub use session::{ProtocolKind, SessionDescriptor, SessionId};
