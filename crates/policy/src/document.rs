//! The policy document: its TOML schema ([`PolicyDocument`]) and the
//! validated, ready-to-evaluate form ([`Policy`]).
//!
//! Every table uses `deny_unknown_fields`, so a misspelt field is refused
//! instead of silently ignored.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::error::PolicyError;

/// Largest policy document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Custody tier of a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Online, threshold-signed wallet.
    Hot,
    /// HSM-held wallet.
    Cold,
}

/// The on-disk policy document (TOML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Policy version; approvals name it, and a signed update must increase it.
    pub version: u64,
    /// Optional human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Admin keys and quorum that may sign the next version of this document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admins: Option<Admins>,
    /// Named destinations with a cool-down before first use.
    #[serde(default)]
    pub address_book: AddressBook,
    /// Approver groups referenced by rules.
    #[serde(default)]
    pub groups: Vec<ApproverGroup>,
    /// Velocity limits, counted over everything signed whichever rule matched.
    #[serde(default)]
    pub velocity: Vec<VelocityLimit>,
    /// Ordered rules; the first matching rule decides.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Staged enforcement: the requests that rules and limits with
    /// `audience = "selected"` apply to (the others get the `"others"` ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::Rollout>,
}

/// Admin keys allowed to sign policy updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admins {
    /// Ed25519 public keys, hex.
    pub keys: Vec<String>,
    /// Number of distinct admin signatures needed.
    pub quorum: usize,
}

/// The address book.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressBook {
    /// Seconds after `added_at` before an entry may be used.
    #[serde(default)]
    pub cooldown_secs: u64,
    /// Entries.
    #[serde(default)]
    pub entries: Vec<AddressEntry>,
}

/// One address-book entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressEntry {
    /// Entry name, used by rules.
    pub name: String,
    /// Destination address as it appears in requests.
    pub address: String,
    /// Unix time (seconds) the entry was added.
    pub added_at: u64,
}

/// An approver group: members and a quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproverGroup {
    /// Group name, used by rules.
    pub name: String,
    /// Distinct member approvals needed.
    pub quorum: usize,
    /// Members.
    pub members: Vec<Approver>,
}

/// An approver (treasury officer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approver {
    /// Ed25519 public key, hex.
    pub key: String,
    /// Optional display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// API client name this person also uses as an initiator, if any; the
    /// approver never counts for requests initiated by that client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// What a velocity limit is counted per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VelocityScope {
    /// Per wallet.
    Wallet,
    /// Per destination address.
    Destination,
    /// Per initiator (API client).
    Initiator,
}

/// A rolling-window limit on amount and/or count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VelocityLimit {
    /// Limit name (for reasons and descriptions).
    pub name: String,
    /// Counted per wallet, destination or initiator.
    pub per: VelocityScope,
    /// Window length in seconds; entries with `time > now - window` count.
    pub window_secs: u64,
    /// Asset the amount limit applies to (amounts of different assets never add up).
    pub asset: String,
    /// Optional wallet filter: the limit applies to requests from these
    /// wallets and counts only history entries from these wallets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallets: Option<Vec<String>>,
    /// Maximum total amount (smallest units) in the window, including the request.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "amount::option"
    )]
    pub max_amount: Option<u128>,
    /// Maximum number of transfers in the window, including the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
    /// In a rollout version, the requests the limit applies to (it counts
    /// everything signed either way); absent = every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<crate::rollout::Audience>,
}

/// Inclusive amount range in the asset's smallest unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountRange {
    /// Inclusive minimum (default 0).
    #[serde(default, with = "amount")]
    pub min: u128,
    /// Inclusive maximum (default unbounded).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "amount::option"
    )]
    pub max: Option<u128>,
}

/// Destination matcher.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationMatch {
    /// Address-book entry names; the destination must be one of them and past its cool-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_book: Option<Vec<String>>,
    /// Any address-book entry past its cool-down.
    #[serde(default)]
    pub any_address_book: bool,
    /// Raw addresses allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Raw addresses for which the rule never matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
}

/// Day of week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// Day of week (UTC) of a Unix timestamp.
    pub fn of_unix(t: u64) -> Weekday {
        // 1970-01-01 was a Thursday.
        match (t / 86_400 + 3) % 7 {
            0 => Weekday::Mon,
            1 => Weekday::Tue,
            2 => Weekday::Wed,
            3 => Weekday::Thu,
            4 => Weekday::Fri,
            5 => Weekday::Sat,
            _ => Weekday::Sun,
        }
    }
}

