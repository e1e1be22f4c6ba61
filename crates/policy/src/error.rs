//! Error types of the policy crate.

use thiserror::Error;

/// A policy document was refused while parsing or validating it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The document is larger than [`crate::MAX_DOCUMENT_BYTES`].
    #[error("policy document is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// Size of the refused document.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The TOML could not be parsed, or contains an unknown field.
    #[error("policy document does not parse: {0}")]
    Parse(String),
    /// The document has no rules at all.
    #[error("policy has no rules; a final catch-all deny rule is mandatory")]
    NoRules,
    /// The last rule is not a catch-all rule (no matchers) whose action is deny.
    #[error(
        "the last rule {rule:?} is not a catch-all deny (a rule with no matchers and action deny)"
    )]
    NoCatchAllDeny {
        /// Name of the last rule.
        rule: String,
    },
    /// A rule can never match (empty list, empty range, unreachable, ...).
    #[error("rule {rule:?} can never match: {why}")]
    RuleNeverMatches {
        /// Name of the rule.
        rule: String,
        /// Why it can never match.
        why: String,
    },
    /// Two rules share a name.
    #[error("duplicate rule name {0:?}")]
    DuplicateRuleName(String),
    /// An address in the document is not in its one canonical spelling
    /// (requests are compared in that spelling, so another one would never
    /// match: see `canonical_destination`).
    #[error("{place}: address {address:?} {reason}")]
    NonCanonicalAddress {
        /// Where it is (`address book entry "x"`, `rule "r" destination.deny`).
        place: String,
        /// The address as written.
        address: String,
        /// What is wrong, or the spelling to use.
        reason: String,
    },
    /// Two approver groups share a name.
    #[error("duplicate approver group name {0:?}")]
    DuplicateGroupName(String),
    /// The `[rollout]` section, or its use, is invalid.
    #[error("rollout: {0}")]
    BadRollout(String),
    /// An approver group's quorum is zero or larger than its member count.
    #[error("approver group {group:?} has quorum {quorum} but {members} member(s)")]
    BadGroupQuorum {
        /// Group name.
        group: String,
        /// Configured quorum.
        quorum: usize,
        /// Number of members.
        members: usize,
    },
    /// The admin quorum is zero or larger than the number of admin keys.
    #[error("admin quorum {quorum} with {keys} admin key(s)")]
    BadAdminQuorum {
        /// Configured quorum.
        quorum: usize,
        /// Number of admin keys.
        keys: usize,
    },
    /// A rule refers to an approver group that does not exist.
    #[error("rule {rule:?} refers to unknown approver group {group:?}")]
    UnknownGroup {
        /// Rule name.
        rule: String,
        /// Group name.
        group: String,
    },
    /// A public key is not 32 bytes of hex or not a valid Ed25519 point.
    #[error("invalid Ed25519 public key {key:?} in {context}")]
    BadKey {
        /// The offending hex string.
        key: String,
        /// Where it was found.
        context: String,
    },
    /// The same key appears twice where keys must be distinct.
    #[error("duplicate key {key} in {context}")]
    DuplicateKey {
        /// The duplicated key (hex).
        key: String,
        /// Where it was found.
        context: String,
    },
    /// An address-book entry is invalid or duplicated.
    #[error("address book: {0}")]
    AddressBook(String),
    /// A velocity limit is invalid.
    #[error("velocity limit {name:?}: {why}")]
    BadVelocity {
        /// Name of the limit.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// A matcher that is present but empty (`destination = {}`,
    /// `time = {}`): it would match everything, which is almost always a
    /// mistake in a custody policy.
    #[error("rule {rule:?}: `{matcher}` is empty and would match every request: {fix}")]
    EmptyMatcher {
        /// Rule name.
        rule: String,
        /// The matcher.
        matcher: &'static str,
        /// What to write instead.
        fix: &'static str,
    },
    /// A vesting schedule is invalid.
    #[error("vesting rule {rule:?}: {why}")]
    BadVesting {
        /// Rule name.
        rule: String,
        /// What is wrong.
        why: String,
    },
    /// A time-of-day value is not `HH:MM` in 00:00..=23:59.
    #[error("rule {rule:?}: invalid time of day {value:?} (expected HH:MM)")]
    BadTimeOfDay {
        /// Rule name.
        rule: String,
        /// The value.
        value: String,
    },
}

