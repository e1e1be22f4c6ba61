//! Token allocation plans, as pure logic.
//!
//! A plan splits a token's `total` supply (in base units) between groups
//! (team, advisors, investors, community, ecosystem, ...) by basis points,
//! and each group's amount between beneficiaries, each with a linear release
//! from `start` to `start + duration_secs`, nothing before the cliff, and an
//! optional revocation that freezes the vested amount. This module parses and
//! validates a plan ([`Plan::from_toml`], [`Plan::from_json`]), computes what
//! is vested and claimable at a given time ([`vested`], [`claimable`],
//! [`check_claim`]), hashes a plan version for admin signatures
//! ([`Plan::digest`]), and describes the release over time
//! ([`schedule_view`], [`render_svg`]).
//!
//! Amounts are `u128` base units, written as decimal strings in TOML and
//! JSON (never floats); times are Unix seconds, always an argument (there is
//! no clock here), so every party computes the same answers.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, Timelike};
use ruint::aliases::U256;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The largest plan document accepted, in bytes (TOML or JSON).
pub const MAX_PLAN_BYTES: usize = 1024 * 1024;
/// The most groups a plan may have.
pub const MAX_GROUPS: usize = 64;
/// The most beneficiaries a plan may have, over all its groups.
pub const MAX_BENEFICIARIES: usize = 10_000;
/// The longest string field (ids, names, addresses), in bytes.
pub const MAX_STRING_BYTES: usize = 128;
/// The most decimals a token may have (10^38 is the largest power of ten in
/// a `u128`).
pub const MAX_DECIMALS: u8 = 38;
/// The sum of the groups' `share_bps`: 100% in basis points.
pub const TOTAL_BPS: u32 = 10_000;
/// The longest release, in seconds: 100 years of 365.25 days.
pub const MAX_DURATION_SECS: u64 = 3_155_760_000;
/// The latest time a release may end: 9999-12-31T23:59:59Z.
pub const MAX_TIME: u64 = 253_402_300_799;
/// The most sampled points in one schedule row set (see [`Sampling`]).
pub const MAX_SCHEDULE_POINTS: u32 = 2_000;

/// The domain separator of [`Plan::digest`].
const DIGEST_DOMAIN: &[u8] = b"keyfold/allocation-plan/v1";
/// Evenly spaced points used when months cannot be computed.
const FALLBACK_POINTS: u32 = 120;

/// An allocation plan as written on disk, before validation. Use
/// [`Plan::from_document`] (or [`Plan::from_toml`] / [`Plan::from_json`])
/// to get a validated [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanDocument {
    /// The plan's id: ASCII letters, digits, `.`, `_`, `-`, `:`.
    pub plan_id: String,
    /// The plan's version, at least 1; a revocation or any change is a new
    /// version signed by the admin quorum.
    pub version: u64,
    /// The token allocated.
    pub token: Token,
    /// The total allocated, in base units (a decimal string on disk).
    #[serde(with = "decimal")]
    pub total: u128,
    /// The groups sharing the total.
    pub groups: Vec<Group>,
}

/// The token a plan allocates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// The chain id as Keyfold names it (e.g. `devnet-l2`).
    pub chain: String,
    /// The asset's symbol (e.g. `KFT`).
    pub asset: String,
    /// The token contract's address; absent for the chain's native asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// Decimals of the token: one token is `10^decimals` base units.
    pub decimals: u8,
}

/// A group of beneficiaries with its share of the total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The group's name, unique in the plan (e.g. `team`).
    pub name: String,
    /// The group's share of the total, in basis points (1/100 of a percent).
    pub share_bps: u32,
    /// The group's beneficiaries; what they do not take is unallocated.
    #[serde(default)]
    pub beneficiaries: Vec<Beneficiary>,
}

/// One beneficiary: an amount released linearly to a registered address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Beneficiary {
    /// The beneficiary's id, unique in the plan.
    pub id: String,
    /// The registered payout address; claims are paid there only.
    pub address: String,
    /// The amount, in base units (a decimal string on disk).
    #[serde(with = "decimal")]
    pub amount: u128,
    /// When the linear release starts (Unix seconds).
    pub start: u64,
    /// Nothing is vested before `start + cliff_secs`.
    pub cliff_secs: u64,
    /// The release is linear from `start` to `start + duration_secs`.
    pub duration_secs: u64,
    /// When the admin quorum revoked the allocation (Unix seconds): vesting
    /// stops at that time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

impl Beneficiary {
    /// The amount vested at `now` (see [`vested`]).
    pub fn vested(&self, now: u64) -> u128 {
        vested(
            self.amount,
            self.start,
            self.cliff_secs,
            self.duration_secs,
            self.revoked_at,
            now,
        )
    }

    /// When the cliff ends: the first time anything may be vested.
    pub fn cliff_end(&self) -> u64 {
        self.start.saturating_add(self.cliff_secs)
    }

    /// When the release ends: everything is vested from then on (unless
    /// revoked before).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.duration_secs)
    }
}

/// A group's figures in a validated plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// The group's name.
    pub name: String,
    /// Its share of the total, in basis points.
    pub share_bps: u32,
    /// Its amount: `total * share_bps / 10000`, exact.
    pub amount: u128,
    /// The sum of its beneficiaries' amounts.
    pub allocated: u128,
    /// `amount - allocated`.
    pub unallocated: u128,
    /// How many beneficiaries it has.
    pub beneficiaries: usize,
}

/// A validated allocation plan. Serializes as its [`PlanDocument`] and
/// validates when deserialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PlanDocument", into = "PlanDocument")]
pub struct Plan {
    doc: PlanDocument,
    summaries: Vec<GroupSummary>,
}

impl From<Plan> for PlanDocument {
    fn from(p: Plan) -> PlanDocument {
        p.doc
    }
}

impl TryFrom<PlanDocument> for Plan {
    type Error = AllocationError;
    fn try_from(doc: PlanDocument) -> Result<Plan, AllocationError> {
        Plan::from_document(doc)
    }
}

/// Why a plan is refused. Every variant names the plan, and where it
/// applies the group or beneficiary and the field (as a path such as
/// `groups["team"].beneficiaries["alice"].cliff_secs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocationError {
    /// The document is larger than [`MAX_PLAN_BYTES`].
    #[error("allocation plan is {size} bytes, the limit is {limit}")]
    TooLarge {
        /// The document's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The document is not valid TOML/JSON for a plan (syntax, a missing or
    /// unknown field, a wrong type, an amount that is not a decimal string).
    #[error("allocation plan does not parse: {0}")]
    Parse(String),
    /// A field's value is not allowed.
    #[error("plan {plan:?}: {field}: {problem}")]
    Invalid {
        /// The plan's id.
        plan: String,
        /// The field's path.
        field: String,
        /// What is wrong and what is allowed.
        problem: String,
    },
    /// Too many groups or beneficiaries.
    #[error("plan {plan:?}: {count} {what}, at most {limit} are allowed")]
    TooMany {
        /// The plan's id.
        plan: String,
        /// `groups` or `beneficiaries`.
        what: &'static str,
        /// How many the plan has.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The groups' shares do not add up to 10000 basis points.
    #[error(
        "plan {plan:?}: the groups' share_bps add up to {sum}, they must add up to exactly 10000 (100%)"
    )]
    SharesNotWhole {
        /// The plan's id.
        plan: String,
        /// The sum of the shares.
        sum: u64,
    },
    /// `total * share_bps / 10000` is not a whole number of base units.
    #[error(
        "plan {plan:?}: groups[{group:?}].share_bps: {share_bps} bps of the total {total} is not a whole number of base units; the total times the share must be a multiple of 10000"
    )]
    InexactGroupAmount {
        /// The plan's id.
        plan: String,
        /// The group's name.
        group: String,
        /// The group's share.
        share_bps: u32,
        /// The plan's total.
        total: u128,
    },
    /// A group's beneficiaries take more than the group's amount.
    #[error(
        "plan {plan:?}: groups[{group:?}].beneficiaries: the amounts add up to {allocated}, more than the group's {amount} ({share_bps} bps of the total)"
    )]
    OverAllocated {
        /// The plan's id.
        plan: String,
        /// The group's name.
        group: String,
        /// The group's share.
        share_bps: u32,
        /// The group's amount.
        amount: u128,
        /// The sum of its beneficiaries' amounts.
        allocated: u128,
    },
    /// A group name or beneficiary id appears twice.
    #[error(
        "plan {plan:?}: {field}: {what} {value:?} appears twice; it must be unique in the plan"
    )]
    Duplicate {
        /// The plan's id.
        plan: String,
        /// The path of the second occurrence.
        field: String,
        /// `group name` or `beneficiary id`.
        what: &'static str,
        /// The repeated value.
        value: String,
    },
    /// An amount or share is zero.
    #[error("plan {plan:?}: {field}: must be greater than 0")]
    Zero {
        /// The plan's id.
        plan: String,
        /// The field's path.
        field: String,
    },
    /// A cliff longer than the release.
    #[error(
        "plan {plan:?}: {field}: cliff_secs {cliff_secs} is longer than duration_secs {duration_secs}; the cliff must end at or before the end of the release"
    )]
    CliffAfterEnd {
        /// The plan's id.
        plan: String,
        /// The beneficiary's path.
        field: String,
        /// The cliff.
        cliff_secs: u64,
        /// The duration.
        duration_secs: u64,
    },
    /// A release of duration 0.
    #[error(
        "plan {plan:?}: {field}.duration_secs: is 0; a linear release needs a duration of 1 to {MAX_DURATION_SECS} seconds"
    )]
    ZeroDuration {
        /// The plan's id.
        plan: String,
        /// The beneficiary's path.
        field: String,
    },
    /// An arithmetic overflow (a time or a sum out of range).
    #[error("plan {plan:?}: {field}: {detail} overflows")]
    Overflow {
        /// The plan's id.
        plan: String,
        /// The field's path.
        field: String,
        /// What overflows.
        detail: String,
    },
}