/// Time-of-day / day-of-week matcher (UTC, from the request time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeMatch {
    /// Days on which the rule matches (absent = every day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<Weekday>>,
    /// Start `HH:MM` (inclusive); with `to`. If `to < from` the window wraps midnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// End `HH:MM` (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// How approver groups combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Every listed group must reach its quorum.
    #[default]
    All,
    /// One listed group reaching its quorum suffices.
    Any,
}

/// A rule's action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Sign.
    Allow,
    /// Refuse.
    Deny {
        /// Optional reason given to the caller.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Require approvals from groups, optionally followed by a time lock.
    RequireApprovals {
        /// Group names.
        groups: Vec<String>,
        /// `all` (AND, default) or `any` (OR).
        #[serde(default)]
        combine: Combine,
        /// Time lock in seconds counted from the request time (0 = none).
        #[serde(default)]
        delay_secs: u64,
    },
    /// Sign only after a delay counted from the request time; any member of
    /// `cancel_groups` can cancel with a Reject approval.
    TimeLock {
        /// Delay in seconds.
        delay_secs: u64,
        /// Groups whose members may cancel.
        #[serde(default)]
        cancel_groups: Vec<String>,
    },
    /// Linear vesting of a beneficiary's allocation after a cliff.
    Vesting {
        /// Vesting start (Unix seconds).
        start: u64,
        /// Cliff in seconds after `start`; nothing is released before it.
        cliff_secs: u64,
        /// Duration in seconds after `start` until everything is vested.
        duration_secs: u64,
        /// Total allocation (smallest units).
        #[serde(with = "amount")]
        total: u128,
        /// Revocation (Unix seconds): vesting stops here, and what had
        /// vested by then stays claimable (an allocation plan's
        /// revocation, signed by the admins as a new policy version).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revoked_at: Option<u64>,
    },
}

/// An ordered policy rule: matchers (all must match; absent = any) and an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique rule name.
    pub name: String,
    /// Wallet / key ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallets: Option<Vec<String>>,
    /// Tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Assets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<Vec<String>>,
    /// Amount range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<AmountRange>,
    /// Destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationMatch>,
    /// Initiators (API client names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiators: Option<Vec<String>>,
    /// Time of day / day of week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeMatch>,
    /// Chains (registry ids such as `base`): the rule matches only chain
    /// transactions on one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chains: Option<Vec<String>>,
    /// The most a chain transaction may pay in fees (native base units): the
    /// rule matches only chain transactions whose fee cap is at most this.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "amount::option"
    )]
    pub max_fee: Option<u128>,
    /// The risk engine's outcome: the rule matches only requests the engine
    /// judged (customer payouts) whose facts fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskMatch>,
    /// Where the request comes from (`direct`, `scheduled`, `conditional`):
    /// the rule matches only requests of one of these origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<crate::request::RequestOrigin>>,
    /// In a rollout version, the requests the rule applies to; absent =
    /// every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<crate::rollout::Audience>,
    /// Whether a raw-bytes payload may match this rule (deny rules match raw payloads regardless).
    #[serde(default)]
    pub allow_raw: bool,
    /// What to do.
    pub action: Action,
}

impl Rule {
    /// True if the rule has no matcher at all (it matches every request).
    pub fn is_catch_all(&self) -> bool {
        self.wallets.is_none()
            && self.tier.is_none()
            && self.assets.is_none()
            && self.amount.is_none()
            && self.destination.is_none()
            && self.initiators.is_none()
            && self.time.is_none()
            && self.chains.is_none()
            && self.max_fee.is_none()
            && self.risk.is_none()
            && self.origins.is_none()
            && self.audience.is_none()
    }
}

/// A rule's matcher on the risk engine's outcome; every condition given
/// must hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskMatch {
    /// The score is above this (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_above: Option<u8>,
    /// The score is at most this (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_at_most: Option<u8>,
    /// The engine's action is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<crate::request::RiskAction>>,
    /// The customer's KYC tier is below this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyc_below: Option<crate::request::KycLevel>,
}

impl RiskMatch {
    /// Whether `facts` fit.
    pub fn matches(&self, facts: &crate::request::RiskFacts) -> bool {
        self.score_above.is_none_or(|a| facts.score > a)
            && self.score_at_most.is_none_or(|m| facts.score <= m)
            && self
                .actions
                .as_ref()
                .is_none_or(|l| l.contains(&facts.action))
            && self.kyc_below.is_none_or(|k| facts.kyc_tier < k)
    }
}