/// Why an approval was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// The approval expired (`now >= expires_at`).
    #[error("approval expired at {expires_at} (now {now})")]
    Expired {
        /// Expiry of the approval.
        expires_at: u64,
        /// Evaluation time.
        now: u64,
    },
    /// The approval's nonce was already seen.
    #[error("approval nonce {nonce} was already used (replay)")]
    Replayed {
        /// The nonce (hex).
        nonce: String,
    },
    /// The signature does not verify under the approver key.
    #[error("approval signature does not verify (forged)")]
    Forged,
    /// The approval is for another request.
    #[error("approval is for request {got}, not {expected}")]
    WrongRequest {
        /// Hash of the request being evaluated (hex).
        expected: String,
        /// Hash in the approval (hex).
        got: String,
    },
    /// The approval is for another policy version.
    #[error("approval is for policy version {got}, current is {expected}")]
    WrongPolicyVersion {
        /// Current policy version.
        expected: u64,
        /// Version in the approval.
        got: u64,
    },
    /// The approver key is not a member of any approver group.
    #[error("approver {approver} is not a member of any approver group")]
    NotAMember {
        /// Approver key (hex).
        approver: String,
    },
    /// The approver is the initiator of the request.
    #[error("approver {approver} is the initiator {initiator:?} of the request")]
    SignerIsInitiator {
        /// Approver key (hex).
        approver: String,
        /// Initiator client name.
        initiator: String,
    },
    /// The approver field is not a valid Ed25519 public key.
    #[error("approver key is not a valid Ed25519 public key")]
    BadKey,
}

/// A signed policy update was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GovernanceError {
    /// The new document itself is invalid.
    #[error("new policy is invalid: {0}")]
    Invalid(#[from] PolicyError),
    /// The current policy names no admins, so it cannot be changed by signature.
    #[error("the current policy has no admins section; it cannot be changed by signature")]
    NoAdmins,
    /// Fewer valid distinct admin signatures than the current admin quorum.
    #[error("only {valid} valid admin signature(s), the current policy needs {quorum}")]
    QuorumNotMet {
        /// Valid distinct admin signatures.
        valid: usize,
        /// Required quorum.
        quorum: usize,
    },
    /// The new version is not greater than the current one.
    #[error("new policy version {new} is not greater than current version {current}")]
    VersionNotIncreasing {
        /// Current version.
        current: u64,
        /// Version of the proposed document.
        new: u64,
    },
}

/// A [`crate::Spending`] could not answer or apply a change exactly.
///
/// [`crate::evaluate`] turns each of these into a deny with an `internal:`
/// reason: an inexact answer could only under-count past spends.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SpendingError {
    /// [`crate::Spending::remove`] was given an entry the aggregates do not
    /// hold (never added, or removed already); nothing was changed.
    #[error(
        "entry of wallet {wallet:?} at {time} is not held by {}",
        limit.map_or_else(|| "the vesting totals".to_string(), |i| format!("velocity limit #{i}"))
    )]
    NotHeld {
        /// The entry's time.
        time: u64,
        /// The entry's wallet.
        wallet: String,
        /// The velocity limit (index in the policy) that should hold it, or
        /// `None` for the vesting totals.
        limit: Option<usize>,
    },
    /// The evaluation window of velocity limit `limit` at `now` reaches
    /// entries that an earlier prune dropped (a prune after `now`).
    #[error(
        "velocity limit #{limit}: the window at {now} reaches entries pruned up to {dropped} (pruned at a later time)"
    )]
    Pruned {
        /// The limit (index in the policy).
        limit: usize,
        /// The evaluation time.
        now: u64,
        /// Latest time of a dropped entry.
        dropped: u64,
    },
    /// The excluded entry (a request's own earlier entry) counts in the
    /// window asked about but is not held.
    #[error("the excluded entry of wallet {wallet:?} at {time} is not in the spending aggregates")]
    ExcludeNotHeld {
        /// The entry's time.
        time: u64,
        /// The entry's wallet.
        wallet: String,
    },
    /// No velocity limit with this index.
    #[error("no velocity limit #{limit}")]
    NoSuchLimit {
        /// The index asked for.
        limit: usize,
    },
    /// No vesting rule of the policy matches this wallet and asset, so no
    /// total is kept for them.
    #[error("wallet {wallet:?} and asset {asset:?} are not tracked for vesting")]
    NotTracked {
        /// The wallet asked about.
        wallet: String,
        /// The asset asked about.
        asset: String,
    },
    /// The aggregates were built for a policy with other velocity limits or
    /// vesting matchers.
    #[error("spending aggregates were built for policy version {built_for} with other limits (evaluating version {policy})")]
    OtherPolicy {
        /// Version the aggregates were built for.
        built_for: u64,
        /// Version of the evaluated policy.
        policy: u64,
    },
}