impl Plan {
    /// Parses and validates a TOML plan (at most [`MAX_PLAN_BYTES`]).
    pub fn from_toml(text: &str) -> Result<Plan, AllocationError> {
        check_size(text)?;
        let doc: PlanDocument =
            toml::from_str(text).map_err(|e| AllocationError::Parse(e.to_string()))?;
        Plan::from_document(doc)
    }

    /// Parses and validates a JSON plan (at most [`MAX_PLAN_BYTES`]).
    pub fn from_json(text: &str) -> Result<Plan, AllocationError> {
        check_size(text)?;
        let doc: PlanDocument =
            serde_json::from_str(text).map_err(|e| AllocationError::Parse(e.to_string()))?;
        Plan::from_document(doc)
    }

    /// Validates a parsed document.
    pub fn from_document(doc: PlanDocument) -> Result<Plan, AllocationError> {
        let summaries = validate(&doc)?;
        Ok(Plan { doc, summaries })
    }

    /// The document.
    pub fn document(&self) -> &PlanDocument {
        &self.doc
    }

    /// The plan's id.
    pub fn plan_id(&self) -> &str {
        &self.doc.plan_id
    }

    /// The plan's version.
    pub fn version(&self) -> u64 {
        self.doc.version
    }

    /// The token.
    pub fn token(&self) -> &Token {
        &self.doc.token
    }

    /// The total, in base units.
    pub fn total(&self) -> u128 {
        self.doc.total
    }

    /// The groups, in document order.
    pub fn groups(&self) -> &[Group] {
        &self.doc.groups
    }

    /// Each group's amount, allocated and unallocated, in document order.
    pub fn summaries(&self) -> &[GroupSummary] {
        &self.summaries
    }

    /// The sum of the groups' unallocated amounts.
    pub fn unallocated(&self) -> u128 {
        // Each is at most its group's amount, and those add up to the total.
        self.summaries
            .iter()
            .fold(0u128, |s, g| s.saturating_add(g.unallocated))
    }

    /// A beneficiary by id, with its group.
    pub fn beneficiary(&self, id: &str) -> Option<(&Group, &Beneficiary)> {
        self.doc
            .groups
            .iter()
            .find_map(|g| g.beneficiaries.iter().find(|b| b.id == id).map(|b| (g, b)))
    }

    /// The first start and the last end of the beneficiaries' releases
    /// (`None` without beneficiaries).
    pub fn span(&self) -> Option<(u64, u64)> {
        let all = self.doc.groups.iter().flat_map(|g| g.beneficiaries.iter());
        let first = all.clone().map(|b| b.start).min()?;
        let last = all.map(Beneficiary::end).max()?;
        Some((first, last))
    }

    /// The plan's canonical hash: SHA-256 over a domain-separated,
    /// length-prefixed encoding of every field in document order, so that
    /// admin signatures bind one plan version exactly (the TOML's layout,
    /// comments and the JSON's key order do not matter).
    pub fn digest(&self) -> [u8; 32] {
        let d = &self.doc;
        let mut h = Sha256::new();
        put_bytes(&mut h, DIGEST_DOMAIN);
        put_bytes(&mut h, d.plan_id.as_bytes());
        h.update(d.version.to_be_bytes());
        put_bytes(&mut h, d.token.chain.as_bytes());
        put_bytes(&mut h, d.token.asset.as_bytes());
        match &d.token.contract {
            Some(c) => {
                h.update([1u8]);
                put_bytes(&mut h, c.as_bytes());
            }
            None => h.update([0u8]),
        }
        h.update([d.token.decimals]);
        h.update(d.total.to_be_bytes());
        h.update((d.groups.len() as u64).to_be_bytes());
        for g in &d.groups {
            put_bytes(&mut h, g.name.as_bytes());
            h.update(g.share_bps.to_be_bytes());
            h.update((g.beneficiaries.len() as u64).to_be_bytes());
            for b in &g.beneficiaries {
                put_bytes(&mut h, b.id.as_bytes());
                put_bytes(&mut h, b.address.as_bytes());
                h.update(b.amount.to_be_bytes());
                h.update(b.start.to_be_bytes());
                h.update(b.cliff_secs.to_be_bytes());
                h.update(b.duration_secs.to_be_bytes());
                match b.revoked_at {
                    Some(r) => {
                        h.update([1u8]);
                        h.update(r.to_be_bytes());
                    }
                    None => h.update([0u8]),
                }
            }
        }
        h.finalize().into()
    }
}

fn put_bytes(h: &mut Sha256, b: &[u8]) {
    h.update((b.len() as u64).to_be_bytes());
    h.update(b);
}

fn check_size(text: &str) -> Result<(), AllocationError> {
    if text.len() > MAX_PLAN_BYTES {
        return Err(AllocationError::TooLarge {
            size: text.len(),
            limit: MAX_PLAN_BYTES,
        });
    }
    Ok(())
}

/// A value quoted in an error: at most [`MAX_STRING_BYTES`] characters.
fn shown(s: &str) -> String {
    s.chars().take(MAX_STRING_BYTES).collect()
}

/// Which characters a string field allows.
#[derive(Clone, Copy)]
enum Chars {
    /// ASCII letters, digits, `.`, `_`, `-`, `:`.
    Id,
    /// Printable ASCII without spaces (addresses on every chain).
    Address,
    /// Anything but control characters.
    Name,
}

fn check_string(plan: &str, field: &str, value: &str, chars: Chars) -> Result<(), AllocationError> {
    let invalid = |problem: String| AllocationError::Invalid {
        plan: shown(plan),
        field: field.to_string(),
        problem,
    };
    if value.is_empty() {
        return Err(invalid("is empty".into()));
    }
    if value.len() > MAX_STRING_BYTES {
        return Err(invalid(format!(
            "is {} bytes, at most {MAX_STRING_BYTES} are allowed",
            value.len()
        )));
    }
    let ok = match chars {
        Chars::Id => value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':')),
        Chars::Address => value.bytes().all(|b| b.is_ascii_graphic()),
        Chars::Name => !value.chars().any(char::is_control),
    };
    if !ok {
        let allowed = match chars {
            Chars::Id => "ASCII letters, digits, '.', '_', '-' and ':'",
            Chars::Address => "printable ASCII without spaces",
            Chars::Name => "any characters but control characters",
        };
        return Err(invalid(format!("{value:?} is not allowed: use {allowed}")));
    }
    Ok(())
}