/// Pre-computed time window (minutes since midnight UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MinuteWindow {
    pub(crate) from: u32,
    pub(crate) to: u32,
}

/// A validated policy, ready for evaluation. Build it with [`Policy::from_toml`]
/// or [`Policy::from_document`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    doc: PolicyDocument,
    /// group name -> (quorum, members key bytes -> client)
    pub(crate) groups: BTreeMap<String, ParsedGroup>,
    pub(crate) admin_keys: Vec<[u8; 32]>,
    pub(crate) windows: Vec<Option<MinuteWindow>>,
    /// Computed once: `evaluate` compares it with its `Spending`'s on every call.
    spending_fingerprint: [u8; 32],
}

/// A validated approver group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedGroup {
    pub(crate) quorum: usize,
    pub(crate) members: BTreeMap<[u8; 32], Option<String>>,
}

pub(crate) fn parse_key(hex_key: &str, context: &str) -> Result<[u8; 32], PolicyError> {
    let bad = || PolicyError::BadKey {
        key: hex_key.to_string(),
        context: context.to_string(),
    };
    let bytes = hex::decode(hex_key.trim()).map_err(|_| bad())?;
    let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
    VerifyingKey::from_bytes(&arr).map_err(|_| bad())?;
    Ok(arr)
}

fn parse_hhmm(rule: &str, s: &str) -> Result<u32, PolicyError> {
    let bad = || PolicyError::BadTimeOfDay {
        rule: rule.to_string(),
        value: s.to_string(),
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn never(rule: &Rule, why: &str) -> PolicyError {
    PolicyError::RuleNeverMatches {
        rule: rule.name.clone(),
        why: why.to_string(),
    }
}

fn nonempty(rule: &Rule, list: &Option<Vec<String>>, what: &str) -> Result<(), PolicyError> {
    match list {
        Some(v) if v.is_empty() => Err(never(rule, &format!("`{what}` is an empty list"))),
        _ => Ok(()),
    }
}

impl Policy {
    /// Parse and validate a TOML policy document.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(PolicyError::TooLarge {
                size: text.len(),
                limit: MAX_DOCUMENT_BYTES,
            });
        }
        let doc: PolicyDocument =
            toml::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        Policy::from_document(doc)
    }

    /// Validate an already-deserialized document.
    pub fn from_document(doc: PolicyDocument) -> Result<Policy, PolicyError> {
        // Admins.
        let mut admin_keys = Vec::new();
        if let Some(admins) = &doc.admins {
            let mut seen = BTreeSet::new();
            for k in &admins.keys {
                let key = parse_key(k, "admins.keys")?;
                if !seen.insert(key) {
                    return Err(PolicyError::DuplicateKey {
                        key: hex::encode(key),
                        context: "admins.keys".into(),
                    });
                }
                admin_keys.push(key);
            }
            if admins.quorum == 0 || admins.quorum > admins.keys.len() {
                return Err(PolicyError::BadAdminQuorum {
                    quorum: admins.quorum,
                    keys: admins.keys.len(),
                });
            }
        }
        // Every address in its one canonical spelling, as requests are.
        let canonical = |place: String, a: &str| -> Result<(), PolicyError> {
            match crate::address::canonical_destination(a) {
                Ok(c) if c == a => Ok(()),
                Ok(c) => Err(PolicyError::NonCanonicalAddress {
                    place,
                    address: a.to_string(),
                    reason: format!("is written {c:?} in requests: write it so"),
                }),
                Err(e) => Err(PolicyError::NonCanonicalAddress {
                    place,
                    address: a.to_string(),
                    reason: e.to_string(),
                }),
            }
        };
        for e in &doc.address_book.entries {
            canonical(format!("address book entry {:?}", e.name), &e.address)?;
        }
        for r in &doc.rules {
            if let Some(d) = &r.destination {
                for (field, list) in [("allow", &d.allow), ("deny", &d.deny)] {
                    for a in list.iter().flatten() {
                        canonical(format!("rule {:?} destination.{field}", r.name), a)?;
                    }
                }
            }
        }
        // Address book.
        let mut names = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for e in &doc.address_book.entries {
            if e.name.is_empty() || e.address.is_empty() {
                return Err(PolicyError::AddressBook(
                    "entry with an empty name or address".into(),
                ));
            }
            if !names.insert(e.name.as_str()) {
                return Err(PolicyError::AddressBook(format!(
                    "duplicate entry name {:?}",
                    e.name
                )));
            }
            if !addrs.insert(e.address.as_str()) {
                return Err(PolicyError::AddressBook(format!(
                    "duplicate address {:?}",
                    e.address
                )));
            }
        }
        // Groups.
        let mut groups = BTreeMap::new();
        for g in &doc.groups {
            if g.quorum == 0 || g.quorum > g.members.len() {
                return Err(PolicyError::BadGroupQuorum {
                    group: g.name.clone(),
                    quorum: g.quorum,
                    members: g.members.len(),
                });
            }
            let mut members = BTreeMap::new();
            let ctx = format!("group {:?}", g.name);
            for m in &g.members {
                let key = parse_key(&m.key, &ctx)?;
                if members.insert(key, m.client.clone()).is_some() {
                    return Err(PolicyError::DuplicateKey {
                        key: hex::encode(key),
                        context: ctx,
                    });
                }
            }
            let parsed = ParsedGroup {
                quorum: g.quorum,
                members,
            };
            if groups.insert(g.name.clone(), parsed).is_some() {
                return Err(PolicyError::DuplicateGroupName(g.name.clone()));
            }
        }
        // Velocity.
        let mut vnames: BTreeSet<(&str, Option<crate::rollout::Audience>)> = BTreeSet::new();
        for v in &doc.velocity {
            let bad = |why: &str| PolicyError::BadVelocity {
                name: v.name.clone(),
                why: why.to_string(),
            };
            // Unique, except once per audience in a rollout version.
            let clash = vnames.contains(&(v.name.as_str(), v.audience))
                || vnames.contains(&(v.name.as_str(), None))
                || (v.audience.is_none()
                    && vnames
                        .range((v.name.as_str(), None)..)
                        .next()
                        .is_some_and(|(n, _)| *n == v.name));
            if clash {
                return Err(bad("duplicate limit name"));
            }
            vnames.insert((v.name.as_str(), v.audience));
            if v.window_secs == 0 {
                return Err(bad("window_secs must be > 0"));
            }
            if v.max_amount.is_none() && v.max_count.is_none() {
                return Err(bad("set max_amount and/or max_count"));
            }
            if matches!(&v.wallets, Some(w) if w.is_empty()) {
                return Err(bad("`wallets` is an empty list"));
            }
            if v.audience.is_some() && doc.rollout.is_none() {
                return Err(bad("`audience` needs a [rollout] section"));
            }
        }
        if let Some(r) = &doc.rollout {
            r.check()?;
            if !doc.rules.iter().any(|r| r.audience.is_some()) {
                return Err(PolicyError::BadRollout(
                    "no rule has an `audience`: the selection would change nothing".into(),
                ));
            }
        }
        // Rules.
        let Some(last) = doc.rules.last() else {
            return Err(PolicyError::NoRules);
        };
        // A name is unique, except once per audience in a rollout version.
        let mut rnames: BTreeSet<(&str, Option<crate::rollout::Audience>)> = BTreeSet::new();
        let mut windows = Vec::with_capacity(doc.rules.len());
        let last_index = doc.rules.len() - 1;
        for (i, r) in doc.rules.iter().enumerate() {
            let clash = rnames.contains(&(r.name.as_str(), r.audience))
                || rnames.contains(&(r.name.as_str(), None))
                || (r.audience.is_none()
                    && rnames
                        .range((r.name.as_str(), None)..)
                        .next()
                        .is_some_and(|(n, _)| *n == r.name));
            if clash {
                return Err(PolicyError::DuplicateRuleName(r.name.clone()));
            }
            rnames.insert((r.name.as_str(), r.audience));
            if r.audience.is_some() && doc.rollout.is_none() {
                return Err(never(r, "`audience` needs a [rollout] section"));
            }
            if matches!(&r.origins, Some(o) if o.is_empty()) {
                return Err(never(r, "`origins` is an empty list"));
            }
            if i < last_index && r.is_catch_all() {
                let after = &doc.rules[i + 1].name;
                return Err(never(
                    &doc.rules[i + 1],
                    &format!(
                        "it comes after the catch-all rule {:?} ({after} is unreachable)",
                        r.name
                    ),
                ));
            }
            nonempty(r, &r.wallets, "wallets")?;
            nonempty(r, &r.assets, "assets")?;
            nonempty(r, &r.initiators, "initiators")?;
            if let Some(a) = &r.amount {
                if let Some(max) = a.max {
                    if a.min > max {
                        return Err(never(r, &format!("amount min {} > max {max}", a.min)));
                    }
                }
            }
            if let Some(m) = &r.risk {
                if m.score_above.is_none()
                    && m.score_at_most.is_none()
                    && m.actions.is_none()
                    && m.kyc_below.is_none()
                {
                    return Err(PolicyError::EmptyMatcher {
                        rule: r.name.clone(),
                        matcher: "risk",
                        fix: "set `score_above`, `score_at_most`, `actions` or `kyc_below`, or remove it",
                    });
                }
                if m.score_above.is_some_and(|a| a >= 100) {
                    return Err(never(
                        r,
                        "risk.score_above is 100 or more (scores are 0..=100)",
                    ));
                }
                if let (Some(a), Some(b)) = (m.score_above, m.score_at_most) {
                    if a >= b {
                        return Err(never(
                            r,
                            &format!("risk.score_above {a} is not below risk.score_at_most {b}"),
                        ));
                    }
                }
                if m.actions.as_ref().is_some_and(|l| l.is_empty()) {
                    return Err(never(r, "risk.actions is an empty list"));
                }
                if m.kyc_below == Some(crate::request::KycLevel::None) {
                    return Err(never(r, "no tier is below kyc_below = \"none\""));
                }
            }
            if let Some(d) = &r.destination {
                if d.address_book.is_none()
                    && !d.any_address_book
                    && d.allow.is_none()
                    && d.deny.is_none()
                {
                    return Err(PolicyError::EmptyMatcher {
                        rule: r.name.clone(),
                        matcher: "destination",
                        fix: "name `address_book` entries, set `any_address_book = true`, list `allow` or `deny` addresses, or remove it",
                    });
                }
                nonempty(r, &d.address_book, "destination.address_book")?;
                nonempty(r, &d.allow, "destination.allow")?;
                if let Some(entries) = &d.address_book {
                    for n in entries {
                        if !names.contains(n.as_str()) {
                            return Err(never(r, &format!("unknown address-book entry {n:?}")));
                        }
                    }
                }
                if let (Some(allow), Some(deny)) = (&d.allow, &d.deny) {
                    if d.address_book.is_none()
                        && !d.any_address_book
                        && allow.iter().all(|a| deny.contains(a))
                    {
                        return Err(never(r, "every allowed destination is also denied"));
                    }
                }
            }
            let mut window = None;
            if let Some(t) = &r.time {
                if t.days.is_none() && t.from.is_none() && t.to.is_none() {
                    return Err(PolicyError::EmptyMatcher {
                        rule: r.name.clone(),
                        matcher: "time",
                        fix: "set `days` and/or `from` and `to`, or remove it",
                    });
                }
                if matches!(&t.days, Some(d) if d.is_empty()) {
                    return Err(never(r, "`time.days` is an empty list"));
                }
                match (&t.from, &t.to) {
                    (None, None) => {}
                    (Some(f), Some(to)) => {
                        let from = parse_hhmm(&r.name, f)?;
                        let to = parse_hhmm(&r.name, to)?;
                        if from == to {
                            return Err(never(r, "time window `from` equals `to` (empty)"));
                        }
                        window = Some(MinuteWindow { from, to });
                    }
                    _ => return Err(never(r, "set both `time.from` and `time.to`")),
                }
            }
            windows.push(window);
            let check_groups = |gs: &[String]| -> Result<(), PolicyError> {
                for g in gs {
                    if !groups.contains_key(g) {
                        return Err(PolicyError::UnknownGroup {
                            rule: r.name.clone(),
                            group: g.clone(),
                        });
                    }
                }
                Ok(())
            };
            match &r.action {
                Action::RequireApprovals { groups: gs, .. } => {
                    if gs.is_empty() {
                        return Err(never(r, "require_approvals with no groups"));
                    }
                    check_groups(gs)?;
                }
                Action::TimeLock { cancel_groups, .. } => check_groups(cancel_groups)?,
                Action::Vesting {
                    cliff_secs,
                    duration_secs,
                    ..
                } => {
                    let bad = |why: &str| PolicyError::BadVesting {
                        rule: r.name.clone(),
                        why: why.to_string(),
                    };
                    if *duration_secs == 0 {
                        return Err(bad("duration_secs must be > 0"));
                    }
                    if cliff_secs > duration_secs {
                        return Err(bad("cliff_secs exceeds duration_secs"));
                    }
                    if r.destination.is_none() || r.wallets.is_none() || r.assets.is_none() {
                        return Err(bad(
                            "a vesting rule must name its wallets, assets and beneficiary destination",
                        ));
                    }
                }
                Action::Allow | Action::Deny { .. } => {}
            }
        }
        if !(last.is_catch_all() && matches!(last.action, Action::Deny { .. })) {
            return Err(PolicyError::NoCatchAllDeny {
                rule: last.name.clone(),
            });
        }
        let spending_fingerprint = crate::spending::shape_fingerprint(&doc);
        Ok(Policy {
            doc,
            groups,
            admin_keys,
            windows,
            spending_fingerprint,
        })
    }

    /// The policy version.
    pub fn version(&self) -> u64 {
        self.doc.version
    }

    /// Fingerprint of what [`crate::Spending`] aggregates depend on: SHA-256,
    /// after [`crate::SPENDING_DOMAIN`], of each velocity limit's scope,
    /// window, asset and wallet filter and each vesting rule's `wallets` and
    /// `assets` matchers. Two versions with the same fingerprint can share
    /// one `Spending`.
    pub fn spending_fingerprint(&self) -> [u8; 32] {
        self.spending_fingerprint
    }

    /// The underlying document.
    pub fn document(&self) -> &PolicyDocument {
        &self.doc
    }

    /// Serialize the document back to TOML.
    pub fn to_toml(&self) -> Result<String, PolicyError> {
        toml::to_string(&self.doc).map_err(|e| PolicyError::Parse(e.to_string()))
    }

    /// Names of the groups the given approver key belongs to (sorted).
    pub fn groups_of(&self, approver: &[u8; 32]) -> Vec<&str> {
        self.groups
            .iter()
            .filter(|(_, g)| g.members.contains_key(approver))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// Client names associated with the given approver key in any group.
    pub(crate) fn clients_of(&self, approver: &[u8; 32]) -> BTreeSet<&str> {
        self.groups
            .values()
            .filter_map(|g| g.members.get(approver))
            .filter_map(|c| c.as_deref())
            .collect()
    }

    /// The address-book entry for an address, if it is past its cool-down at `time`.
    pub fn usable_entry(&self, address: &str, time: u64) -> Option<&AddressEntry> {
        let cd = self.doc.address_book.cooldown_secs;
        self.doc
            .address_book
            .entries
            .iter()
            .find(|e| e.address == address)
            .filter(|e| e.added_at.saturating_add(cd) <= time)
    }
}

