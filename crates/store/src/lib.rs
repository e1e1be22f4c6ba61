//! Persistence for Keyfold: embedded SQLite stores for signer nodes and the
//! coordinator, with every secret sealed at rest.
//!
//! * [`seal`]: the [`Sealer`] trait (implemented in software here and by the
//!   HSM bridge later), the authenticated data [`Aad`] that binds a sealed blob
//!   to its node, object type, id and version, and [`SoftwareSealer`]
//!   (XChaCha20-Poly1305 under a key file or an argon2id passphrase).
//! * [`signer`]: [`SignerStore`], a signer node's database: key shares, aux
//!   info, the presignature pool (take-once, durable before use), safe primes
//!   and session replay protection.
//! * [`coordinator`]: [`CoordinatorStore`]: keys, signer groups, the
//!   coordinator's presignature index and API tokens (only their SHA-256 is
//!   stored); [`coordinator_requests`]: signing requests with their typed
//!   lifecycle, history and approvals, written in groups with the audit log.
//!
//! This crate stores opaque byte blobs: it never parses key shares or
//! presignatures, so it does not depend on the protocol engine.
//!
//! All database calls are blocking (SQLite). From async code, call them through
//! `tokio::task::spawn_blocking` or a dedicated thread.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod coordinator;
pub mod coordinator_escrows;
pub mod coordinator_ledger;
pub mod coordinator_merchants;
pub mod coordinator_orders;
pub mod coordinator_payouts;
pub mod coordinator_replacements;
pub mod coordinator_requests;
pub mod coordinator_risk;
pub mod coordinator_sandbox;
pub mod coordinator_schedules;
pub mod coordinator_settlements;
pub mod coordinator_shadow;
pub mod coordinator_tokens;
pub mod coordinator_webhooks;
mod db;
mod error;
pub mod seal;
pub mod signer;
mod signer_freezes;
mod signer_policy;
mod validate;

pub use coordinator::{CoordinatorStore, GroupRecord, KeyRecord, KeyRequest};
pub use coordinator_escrows::{EscrowOp, EscrowRow};
pub use coordinator_ledger::{
    BalanceRow, EntryRow, OrderBooking, PayoutBooking, StatementLine, TreasuryTransfer,
    TreasuryWallet, MAX_LEDGER_PAGE,
};
pub use coordinator_merchants::{
    check_merchant_id, IssuedKey, Merchant, MerchantKeyAuth, MerchantKeyMeta, NewMerchant,
    RequestSigning, SCOPES,
};
pub use coordinator_orders::{
    DepositRow, FoundDeposit, NewOrder, OrderRecorded, OrderRow, OrderUpdate, Scan,
};
pub use coordinator_payouts::{
    NewPayout, NonceNote, PayoutChainUpdate, PayoutRow, Recorded, MAX_PAYOUT_PAGE,
};
pub use coordinator_replacements::ReplacementRow;
pub use coordinator_requests::{
    GroupOutcome, NewRequest, Op, RequestFilter, RequestRow, RequestUpdate, TransitionRow,
};
pub use coordinator_risk::{
    FreezeRow, ReviewRow, RiskDecisionRow, RiskOp, RiskRefusalRow, RiskStepRow, MAX_RAW_IP_LEN,
    MAX_RISK_PAGE, MAX_SEALED_CUSTOMER_AUTH,
};
pub use coordinator_sandbox::{
    is_sandbox_merchant, sandbox_id_of, SANDBOX_KEY_PREFIX, SANDBOX_SUFFIX,
};
pub use coordinator_schedules::{OccurrenceRow, ScheduleOp, ScheduleRow};
pub use coordinator_settlements::{NewRun, SettlementRun};
pub use coordinator_shadow::{ShadowDecisionRow, ShadowOp, ShadowRow};
pub use coordinator_tokens::{TokenInfo, TokenMeta};
pub use coordinator_webhooks::{
    AttemptOutcome, DeliveryRow, DisablePolicy, DueDelivery, EndpointRow, NewEndpoint, NewEvent,
};
pub use error::{SealError, StoreError};
pub use seal::{Aad, KdfParams, ObjectType, Sealer, SoftwareSealer};
pub use signer::{ShareMeta, ShareRecord, SignerStore};
pub use signer_freezes::SignerFreeze;
pub use signer_policy::{Consume, FirstSeen};
pub use validate::{MAX_ID_LEN, MAX_SECRET_LEN, MAX_SIGNER_SET};
pub use zeroize::Zeroizing;

use std::fmt;

/// The curve of a key: decides the protocol (cggmp21 ECDSA or FROST Ed25519)
/// and, for shares, the sealed object type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Curve {
    /// secp256k1, threshold ECDSA (cggmp21).
    Secp256k1,
    /// Ed25519, threshold EdDSA (FROST).
    Ed25519,
}

impl Curve {
    /// The stable name stored in the databases: `secp256k1` or `ed25519`.
    pub fn as_str(self) -> &'static str {
        match self {
            Curve::Secp256k1 => "secp256k1",
            Curve::Ed25519 => "ed25519",
        }
    }

    /// Parses a stored name (see [`Curve::as_str`]).
    pub fn parse(s: &str) -> Option<Curve> {
        match s {
            "secp256k1" => Some(Curve::Secp256k1),
            "ed25519" => Some(Curve::Ed25519),
            _ => None,
        }
    }

    /// The sealed object type of a key share on this curve.
    pub fn share_object(self) -> ObjectType {
        match self {
            Curve::Secp256k1 => ObjectType::EcdsaShare,
            Curve::Ed25519 => ObjectType::EddsaShare,
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