/// Validates a document; returns each group's figures.
fn validate(doc: &PlanDocument) -> Result<Vec<GroupSummary>, AllocationError> {
    let plan = doc.plan_id.as_str();
    check_string(plan, "plan_id", plan, Chars::Id)?;
    let plan = plan.to_string();
    let invalid = |field: String, problem: String| AllocationError::Invalid {
        plan: plan.clone(),
        field,
        problem,
    };
    if doc.version == 0 {
        return Err(invalid(
            "version".into(),
            "is 0, versions start at 1".into(),
        ));
    }
    check_string(&plan, "token.chain", &doc.token.chain, Chars::Id)?;
    check_string(&plan, "token.asset", &doc.token.asset, Chars::Id)?;
    if let Some(c) = &doc.token.contract {
        check_string(&plan, "token.contract", c, Chars::Address)?;
    }
    if doc.token.decimals > MAX_DECIMALS {
        return Err(invalid(
            "token.decimals".into(),
            format!(
                "is {}, at most {MAX_DECIMALS} are allowed",
                doc.token.decimals
            ),
        ));
    }
    if doc.total == 0 {
        return Err(AllocationError::Zero {
            plan,
            field: "total".into(),
        });
    }
    if doc.groups.len() > MAX_GROUPS {
        return Err(AllocationError::TooMany {
            plan,
            what: "groups",
            count: doc.groups.len(),
            limit: MAX_GROUPS,
        });
    }
    let count: usize = doc.groups.iter().map(|g| g.beneficiaries.len()).sum();
    if count > MAX_BENEFICIARIES {
        return Err(AllocationError::TooMany {
            plan,
            what: "beneficiaries",
            count,
            limit: MAX_BENEFICIARIES,
        });
    }

    let mut names = HashSet::new();
    let mut ids = HashSet::new();
    for (gi, g) in doc.groups.iter().enumerate() {
        let gpath = if names.contains(g.name.as_str()) || g.name.len() > MAX_STRING_BYTES {
            format!("groups[{gi}]")
        } else {
            format!("groups[{:?}]", g.name)
        };
        check_string(&plan, &format!("{gpath}.name"), &g.name, Chars::Name)?;
        if !names.insert(g.name.as_str()) {
            return Err(AllocationError::Duplicate {
                plan,
                field: format!("{gpath}.name"),
                what: "group name",
                value: shown(&g.name),
            });
        }
        if g.share_bps == 0 {
            return Err(AllocationError::Zero {
                plan,
                field: format!("{gpath}.share_bps"),
            });
        }
        for (bi, b) in g.beneficiaries.iter().enumerate() {
            let bpath = if ids.contains(b.id.as_str()) || b.id.len() > MAX_STRING_BYTES {
                format!("{gpath}.beneficiaries[{bi}]")
            } else {
                format!("{gpath}.beneficiaries[{:?}]", b.id)
            };
            check_string(&plan, &format!("{bpath}.id"), &b.id, Chars::Id)?;
            if !ids.insert(b.id.as_str()) {
                return Err(AllocationError::Duplicate {
                    plan,
                    field: format!("{bpath}.id"),
                    what: "beneficiary id",
                    value: shown(&b.id),
                });
            }
            check_beneficiary(&plan, &bpath, b)?;
        }
    }

    let sum: u64 = doc.groups.iter().map(|g| u64::from(g.share_bps)).sum();
    if sum != u64::from(TOTAL_BPS) {
        return Err(AllocationError::SharesNotWhole { plan, sum });
    }

    let mut summaries = Vec::with_capacity(doc.groups.len());
    for g in &doc.groups {
        let amount = match mul_div_exact(doc.total, u128::from(g.share_bps), u128::from(TOTAL_BPS))
        {
            Some(a) => a,
            None => {
                return Err(AllocationError::InexactGroupAmount {
                    plan,
                    group: shown(&g.name),
                    share_bps: g.share_bps,
                    total: doc.total,
                })
            }
        };
        let mut allocated = 0u128;
        for b in &g.beneficiaries {
            allocated = match allocated.checked_add(b.amount) {
                Some(s) => s,
                None => {
                    return Err(AllocationError::Overflow {
                        plan,
                        field: format!("groups[{:?}].beneficiaries", shown(&g.name)),
                        detail: "the sum of the amounts".into(),
                    })
                }
            };
        }
        if allocated > amount {
            return Err(AllocationError::OverAllocated {
                plan,
                group: shown(&g.name),
                share_bps: g.share_bps,
                amount,
                allocated,
            });
        }
        summaries.push(GroupSummary {
            name: g.name.clone(),
            share_bps: g.share_bps,
            amount,
            allocated,
            unallocated: amount - allocated,
            beneficiaries: g.beneficiaries.len(),
        });
    }
    Ok(summaries)
}

fn check_beneficiary(plan: &str, bpath: &str, b: &Beneficiary) -> Result<(), AllocationError> {
    let plan = plan.to_string();
    check_string(
        &plan,
        &format!("{bpath}.address"),
        &b.address,
        Chars::Address,
    )?;
    if b.amount == 0 {
        return Err(AllocationError::Zero {
            plan,
            field: format!("{bpath}.amount"),
        });
    }
    if b.duration_secs == 0 {
        return Err(AllocationError::ZeroDuration {
            plan,
            field: bpath.to_string(),
        });
    }
    if b.cliff_secs > b.duration_secs {
        return Err(AllocationError::CliffAfterEnd {
            plan,
            field: bpath.to_string(),
            cliff_secs: b.cliff_secs,
            duration_secs: b.duration_secs,
        });
    }
    if b.duration_secs > MAX_DURATION_SECS {
        return Err(AllocationError::Invalid {
            plan,
            field: format!("{bpath}.duration_secs"),
            problem: format!(
                "is {} seconds, at most {MAX_DURATION_SECS} (100 years) are allowed",
                b.duration_secs
            ),
        });
    }
    let Some(end) = b.start.checked_add(b.duration_secs) else {
        return Err(AllocationError::Overflow {
            plan,
            field: bpath.to_string(),
            detail: format!("start {} + duration_secs {}", b.start, b.duration_secs),
        });
    };
    if end > MAX_TIME {
        return Err(AllocationError::Invalid {
            plan,
            field: format!("{bpath}.start"),
            problem: format!(
                "the release ends at unix {end}, after 9999-12-31T23:59:59Z (unix {MAX_TIME}), the latest allowed"
            ),
        });
    }
    Ok(())
}

/// `u128` widened to 256 bits.
fn wide(x: u128) -> U256 {
    U256::from_limbs([x as u64, (x >> 64) as u64, 0, 0])
}

/// A 256-bit value narrowed to `u128`, if it fits.
fn narrow(x: U256) -> Option<u128> {
    let l = x.as_limbs();
    if l[2] != 0 || l[3] != 0 {
        return None;
    }
    Some(u128::from(l[0]) | (u128::from(l[1]) << 64))
}

/// `floor(a * b / d)`, exact, or `None` if `d` is 0 or the result does not
/// fit in a `u128`.
fn mul_div_floor(a: u128, b: u128, d: u128) -> Option<u128> {
    if d == 0 {
        return None;
    }
    if let Some(p) = a.checked_mul(b) {
        return Some(p / d);
    }
    narrow(wide(a).checked_mul(wide(b))?.checked_div(wide(d))?)
}

/// `a * b / d` if it is a whole number that fits in a `u128`.
fn mul_div_exact(a: u128, b: u128, d: u128) -> Option<u128> {
    if d == 0 {
        return None;
    }
    let p = wide(a).checked_mul(wide(b))?;
    if p.checked_rem(wide(d))? != U256::ZERO {
        return None;
    }
    narrow(p.checked_div(wide(d))?)
}

/// The amount vested at `now` of `amount` released linearly from `start` to
/// `start + duration_secs`, with nothing before `start + cliff_secs`, and
/// frozen at `revoked_at` if set: `vested(t) = vested(min(t, revoked_at))`.
///
/// 0 before the cliff's end; `amount` at and after the end (and for a
/// duration of 0 once the cliff ended); otherwise
/// `floor(amount * (now - start) / duration_secs)`, computed exactly for any
/// `u128` amount. Without revocation this is the same rule as the policy
/// engine's single-beneficiary `vested_amount`, on every input.
pub fn vested(
    amount: u128,
    start: u64,
    cliff_secs: u64,
    duration_secs: u64,
    revoked_at: Option<u64>,
    now: u64,
) -> u128 {
    let now = match revoked_at {
        Some(r) => now.min(r),
        None => now,
    };
    if now < start.saturating_add(cliff_secs) {
        return 0;
    }
    let elapsed = now.saturating_sub(start);
    if duration_secs == 0 || elapsed >= duration_secs {
        return amount;
    }
    // elapsed < duration, so the result is below amount and always fits.
    mul_div_floor(amount, u128::from(elapsed), u128::from(duration_secs)).unwrap_or(amount)
}

/// What `beneficiary` may still claim at `now` after `claimed_so_far`:
/// vested minus claimed, never below 0.
pub fn claimable(beneficiary: &Beneficiary, claimed_so_far: u128, now: u64) -> u128 {
    beneficiary.vested(now).saturating_sub(claimed_so_far)
}

/// Why a claim is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// No beneficiary has this id in the plan.
    #[error("plan {plan:?} version {version}: no beneficiary {beneficiary:?}")]
    UnknownBeneficiary {
        /// The plan's id.
        plan: String,
        /// The plan's version.
        version: u64,
        /// The id claimed for.
        beneficiary: String,
    },
    /// A claim of 0.
    #[error("plan {plan:?}: beneficiary {beneficiary:?}: a claim must be greater than 0")]
    ZeroClaim {
        /// The plan's id.
        plan: String,
        /// The beneficiary's id.
        beneficiary: String,
    },
    /// Nothing is claimable before the cliff ends.
    #[error(
        "plan {plan:?}: beneficiary {beneficiary:?}: nothing is claimable before the cliff (cliff ends at {}, unix {cliff_end})",
        format_time(*cliff_end)
    )]
    BeforeCliff {
        /// The plan's id.
        plan: String,
        /// The beneficiary's id.
        beneficiary: String,
        /// When the cliff ends (Unix seconds).
        cliff_end: u64,
    },
    /// The claim is larger than vested minus claimed.
    #[error(
        "plan {plan:?}: beneficiary {beneficiary:?}: claim of {requested} is above the available {available} (vested {vested}, claimed {claimed}{})",
        revoked_note(*revoked_at)
    )]
    AboveAvailable {
        /// The plan's id.
        plan: String,
        /// The beneficiary's id.
        beneficiary: String,
        /// The amount claimed.
        requested: u128,
        /// The amount vested at the claim's time.
        vested: u128,
        /// The amount claimed before.
        claimed: u128,
        /// `vested - claimed` (0 if claimed exceeds vested).
        available: u128,
        /// When the allocation was revoked, if it was.
        revoked_at: Option<u64>,
    },
}

fn revoked_note(revoked_at: Option<u64>) -> String {
    match revoked_at {
        Some(r) => format!("; revoked at {}, vesting stopped then", format_time(r)),
        None => String::new(),
    }
}