/// Serde helpers for `u128` amounts: TOML integers are 64-bit, so an amount
/// is written as an integer when it fits in `i64` and as a decimal string
/// (e.g. `"340282366920938463463374607431768211455"`) otherwise; both forms
/// are accepted when reading. Floats and negative numbers are refused.
pub(crate) mod amount {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    struct AmountVisitor;

    impl Visitor<'_> for AmountVisitor {
        type Value = u128;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer amount or a decimal string")
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<u128, E> {
            Ok(u128::from(v))
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<u128, E> {
            u128::try_from(v).map_err(|_| E::custom("amount must not be negative"))
        }
        fn visit_u128<E: Error>(self, v: u128) -> Result<u128, E> {
            Ok(v)
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<u128, E> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!("invalid amount {v:?}: digits only")));
            }
            v.parse()
                .map_err(|_| E::custom(format!("amount {v:?} does not fit in u128")))
        }
    }

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(*v) {
            Ok(small) => s.serialize_i64(small),
            Err(_) => s.serialize_str(&v.to_string()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        d.deserialize_any(AmountVisitor)
    }

    /// The same for `Option<u128>`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        #[derive(Deserialize)]
        struct Wrap(#[serde(deserialize_with = "super::deserialize")] u128);

        pub fn serialize<S: Serializer>(v: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(x) => super::serialize(x, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekday_of_known_dates() {
        assert_eq!(Weekday::of_unix(0), Weekday::Thu); // 1970-01-01
        assert_eq!(Weekday::of_unix(1_699_869_600), Weekday::Mon); // 2023-11-13
        assert_eq!(Weekday::of_unix(1_700_000_000), Weekday::Tue); // 2023-11-14
        assert_eq!(Weekday::of_unix(1_704_067_199), Weekday::Sun); // 2023-12-31 23:59:59
    }

    #[test]
    fn hhmm_parsing() {
        assert_eq!(parse_hhmm("r", "00:00"), Ok(0));
        assert_eq!(parse_hhmm("r", "23:59"), Ok(23 * 60 + 59));
        for bad in ["24:00", "9:00", "09:60", "0900", "", "aa:bb"] {
            assert!(parse_hhmm("r", bad).is_err(), "{bad}");
        }
    }
}
