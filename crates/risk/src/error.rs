//! Error types of the risk crate. Each names the field, rule or list at
//! fault, so an operator can fix a refused tree or a caller a refused input
//! without reading the code.

use thiserror::Error;

/// A risk request (or a refusal record) was refused before any state was
/// read or changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InputError {
    /// A string field is longer than its bound.
    #[error("{field} is {len} bytes, the limit is {max}")]
    TooLong {
        /// The field (`payment.destination`, `context.device_id`, ...).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A required string field is empty.
    #[error("{field} is empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A country code is not two uppercase ASCII letters (ISO 3166-1 alpha-2).
    #[error("{value:?} is not an ISO 3166-1 alpha-2 country code (two uppercase letters)")]
    BadCountry {
        /// The value as given.
        value: String,
    },
    /// More authentication methods than there are kinds.
    #[error("context.auth lists {count} methods, the limit is {max}")]
    TooManyAuthMethods {
        /// Number listed.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The request time is past [`crate::MAX_TIME`].
    #[error("time {at} is past the last supported time {max}")]
    TimeOutOfRange {
        /// The time given.
        at: u64,
        /// The limit.
        max: u64,
    },
    /// A refusal record names a code that is not a refused device
    /// signature (not one of [`crate::DEVICE_REFUSAL_CODES`]).
    #[error("refusal code {code:?} is not a device-signature refusal (one of {})", crate::DEVICE_REFUSAL_CODES.join(", "))]
    UnknownRefusalCode {
        /// The code as given (cut to 64 characters).
        code: String,
    },
    /// A refusal record names neither a customer nor a device, so there is
    /// nothing to count it against.
    #[error("a refusal must name the customer, the device or both")]
    RefusalWithoutSubject,
}

/// A decision tree was refused while parsing or validating it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TreeError {
    /// The document is larger than [`crate::MAX_TREE_BYTES`].
    #[error("risk tree is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Size of the refused document.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The TOML does not parse, has an unknown field or a value of the wrong type.
    #[error("risk tree does not parse: {0}")]
    Parse(String),
    /// `version` is 0.
    #[error("risk tree version must be at least 1")]
    BadVersion,
    /// Too many rules, thresholds or list entries.
    #[error("{what}: {count} entries, the limit is {max}")]
    TooMany {
        /// What is too long (`rules`, `lists.countries`, ...).
        what: &'static str,
        /// Entries given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Two rules share a name.
    #[error("duplicate rule name {0:?}")]
    DuplicateRuleName(String),
    /// A rule name is empty or too long.
    #[error("rule name {0:?} must be 1 to 64 bytes")]
    BadRuleName(String),
    /// A rule has no condition (it would fire on every request).
    #[error("rule {rule:?}: `when` has no condition; name at least one")]
    EmptyCondition {
        /// Rule name.
        rule: String,
    },
    /// A window is not one of `1m 10m 1h 24h 7d`.
    #[error("rule {rule:?}: {field} = {value:?} is not one of 1m, 10m, 1h, 24h, 7d")]
    BadWindow {
        /// Rule name.
        rule: String,
        /// The field (`when.count.window`, `when.sum.window`).
        field: &'static str,
        /// The value as written.
        value: String,
    },
    /// A rule's field has a value that cannot work.
    #[error("rule {rule:?}: {field}: {why}")]
    BadField {
        /// Rule name.
        rule: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The thresholds do not cover every score 0..=100 exactly once.
    #[error("thresholds: {0}")]
    Thresholds(String),
    /// A country in `lists.countries` is not an ISO 3166-1 alpha-2 code.
    #[error("lists.countries: {value:?} is not two uppercase letters (ISO 3166-1 alpha-2)")]
    BadCountry {
        /// The value as written.
        value: String,
    },
    /// An entry of `lists.ip_ranges` is not a CIDR range.
    #[error("lists.ip_ranges: {value:?} is not a CIDR range: {reason}")]
    BadCidr {
        /// The value as written.
        value: String,
        /// The parser's reason.
        reason: String,
    },
    /// An entry of `lists.destinations` is empty, too long or duplicated.
    #[error("lists.destinations: {value:?}: {why}")]
    BadDestination {
        /// The value as written.
        value: String,
        /// What is wrong.
        why: String,
    },
}

/// A signed risk tree was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GovernanceError {
    /// The new tree itself is invalid.
    #[error("new risk tree is invalid: {0}")]
    Invalid(#[from] TreeError),
    /// The admin set is empty, or its quorum is 0 or above its size.
    #[error("admin quorum {quorum} with {keys} admin key(s)")]
    BadAdminSet {
        /// Configured quorum.
        quorum: usize,
        /// Number of distinct valid admin keys.
        keys: usize,
    },
    /// An admin key is not a valid Ed25519 public key.
    #[error("invalid admin public key {0:?}")]
    BadAdminKey(String),
    /// The policy in force names no admins, so nobody can sign a tree.
    #[error("the policy in force has no admins section; no risk tree can be signed")]
    NoAdmins,
    /// Fewer valid distinct admin signatures than the quorum.
    #[error("only {valid} valid admin signature(s) over this risk tree, {quorum} needed")]
    QuorumNotMet {
        /// Valid distinct admin signatures.
        valid: usize,
        /// Required quorum.
        quorum: usize,
    },
    /// More signatures than any admin set needs: refused before any is
    /// checked, so a large body cannot buy many signature verifications.
    #[error("{count} signatures on a risk tree; at most {max} are read")]
    TooManySignatures {
        /// Signatures given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The new version is not greater than the one in force.
    #[error("new risk tree version {new} is not greater than current version {current}")]
    VersionNotIncreasing {
        /// Version in force.
        current: u64,
        /// Version of the proposed tree.
        new: u64,
    },
}