/// Checks a claim of `amount` base units by `beneficiary_id` at `now`, who
/// claimed `claimed_so_far` before: refused before the cliff, for an
/// unknown beneficiary, for 0, or above vested minus claimed. The payout
/// goes to the beneficiary's registered address
/// ([`Plan::beneficiary`]).
// A refusal carries the vested, claimed and available amounts by value so
// that callers act on them without parsing text (about 130 bytes); a claim
// check is rare, so the size is accepted rather than boxing the numbers.
#[allow(clippy::result_large_err)]
pub fn check_claim(
    plan: &Plan,
    beneficiary_id: &str,
    amount: u128,
    claimed_so_far: u128,
    now: u64,
) -> Result<(), ClaimError> {
    let Some((_, b)) = plan.beneficiary(beneficiary_id) else {
        return Err(ClaimError::UnknownBeneficiary {
            plan: plan.plan_id().to_string(),
            version: plan.version(),
            beneficiary: shown(beneficiary_id),
        });
    };
    if now < b.cliff_end() {
        return Err(ClaimError::BeforeCliff {
            plan: plan.plan_id().to_string(),
            beneficiary: b.id.clone(),
            cliff_end: b.cliff_end(),
        });
    }
    if amount == 0 {
        return Err(ClaimError::ZeroClaim {
            plan: plan.plan_id().to_string(),
            beneficiary: b.id.clone(),
        });
    }
    let vested = b.vested(now);
    let available = vested.saturating_sub(claimed_so_far);
    if amount > available {
        return Err(ClaimError::AboveAvailable {
            plan: plan.plan_id().to_string(),
            beneficiary: b.id.clone(),
            requested: amount,
            vested,
            claimed: claimed_so_far,
            available,
            revoked_at: b.revoked_at,
        });
    }
    Ok(())
}

/// Which times a schedule samples, besides the start, the cliff (and the
/// second before it), the revocation and the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// The first of each month, 00:00 UTC (every k-th month if there would
    /// be more than [`MAX_SCHEDULE_POINTS`]).
    Monthly,
    /// This many evenly spaced points from start to end (2 to
    /// [`MAX_SCHEDULE_POINTS`]).
    Points(u32),
}

/// The cumulative amount released at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleasePoint {
    /// Unix seconds.
    pub time: u64,
    /// Base units released (vested) at `time`, in total.
    pub released: u128,
}

/// A group's cumulative release over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSchedule {
    /// The group's name.
    pub group: String,
    /// The group's amount (allocated or not).
    pub amount: u128,
    /// The sum of its beneficiaries' vested amounts, by time, ascending.
    pub rows: Vec<ReleasePoint>,
}

/// A beneficiary's cumulative release over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeneficiarySchedule {
    /// The beneficiary's group.
    pub group: String,
    /// The beneficiary's id.
    pub id: String,
    /// Its amount.
    pub amount: u128,
    /// Its vested amount, by time, ascending.
    pub rows: Vec<ReleasePoint>,
}

/// The release of a whole plan: per group and per beneficiary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleView {
    /// One per group, in document order.
    pub groups: Vec<GroupSchedule>,
    /// One per beneficiary, in document order.
    pub beneficiaries: Vec<BeneficiarySchedule>,
}

/// The month index (`year * 12 + month0`) of a time, if representable.
fn month_index(t: u64) -> Option<i64> {
    let dt = DateTime::from_timestamp(i64::try_from(t).ok()?, 0)?;
    Some(i64::from(dt.year()) * 12 + i64::from(dt.month0()))
}

/// The first second of a month index, if representable.
fn month_start(index: i64) -> Option<u64> {
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
    let d = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?;
    u64::try_from(d.and_utc().timestamp()).ok()
}

/// `n` evenly spaced times from `a` to `b` (both included).
fn even_points(a: u64, b: u64, n: u32) -> Vec<u64> {
    let n = n.clamp(2, MAX_SCHEDULE_POINTS);
    let span = u128::from(b.saturating_sub(a));
    let last = u128::from(n - 1);
    (0..n)
        .map(|i| {
            let off = span * u128::from(i) / last;
            a.saturating_add(u64::try_from(off).unwrap_or(u64::MAX))
        })
        .collect()
}

/// The sampled times from `a` to `b` (both included).
fn sample_times(a: u64, b: u64, sampling: Sampling) -> Vec<u64> {
    match sampling {
        Sampling::Points(n) => even_points(a, b, n),
        Sampling::Monthly => {
            let (Some(ma), Some(mb)) = (month_index(a), month_index(b)) else {
                return even_points(a, b, FALLBACK_POINTS);
            };
            let count = mb.saturating_sub(ma).max(0);
            let limit = i64::from(MAX_SCHEDULE_POINTS);
            let step = ((count + limit - 1) / limit).max(1);
            let mut out = vec![a];
            let mut m = ma.saturating_add(1);
            while m <= mb {
                if let Some(t) = month_start(m) {
                    if t > a && t < b {
                        out.push(t);
                    }
                }
                m = m.saturating_add(step);
            }
            out.push(b);
            out
        }
    }
}

/// The times where a beneficiary's release changes shape.
fn key_times(b: &Beneficiary) -> impl Iterator<Item = u64> {
    let (start, end, cliff) = (b.start, b.end(), b.cliff_end());
    let before_cliff = (b.cliff_secs > 0).then(|| cliff.saturating_sub(1));
    [
        Some(start),
        before_cliff,
        Some(cliff),
        Some(end),
        b.revoked_at,
    ]
    .into_iter()
    .flatten()
    .filter(move |t| *t >= start && *t <= end)
}

/// A beneficiary's cumulative release: at its start, at its cliff (and the
/// second before, so that the step shows), at the sampled times, at its
/// revocation and at its end.
pub fn beneficiary_rows(b: &Beneficiary, sampling: Sampling) -> Vec<ReleasePoint> {
    let mut times: BTreeSet<u64> = key_times(b).collect();
    times.extend(sample_times(b.start, b.end(), sampling));
    times
        .into_iter()
        .map(|time| ReleasePoint {
            time,
            released: b.vested(time),
        })
        .collect()
}

/// A group's cumulative release: the sum of its beneficiaries' vested
/// amounts at the sampled times over the group's span and at each
/// beneficiary's start, cliff, revocation and end (those are left out
/// beyond [`MAX_SCHEDULE_POINTS`] of them). Empty without beneficiaries.
pub fn group_rows(group: &Group, sampling: Sampling) -> Vec<ReleasePoint> {
    let bs = &group.beneficiaries;
    let (Some(first), Some(last)) = (
        bs.iter().map(|b| b.start).min(),
        bs.iter().map(Beneficiary::end).max(),
    ) else {
        return Vec::new();
    };
    let mut times: BTreeSet<u64> = sample_times(first, last, sampling).into_iter().collect();
    let keys: BTreeSet<u64> = bs.iter().flat_map(key_times).collect();
    if keys.len() <= MAX_SCHEDULE_POINTS as usize {
        times.extend(keys);
    }
    times
        .into_iter()
        .map(|time| ReleasePoint {
            time,
            released: bs
                .iter()
                .fold(0u128, |s, b| s.saturating_add(b.vested(time))),
        })
        .collect()
}

/// The release of every group and every beneficiary of a plan.
pub fn schedule_view(plan: &Plan, sampling: Sampling) -> ScheduleView {
    let groups = plan
        .groups()
        .iter()
        .zip(plan.summaries())
        .map(|(g, s)| GroupSchedule {
            group: g.name.clone(),
            amount: s.amount,
            rows: group_rows(g, sampling),
        })
        .collect();
    let beneficiaries = plan
        .groups()
        .iter()
        .flat_map(|g| {
            g.beneficiaries.iter().map(move |b| BeneficiarySchedule {
                group: g.name.clone(),
                id: b.id.clone(),
                amount: b.amount,
                rows: beneficiary_rows(b, sampling),
            })
        })
        .collect();
    ScheduleView {
        groups,
        beneficiaries,
    }
}

/// `amount` base units as a decimal number of tokens: `1500000000000000000`
/// with 18 decimals is `1.5`; trailing zeros of the fraction are dropped.
pub fn format_units(amount: u128, decimals: u8) -> String {
    let digits = amount.to_string();
    let d = usize::from(decimals);
    if d == 0 {
        return digits;
    }
    let padded = if digits.len() <= d {
        format!("{}{digits}", "0".repeat(d + 1 - digits.len()))
    } else {
        digits
    };
    let (int, frac) = padded.split_at(padded.len() - d);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    }
}

/// A Unix time in UTC: `2027-01-01` at midnight, `2027-01-01T12:30:00Z`
/// otherwise, `unix N` beyond the calendar's range.
pub fn format_time(t: u64) -> String {
    let Some(dt) = i64::try_from(t)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
    else {
        return format!("unix {t}");
    };
    if dt.num_seconds_from_midnight() == 0 {
        dt.format("%Y-%m-%d").to_string()
    } else {
        dt.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// Basis points as a percentage: `2000` is `20.00%`.
pub fn format_bps(bps: u32) -> String {
    format!("{}.{:02}%", bps / 100, bps % 100)
}

/// Text escaped for SVG/XML content and attribute values.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate in tenths of a pixel, printed as `12.3`.
fn px(tenths: u128) -> String {
    format!("{}.{}", tenths / 10, tenths % 10)
}

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The y axis: (tick step, top of the axis), both in basis points of the
/// total.
fn y_scale(max_share: u32) -> (u32, u32) {
    let max_share = max_share.clamp(1, TOTAL_BPS);
    for step in [100u32, 200, 500, 1000, 2000, 2500] {
        let top = max_share.div_ceil(step) * step;
        if top / step <= 8 {
            return (step, top.min(TOTAL_BPS));
        }
    }
    (2500, TOTAL_BPS)
}

/// An SVG line chart of the cumulative release per group: one polyline per
/// group (`data-group` names it), time on the x axis (labels `YYYY-MM`),
/// the percentage of the plan's total on the y axis, and a legend with
/// each group's name and share. Hand-written, deterministic text; `width`
/// and `height` (pixels) are clamped to 320..=4096 and 200..=4096.
pub fn render_svg(plan: &Plan, width: u32, height: u32) -> String {
    let (w, h) = (width.clamp(320, 4096), height.clamp(200, 4096));
    let (left, right, top, bottom) = (64u32, 200u32, 40u32, 48u32);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let (t0, t1) = plan.span().unwrap_or((0, 1));
    let span = u128::from(t1.saturating_sub(t0).max(1));
    let max_share = plan.groups().iter().map(|g| g.share_bps).max().unwrap_or(1);
    let (ystep, ymax) = y_scale(max_share);
    let total = plan.total().max(1);

    let x = |t: u64| -> u128 {
        let off = u128::from(t.saturating_sub(t0)).min(span);
        u128::from(left) * 10 + off * u128::from(pw) * 10 / span
    };
    let base = u128::from(top + ph) * 10;
    // released / total as a fraction of ymax bps, in tenths of a pixel.
    let y = |released: u128| -> u128 {
        let num = wide(released)
            .checked_mul(wide(u128::from(ph) * 10 * u128::from(TOTAL_BPS)))
            .unwrap_or(U256::MAX);
        let den = wide(total)
            .checked_mul(wide(u128::from(ymax)))
            .unwrap_or(U256::MAX);
        let h10 = num
            .checked_div(den)
            .and_then(narrow)
            .unwrap_or(u128::MAX)
            .min(u128::from(ph) * 10);
        base - h10
    };

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>"##
    );
    let token = plan.token();
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="14">{} v{}: cumulative release per group, % of the total {} {}</text>"#,
        xml_escape(plan.plan_id()),
        plan.version(),
        format_units(plan.total(), token.decimals),
        xml_escape(&token.asset)
    );

    // Y grid and labels.
    let mut bps = 0u32;
    while bps <= ymax {
        let yy = base - u128::from(ph) * 10 * u128::from(bps) / u128::from(ymax.max(1));
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#e0e0e0"/>"##,
            px(yy),
            left + pw,
            px(yy)
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}%</text>"#,
            left - 6,
            px(yy + 40),
            bps / 100
        );
        bps += ystep;
    }

    // X ticks at month boundaries, every `step` months.
    if let (Some(m0), Some(m1)) = (month_index(t0), month_index(t1)) {
        let months = (m1 - m0).max(1);
        let max_ticks = i64::from((pw / 80).max(2));
        let step = [1i64, 2, 3, 6, 12, 24, 60, 120, 240, 600, 1200, 6000, 12000]
            .into_iter()
            .find(|st| months / st <= max_ticks)
            .unwrap_or(months);
        let mut m = m0.div_euclid(step) * step;
        let mut drawn = 0;
        while m <= m1 && drawn < 200 {
            if let Some(t) = month_start(m).filter(|t| *t >= t0 && *t <= t1) {
                let xx = x(t);
                let label = DateTime::from_timestamp(i64::try_from(t).unwrap_or(0), 0)
                    .map(|d| d.format("%Y-%m").to_string())
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    r##"<line x1="{}" y1="{top}" x2="{}" y2="{}" stroke="#e0e0e0"/>"##,
                    px(xx),
                    px(xx),
                    top + ph
                );
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#,
                    px(xx),
                    top + ph + 18
                );
                drawn += 1;
            }
            m = m.saturating_add(step);
        }
    }

    // Axes.
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="#000000"/>"##,
        top + ph
    );
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="#000000"/>"##,
        top + ph,
        left + pw,
        top + ph
    );

    // One polyline per group, over the whole plan's span.
    for (i, g) in plan.groups().iter().enumerate() {
        let rows = group_rows(g, Sampling::Monthly);
        let mut pts: Vec<(u64, u128)> = Vec::with_capacity(rows.len() + 2);
        if rows.first().is_none_or(|r| r.time > t0) {
            pts.push((t0, 0));
        }
        pts.extend(rows.iter().map(|r| (r.time, r.released)));
        let last = pts.last().map(|p| p.1).unwrap_or(0);
        if pts.last().is_none_or(|p| p.0 < t1) {
            pts.push((t1, last));
        }
        let points: Vec<String> = pts
            .iter()
            .map(|(t, r)| format!("{},{}", px(x(*t)), px(y(*r))))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline data-group="{}" fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            xml_escape(&g.name),
            PALETTE[i % PALETTE.len()],
            points.join(" ")
        );
    }

    // Legend.
    let lx = left + pw + 16;
    for (i, g) in plan.groups().iter().enumerate() {
        let ly = top + 10 + 18 * i as u32;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="3"/>"#,
            lx + 20,
            PALETTE[i % PALETTE.len()]
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{} ({})</text>"#,
            lx + 26,
            ly + 4,
            xml_escape(&g.name),
            format_bps(g.share_bps)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Serde for `u128` amounts as decimal strings (never numbers, never floats).
mod decimal {
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    struct DecimalVisitor;

    impl Visitor<'_> for DecimalVisitor {
        type Value = u128;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an amount in base units as a decimal string, e.g. \"1000000\"")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<u128, E> {
            if v.is_empty() || v.len() > 39 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!(
                    "invalid amount {:?}: base units as a decimal string of 1 to 39 digits",
                    v.chars().take(64).collect::<String>()
                )));
            }
            v.parse()
                .map_err(|_| E::custom(format!("amount {v:?} does not fit in 128 bits")))
        }
    }

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        d.deserialize_str(DecimalVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const START: u64 = 1_798_761_600; // 2027-01-01
    const YEAR: u64 = 31_536_000;
    const E18: u128 = 1_000_000_000_000_000_000;

    /// A small valid plan: total 1000 tokens of 18 decimals.
    fn plan_toml() -> String {
        format!(
            r#"
plan_id = "test-plan"
version = 1
total = "{total}"

[token]
chain = "devnet-l2"
asset = "KFT"
contract = "0x00000000000000000000000000000000000000aa"
decimals = 18

[[groups]]
name = "team"
share_bps = 6000

[[groups.beneficiaries]]
id = "alice"
address = "0x00000000000000000000000000000000000000a1"
amount = "{alice}"
start = {START}
cliff_secs = {YEAR}
duration_secs = {four}

[[groups.beneficiaries]]
id = "bob"
address = "0x00000000000000000000000000000000000000b0"
amount = "{bob}"
start = {START}
cliff_secs = 0
duration_secs = {YEAR}

[[groups]]
name = "ecosystem"
share_bps = 4000

[[groups.beneficiaries]]
id = "grants"
address = "0x00000000000000000000000000000000000000e0"
amount = "{grants}"
start = {START}
cliff_secs = 0
duration_secs = {YEAR}
"#,
            total = 1000 * E18,
            alice = 400 * E18,
            bob = 200 * E18,
            grants = 300 * E18,
            four = 4 * YEAR,
        )
    }

    fn plan() -> Plan {
        match Plan::from_toml(&plan_toml()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    fn doc() -> PlanDocument {
        plan().document().clone()
    }

    fn refused(doc: PlanDocument) -> AllocationError {
        match Plan::from_document(doc) {
            Ok(_) => panic!("plan accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn allocation_valid_plan_and_summaries() {
        let p = plan();
        assert_eq!(p.plan_id(), "test-plan");
        let s = p.summaries();
        assert_eq!(s[0].amount, 600 * E18);
        assert_eq!(s[0].allocated, 600 * E18);
        assert_eq!(s[0].unallocated, 0);
        assert_eq!(s[1].amount, 400 * E18);
        assert_eq!(s[1].allocated, 300 * E18);
        assert_eq!(s[1].unallocated, 100 * E18);
        assert_eq!(p.unallocated(), 100 * E18);
        assert_eq!(p.span(), Some((START, START + 4 * YEAR)));
        let (g, b) = p.beneficiary("bob").unwrap_or_else(|| panic!("bob"));
        assert_eq!((g.name.as_str(), b.amount), ("team", 200 * E18));
    }

    #[test]
    fn allocation_json_round_trip_and_digest() {
        let p = plan();
        let json = serde_json::to_string(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            json.contains(r#""total":"1000000000000000000000""#),
            "{json}"
        );
        let q = Plan::from_json(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p, q);
        assert_eq!(p.digest(), q.digest());
        // A plan deserialized directly is validated too.
        let bad = json.replace(r#""share_bps":4000"#, r#""share_bps":3000"#);
        assert!(serde_json::from_str::<Plan>(&bad).is_err());

        // Any change changes the digest.
        let mut d = doc();
        d.version = 2;
        assert_ne!(
            Plan::from_document(d.clone()).map(|p| p.digest()),
            Ok(p.digest())
        );
        let mut r = doc();
        r.groups[0].beneficiaries[0].revoked_at = Some(START + YEAR);
        let rp = Plan::from_document(r).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(rp.digest(), p.digest());
        let mut c = doc();
        c.token.contract = None;
        let cp = Plan::from_document(c).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(cp.digest(), p.digest());
        // Layout and comments do not.
        let spaced = format!("# a comment\n{}", plan_toml().replace(" = ", "   =   "));
        let sp = Plan::from_toml(&spaced).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sp.digest(), p.digest());
    }

    #[test]
    fn allocation_vested_points() {
        let a = 400 * E18;
        let (c, d) = (YEAR, 4 * YEAR);
        assert_eq!(vested(a, START, c, d, None, 0), 0);
        assert_eq!(vested(a, START, c, d, None, START + c - 1), 0);
        assert_eq!(vested(a, START, c, d, None, START + c), 100 * E18);
        assert_eq!(vested(a, START, c, d, None, START + 2 * YEAR), 200 * E18);
        assert_eq!(vested(a, START, c, d, None, START + d), a);
        assert_eq!(vested(a, START, c, d, None, u64::MAX), a);
        // floor(7 * 1 / 3) = 2.
        assert_eq!(vested(7, 0, 0, 3, None, 1), 2);
        // The largest amount, no overflow, exact.
        assert_eq!(vested(u128::MAX, 0, 0, 2, None, 1), u128::MAX / 2);
        assert_eq!(
            vested(u128::MAX, 0, 0, u64::MAX, None, u64::MAX / 2),
            reference(u128::MAX, u64::MAX / 2, u64::MAX)
        );
        assert_eq!(vested(u128::MAX, 0, 0, 3, None, 2), u128::MAX / 3 * 2);
    }

    #[test]
    fn allocation_revocation_freezes_vesting() {
        let r = START + 2 * YEAR;
        let a = 400 * E18;
        let at_r = vested(a, START, YEAR, 4 * YEAR, Some(r), r);
        assert_eq!(at_r, 200 * E18);
        assert_eq!(
            vested(a, START, YEAR, 4 * YEAR, Some(r), START + 4 * YEAR),
            at_r
        );
        assert_eq!(
            vested(a, START, YEAR, 4 * YEAR, Some(r), START + YEAR),
            100 * E18
        );
        // Revoked before the cliff: nothing ever vests.
        let early = Some(START + YEAR / 2);
        assert_eq!(vested(a, START, YEAR, 4 * YEAR, early, u64::MAX), 0);
    }

    #[test]
    fn allocation_claims() {
        let p = plan();
        let at = START + 2 * YEAR; // alice: 200 vested
        assert_eq!(check_claim(&p, "alice", 150 * E18, 50 * E18, at), Ok(()));
        assert_eq!(check_claim(&p, "alice", 150 * E18, 0, at), Ok(()));
        let e = check_claim(&p, "alice", 151 * E18, 50 * E18, at);
        assert_eq!(
            e,
            Err(ClaimError::AboveAvailable {
                plan: "test-plan".into(),
                beneficiary: "alice".into(),
                requested: 151 * E18,
                vested: 200 * E18,
                claimed: 50 * E18,
                available: 150 * E18,
                revoked_at: None,
            })
        );
        let msg = e.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(msg.contains("vested 200000000000000000000"), "{msg}");
        assert!(msg.contains("claimed 50000000000000000000"), "{msg}");
        assert!(msg.contains("available 150000000000000000000"), "{msg}");

        let e = check_claim(&p, "alice", 1, 0, START + 10);
        assert!(
            matches!(e, Err(ClaimError::BeforeCliff { cliff_end, .. }) if cliff_end == START + YEAR)
        );
        let msg = e.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(msg.contains("cliff ends at 2028-01-01"), "{msg}");

        assert!(matches!(
            check_claim(&p, "mallory", 1, 0, at),
            Err(ClaimError::UnknownBeneficiary { .. })
        ));
        assert!(matches!(
            check_claim(&p, "alice", 0, 0, at),
            Err(ClaimError::ZeroClaim { .. })
        ));
        // Claimed more than vested (never happens, but never underflows).
        let e = check_claim(&p, "alice", 1, 300 * E18, at);
        assert!(matches!(
            e,
            Err(ClaimError::AboveAvailable { available: 0, .. })
        ));

        let b = &p.groups()[0].beneficiaries[0];
        assert_eq!(claimable(b, 50 * E18, at), 150 * E18);
        assert_eq!(claimable(b, 500 * E18, at), 0);

        // After a revocation, the claim is bounded by the frozen amount.
        let mut d = doc();
        d.version = 2;
        d.groups[0].beneficiaries[0].revoked_at = Some(START + 2 * YEAR);
        let rp = Plan::from_document(d).unwrap_or_else(|e| panic!("{e}"));
        let late = START + 4 * YEAR;
        assert_eq!(check_claim(&rp, "alice", 200 * E18, 0, late), Ok(()));
        let e = check_claim(&rp, "alice", 200 * E18 + 1, 0, late);
        let msg = e.map_err(|e| e.to_string()).err().unwrap_or_default();
        assert!(msg.contains("revoked at 2028-12-31"), "{msg}");
    }

    #[test]
    fn allocation_refuses_shares_not_adding_up() {
        let mut d = doc();
        d.groups[1].share_bps = 3000;
        let e = refused(d);
        assert_eq!(
            e,
            AllocationError::SharesNotWhole {
                plan: "test-plan".into(),
                sum: 9000
            }
        );
        assert!(e.to_string().contains("add up to 9000"), "{e}");
    }

    #[test]
    fn allocation_refuses_inexact_group_amount() {
        let mut d = doc();
        d.total = 1_001; // 60% of 1001 is 600.6
        for g in &mut d.groups {
            g.beneficiaries.clear();
        }
        let e = refused(d);
        assert!(
            matches!(&e, AllocationError::InexactGroupAmount { group, share_bps: 6000, .. } if group == "team"),
            "{e}"
        );
        assert!(e.to_string().contains("groups[\"team\"].share_bps"), "{e}");
    }

    #[test]
    fn allocation_refuses_over_allocation() {
        let mut d = doc();
        d.groups[1].beneficiaries[0].amount = 400 * E18 + 1;
        assert!(matches!(
            refused(d),
            AllocationError::OverAllocated { group, allocated, amount, .. }
                if group == "ecosystem" && allocated == 400 * E18 + 1 && amount == 400 * E18
        ));
        // Exactly the group's amount is fine.
        let mut d = doc();
        d.groups[1].beneficiaries[0].amount = 400 * E18;
        assert!(Plan::from_document(d).is_ok());
    }

    #[test]
    fn allocation_refuses_duplicates() {
        let mut d = doc();
        d.groups[1].name = "team".into();
        let e = refused(d);
        assert!(
            matches!(&e, AllocationError::Duplicate { what: "group name", value, .. } if value == "team"),
            "{e}"
        );
        let mut d = doc();
        d.groups[1].beneficiaries[0].id = "alice".into();
        let e = refused(d);
        assert!(
            matches!(&e, AllocationError::Duplicate { what: "beneficiary id", value, field, .. }
                if value == "alice" && field.starts_with("groups[\"ecosystem\"]")),
            "{e}"
        );
    }

    #[test]
    fn allocation_refuses_zeros() {
        let mut d = doc();
        d.groups[0].beneficiaries[1].amount = 0;
        let e = refused(d);
        assert_eq!(
            e.to_string(),
            "plan \"test-plan\": groups[\"team\"].beneficiaries[\"bob\"].amount: must be greater than 0"
        );
        let mut d = doc();
        d.total = 0;
        assert!(matches!(refused(d), AllocationError::Zero { field, .. } if field == "total"));
        let mut d = doc();
        d.groups[0].share_bps = 0;
        d.groups[1].share_bps = 10_000;
        assert!(
            matches!(refused(d), AllocationError::Zero { field, .. } if field == "groups[\"team\"].share_bps")
        );
    }

    #[test]
    fn allocation_refuses_bad_durations() {
        let mut d = doc();
        d.groups[0].beneficiaries[0].cliff_secs = 4 * YEAR + 1;
        let e = refused(d);
        assert!(matches!(e, AllocationError::CliffAfterEnd { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("beneficiaries[\"alice\"]: cliff_secs"),
            "{e}"
        );
        let mut d = doc();
        d.groups[0].beneficiaries[1].duration_secs = 0;
        let e = refused(d);
        assert!(matches!(e, AllocationError::ZeroDuration { .. }), "{e}");
        let mut d = doc();
        d.groups[0].beneficiaries[1].duration_secs = MAX_DURATION_SECS + 1;
        let e = refused(d);
        assert!(e.to_string().contains("duration_secs: is"), "{e}");
        let mut d = doc();
        d.groups[0].beneficiaries[1].start = MAX_TIME;
        let e = refused(d);
        assert!(e.to_string().contains("after 9999-12-31"), "{e}");
    }

    #[test]
    fn allocation_refuses_overflow() {
        let mut d = doc();
        d.groups[0].beneficiaries[1].start = u64::MAX - 10;
        let e = refused(d);
        assert!(matches!(e, AllocationError::Overflow { .. }), "{e}");
        let mut d = doc();
        d.total = u128::MAX - u128::MAX % 10_000;
        d.groups[0].beneficiaries[0].amount = u128::MAX / 2;
        d.groups[0].beneficiaries[1].amount = u128::MAX / 2 + 10;
        let e = refused(d);
        assert!(matches!(e, AllocationError::Overflow { .. }), "{e}");
        assert!(
            e.to_string().contains("the sum of the amounts overflows"),
            "{e}"
        );
    }

    #[test]
    fn allocation_refuses_bad_fields() {
        let e = Plan::from_toml(&plan_toml().replace("decimals = 18", "decimals = 18\ncolour = 1"));
        assert!(
            matches!(&e, Err(AllocationError::Parse(m)) if m.contains("unknown field `colour`")),
            "{e:?}"
        );
        let e = Plan::from_toml(&plan_toml().replace(
            "duration_secs = 31536000\n",
            "duration_secs = 31536000\nvesting = 1\n",
        ));
        assert!(
            matches!(&e, Err(AllocationError::Parse(m)) if m.contains("unknown field")),
            "{e:?}"
        );
        // Amounts are decimal strings, never numbers.
        let e = Plan::from_toml(
            &plan_toml().replace("total = \"1000000000000000000000\"", "total = 1000"),
        );
        assert!(
            matches!(&e, Err(AllocationError::Parse(m)) if m.contains("decimal string")),
            "{e:?}"
        );
        let e = Plan::from_toml(
            &plan_toml().replace("total = \"1000000000000000000000\"", "total = 1000.0"),
        );
        assert!(matches!(e, Err(AllocationError::Parse(_))), "{e:?}");
        let e = Plan::from_toml(
            &plan_toml().replace("total = \"1000000000000000000000\"", "total = \"1e21\""),
        );
        assert!(
            matches!(&e, Err(AllocationError::Parse(m)) if m.contains("invalid amount")),
            "{e:?}"
        );
        let e = Plan::from_toml(
            &plan_toml().replace("total = \"1000000000000000000000\"", "total = \"-1\""),
        );
        assert!(matches!(e, Err(AllocationError::Parse(_))), "{e:?}");

        let mut d = doc();
        d.version = 0;
        assert!(refused(d).to_string().contains("version: is 0"));
        let mut d = doc();
        d.plan_id = "bad id".into();
        assert!(refused(d)
            .to_string()
            .contains("plan_id: \"bad id\" is not allowed"));
        let mut d = doc();
        d.token.decimals = 39;
        assert!(refused(d).to_string().contains("token.decimals: is 39"));
        let mut d = doc();
        d.groups[0].beneficiaries[0].address = "x".repeat(129);
        let e = refused(d).to_string();
        assert!(
            e.contains("beneficiaries[\"alice\"].address: is 129 bytes"),
            "{e}"
        );
        let mut d = doc();
        d.groups[0].beneficiaries[0].address = "0x a".into();
        assert!(refused(d)
            .to_string()
            .contains("address: \"0x a\" is not allowed"));
        let mut d = doc();
        d.groups[0].name = "te\nam".into();
        assert!(refused(d)
            .to_string()
            .contains("name: \"te\\nam\" is not allowed"));
        let mut d = doc();
        d.groups[0].name = String::new();
        assert!(refused(d).to_string().contains(".name: is empty"));
    }

    #[test]
    fn allocation_refuses_oversized_plans() {
        let big = format!("{}\n#{}", plan_toml(), "x".repeat(MAX_PLAN_BYTES));
        assert!(matches!(
            Plan::from_toml(&big),
            Err(AllocationError::TooLarge { .. })
        ));
        assert!(matches!(
            Plan::from_json(&big),
            Err(AllocationError::TooLarge { .. })
        ));
        let mut d = doc();
        d.groups = (0..65)
            .map(|i| Group {
                name: format!("g{i}"),
                share_bps: 1,
                beneficiaries: Vec::new(),
            })
            .collect();
        assert!(matches!(
            refused(d),
            AllocationError::TooMany {
                what: "groups",
                count: 65,
                ..
            }
        ));
        let mut d = doc();
        let b = d.groups[0].beneficiaries[0].clone();
        d.groups[0].beneficiaries = (0..=MAX_BENEFICIARIES)
            .map(|i| Beneficiary {
                id: format!("b{i}"),
                ..b.clone()
            })
            .collect();
        assert!(matches!(
            refused(d),
            AllocationError::TooMany {
                what: "beneficiaries",
                ..
            }
        ));
    }

    #[test]
    fn allocation_schedule_rows() {
        let p = plan();
        let alice = &p.groups()[0].beneficiaries[0];
        let rows = beneficiary_rows(alice, Sampling::Monthly);
        // 48 month boundaries from 2027-02 to 2031-01 (the end), the start
        // and the second before the cliff.
        assert_eq!(rows.len(), 50);
        assert_eq!(
            rows[0],
            ReleasePoint {
                time: START,
                released: 0
            }
        );
        assert!(rows.contains(&ReleasePoint {
            time: START + YEAR - 1,
            released: 0
        }));
        assert!(rows.contains(&ReleasePoint {
            time: START + YEAR,
            released: 100 * E18
        }));
        assert_eq!(rows.last().map(|r| r.released), Some(400 * E18));
        assert!(rows
            .windows(2)
            .all(|w| w[0].time < w[1].time && w[0].released <= w[1].released));

        let rows = beneficiary_rows(alice, Sampling::Points(5));
        let times: Vec<u64> = rows.iter().map(|r| r.time).collect();
        assert_eq!(
            times,
            vec![
                START,
                START + YEAR - 1,
                START + YEAR,
                START + 2 * YEAR,
                START + 3 * YEAR,
                START + 4 * YEAR
            ]
        );

        let view = schedule_view(&p, Sampling::Monthly);
        assert_eq!(view.groups.len(), 2);
        assert_eq!(view.beneficiaries.len(), 3);
        let team = &view.groups[0];
        assert_eq!(team.amount, 600 * E18);
        assert_eq!(team.rows.last().map(|r| r.released), Some(600 * E18));
        let eco = &view.groups[1];
        assert_eq!(eco.rows.last().map(|r| r.released), Some(300 * E18));
        assert!(team.rows.windows(2).all(|w| w[0].released <= w[1].released));
    }

    #[test]
    fn allocation_svg_chart() {
        let mut d = doc();
        d.groups[1].name = "eco <&> \"sys\"".into();
        let p = Plan::from_document(d).unwrap_or_else(|e| panic!("{e}"));
        let svg = render_svg(&p, 960, 540);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("data-group=\"eco &lt;&amp;&gt; &quot;sys&quot;\""));
        assert!(!svg.contains("<&>"));
        assert!(svg.contains(">2027-01</text>"), "{svg}");
        assert!(svg.contains(">60%</text>"), "{svg}");
        assert!(svg.contains("team (60.00%)"));
        assert_eq!(svg, render_svg(&p, 960, 540));
        // Tiny and huge sizes are clamped, never panic.
        assert!(render_svg(&p, 0, 0).contains("width=\"320\" height=\"200\""));
        assert!(render_svg(&p, u32::MAX, u32::MAX).contains("width=\"4096\""));
    }

    #[test]
    fn allocation_formats() {
        assert_eq!(format_units(1_500_000_000_000_000_000, 18), "1.5");
        assert_eq!(format_units(200_000_000 * E18, 18), "200000000");
        assert_eq!(format_units(1, 18), "0.000000000000000001");
        assert_eq!(format_units(0, 18), "0");
        assert_eq!(format_units(12, 0), "12");
        assert_eq!(
            format_units(u128::MAX, 38),
            "3.40282366920938463463374607431768211455"
        );
        assert_eq!(format_units(5, 200).len(), 202);
        assert_eq!(format_time(START), "2027-01-01");
        assert_eq!(format_time(START + 45_296), "2027-01-01T12:34:56Z");
        assert_eq!(format_time(u64::MAX), format!("unix {}", u64::MAX));
        assert_eq!(format_bps(2000), "20.00%");
        assert_eq!(format_bps(5), "0.05%");
    }

    /// The figures of `docs/allocations.md`, on the example plan.
    #[test]
    fn allocation_example_plan_figures() {
        let text = include_str!("../../../testnets/allocations/example.toml");
        let p = Plan::from_toml(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.total(), 1_000_000_000 * E18);
        assert_eq!(p.unallocated(), 50_000_000 * E18);
        let (_, f1) = p
            .beneficiary("team-founder-1")
            .unwrap_or_else(|| panic!("f1"));
        let cliff = 1_830_297_600; // 2028-01-01
        assert_eq!(f1.cliff_end(), cliff);
        assert_eq!(f1.end(), 1_924_992_000); // 2031-01-01
        assert_eq!(f1.vested(cliff - 1), 0);
        assert_eq!(f1.vested(cliff), 29_979_466_119_096_509_240_246_406);
        let mid = 1_846_022_400; // 2028-07-01
        assert_eq!(f1.vested(mid), 44_928_131_416_837_782_340_862_422);
        assert_eq!(f1.vested(f1.end()), 120_000_000 * E18);
        let e = check_claim(
            &p,
            "team-founder-1",
            25_000_000 * E18,
            20_000_000 * E18,
            mid,
        )
        .map_err(|e| e.to_string());
        assert_eq!(
            e,
            Err("plan \"kft-genesis\": beneficiary \"team-founder-1\": claim of 25000000000000000000000000 is above the available 24928131416837782340862422 (vested 44928131416837782340862422, claimed 20000000000000000000000000)".into())
        );
        let e =
            check_claim(&p, "team-founder-1", 1, 0, mid - 365 * 86_400).map_err(|e| e.to_string());
        assert_eq!(
            e,
            Err("plan \"kft-genesis\": beneficiary \"team-founder-1\": nothing is claimable before the cliff (cliff ends at 2028-01-01, unix 1830297600)".into())
        );
        // Revoking team-founder-2 at 2029-01-01 (a version 2) freezes it.
        let mut d = p.document().clone();
        d.version = 2;
        d.groups[0].beneficiaries[1].revoked_at = Some(1_861_920_000);
        let v2 = Plan::from_document(d).unwrap_or_else(|e| panic!("{e}"));
        let (_, f2) = v2
            .beneficiary("team-founder-2")
            .unwrap_or_else(|| panic!("f2"));
        assert_eq!(f2.vested(u64::MAX), 40_027_378_507_871_321_013_004_791);
        assert_ne!(v2.digest(), p.digest());
    }

    /// floor(a * e / d) in 256 bits, the reference.
    fn reference(a: u128, e: u64, d: u64) -> u128 {
        narrow(wide(a) * wide(u128::from(e)) / wide(u128::from(d))).unwrap_or(u128::MAX)
    }

    /// Mostly valid plans: shares cut from 10000, an exact total, amounts
    /// that fit their group; times from realistic to extreme.
    fn arb_plan_doc() -> impl Strategy<Value = PlanDocument> {
        let ben = (
            any::<u128>(),
            prop_oneof![START - 10 * YEAR..START + 10 * YEAR, 0u64..=MAX_TIME],
            any::<u64>(),
            prop_oneof![1u64..10 * YEAR, 0u64..=MAX_DURATION_SECS + 1],
            proptest::option::of(prop_oneof![START..START + 10 * YEAR, any::<u64>()]),
        );
        (
            any::<u128>(),
            proptest::collection::vec((1u32..10_000, proptest::collection::vec(ben, 0..4)), 1..6),
        )
            .prop_map(|(total, groups)| {
                let total = (total % (u128::MAX / 10_000)).max(1) * 10_000;
                let mut cuts: Vec<u32> = groups.iter().skip(1).map(|g| g.0).collect();
                cuts.sort_unstable();
                cuts.dedup();
                cuts.insert(0, 0);
                cuts.push(10_000);
                let shares: Vec<u32> = cuts.windows(2).map(|w| w[1] - w[0]).collect();
                PlanDocument {
                    plan_id: "p".into(),
                    version: 1,
                    token: Token {
                        chain: "c".into(),
                        asset: "A".into(),
                        contract: None,
                        decimals: 18,
                    },
                    total,
                    groups: groups
                        .into_iter()
                        .zip(shares)
                        .enumerate()
                        .map(|(gi, ((_, bs), share_bps))| {
                            let amount_of_group = total / 10_000 * u128::from(share_bps);
                            Group {
                                name: format!("g{gi}"),
                                share_bps,
                                beneficiaries: bs
                                    .into_iter()
                                    .enumerate()
                                    .map(|(bi, (amount, start, cliff, duration, revoked))| {
                                        Beneficiary {
                                            id: format!("b{gi}-{bi}"),
                                            address: "addr".into(),
                                            amount: amount % (amount_of_group / 4).max(1) + 1,
                                            start,
                                            cliff_secs: cliff % duration.saturating_add(1),
                                            duration_secs: duration,
                                            revoked_at: revoked,
                                        }
                                    })
                                    .collect(),
                            }
                        })
                        .collect(),
                }
            })
    }

    proptest! {
        #[test]
        fn allocation_vested_is_bounded_monotone_and_exact(
            amount in any::<u128>(),
            start in any::<u64>(),
            cliff in any::<u64>(),
            duration in 1u64..,
            t1 in any::<u64>(),
            t2 in any::<u64>(),
        ) {
            let cliff = cliff % duration.saturating_add(1);
            let (a, b) = (t1.min(t2), t1.max(t2));
            let va = vested(amount, start, cliff, duration, None, a);
            let vb = vested(amount, start, cliff, duration, None, b);
            prop_assert!(va <= vb);
            prop_assert!(vb <= amount);
            if a < start.saturating_add(cliff) {
                prop_assert_eq!(va, 0);
            }
            if let Some(end) = start.checked_add(duration) {
                prop_assert_eq!(vested(amount, start, cliff, duration, None, end), amount);
            }
            if a >= start.saturating_add(cliff) && a - start < duration {
                prop_assert_eq!(va, reference(amount, a - start, duration));
            }
        }

        #[test]
        fn allocation_vested_agrees_with_the_policy_rule(
            amount in any::<u128>(),
            start in any::<u64>(),
            cliff in any::<u64>(),
            duration in any::<u64>(),
            now in any::<u64>(),
            small in any::<bool>(),
        ) {
            // Also small, realistic values, where the branches meet.
            let (start, cliff, duration, now) = if small {
                (start % 1000, cliff % 1000, duration % 1000, now % 3000)
            } else {
                (start, cliff, duration, now)
            };
            prop_assert_eq!(
                vested(amount, start, cliff, duration, None, now),
                keyfold_policy::vested_amount(start, cliff, duration, amount, now)
            );
        }

        #[test]
        fn allocation_revocation_freezes(
            amount in any::<u128>(),
            start in 0u64..1_000_000,
            cliff in 0u64..1_000_000,
            duration in 1u64..2_000_000,
            revoked in 0u64..4_000_000,
            now in 0u64..4_000_000,
        ) {
            let cliff = cliff.min(duration);
            let v = vested(amount, start, cliff, duration, Some(revoked), now);
            prop_assert_eq!(v, vested(amount, start, cliff, duration, None, now.min(revoked)));
            if now >= revoked {
                prop_assert_eq!(v, vested(amount, start, cliff, duration, Some(revoked), u64::MAX));
            }
        }

        #[test]
        fn allocation_claims_agree_with_claimable(
            amount in 0u128..1_000_000_000_000_000_000_000_000,
            claimed in 0u128..1_000_000_000_000_000_000_000_000,
            now in START - YEAR..START + 6 * YEAR,
        ) {
            let p = plan();
            let alice = &p.groups()[0].beneficiaries[0];
            let ok = check_claim(&p, "alice", amount, claimed, now).is_ok();
            let expected = now >= alice.cliff_end() && amount > 0 && amount <= claimable(alice, claimed, now);
            prop_assert_eq!(ok, expected);
        }

        #[test]
        fn allocation_parsing_never_panics(text in ".{0,400}") {
            let _ = Plan::from_toml(&text);
            let _ = Plan::from_json(&text);
            let with_prefix = format!("{}\n{text}", plan_toml());
            let _ = Plan::from_toml(&with_prefix);
        }

        #[test]
        fn allocation_random_plans_validate_or_refuse_and_render(doc in arb_plan_doc()) {
            let result = Plan::from_document(doc.clone());
            // Only the times may make a generated plan invalid.
            let times_ok = doc.groups.iter().flat_map(|g| g.beneficiaries.iter()).all(|b| {
                b.duration_secs > 0
                    && b.duration_secs <= MAX_DURATION_SECS
                    && b.start.checked_add(b.duration_secs).is_some_and(|e| e <= MAX_TIME)
            });
            prop_assert_eq!(result.is_ok(), times_ok, "{:?}", result.as_ref().err());
            if let Ok(p) = result {
                let sum: u128 = p.summaries().iter().map(|s| s.amount).sum();
                prop_assert_eq!(sum, p.total());
                for s in p.summaries() {
                    prop_assert_eq!(s.allocated + s.unallocated, s.amount);
                }
                let view = schedule_view(&p, Sampling::Points(50));
                for g in &view.groups {
                    prop_assert!(g.rows.windows(2).all(|w| w[0].released <= w[1].released));
                }
                for b in &view.beneficiaries {
                    prop_assert!(b.rows.windows(2).all(|w| w[0].time < w[1].time && w[0].released <= w[1].released));
                }
                let monthly = schedule_view(&p, Sampling::Monthly);
                prop_assert_eq!(monthly.groups.len(), p.groups().len());
                let svg = render_svg(&p, 800, 400);
                prop_assert_eq!(svg.matches("<polyline").count(), p.groups().len());
            }
        }
    }
}
