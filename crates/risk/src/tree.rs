//! The decision tree document: its TOML schema ([`TreeDocument`]) and the
//! validated, ready-to-evaluate form ([`RiskTree`]).
//!
//! Conditions are typed TOML tables, not an expression language: every
//! table uses `deny_unknown_fields`, so a misspelt condition is refused
//! instead of silently matching nothing, and there is no parser to fuzz
//! beyond TOML itself.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::decision::{Action, FreezeScope};
use crate::error::TreeError;
use crate::features::EntityKind;
use crate::input::{AuthMethod, CountryCode, KycTier, MAX_ID_BYTES};
use crate::windows::Window;

/// Largest tree document accepted, in bytes.
pub const MAX_TREE_BYTES: usize = 1024 * 1024;
/// Most rules in a tree.
pub const MAX_RULES: usize = 256;
/// Most entries in each list.
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// Longest rule name, bytes.
pub const MAX_RULE_NAME: usize = 64;

/// An amount in base units. TOML integers are 64-bit, so larger amounts are
/// written as decimal strings (`"340282366920938463463374607431768211455"`);
/// both forms are read, floats and negative numbers are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(pub u128);

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match i64::try_from(self.0) {
            Ok(small) => s.serialize_i64(small),
            Err(_) => s.serialize_str(&self.0.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        use serde::de::{Error, Visitor};
        struct V;
        impl Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer amount or a decimal string")
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(u128::from(v)))
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Amount, E> {
                u128::try_from(v)
                    .map(Amount)
                    .map_err(|_| E::custom("amount must not be negative"))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Amount, E> {
                if v.is_empty() || v.len() > 39 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!("invalid amount {v:?}: digits only")));
                }
                v.parse()
                    .map(Amount)
                    .map_err(|_| E::custom(format!("amount {v:?} does not fit in u128")))
            }
        }
        d.deserialize_any(V)
    }
}

/// The on-disk tree (TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeDocument {
    /// Tree version; a signed update must increase it, decisions name it.
    pub version: u64,
    /// Optional human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A change of country faster than this (seconds) is impossible travel;
    /// 0 disables the feature.
    #[serde(default)]
    pub min_travel_secs: u64,
    /// Deny/watch lists.
    #[serde(default)]
    pub lists: Lists,
    /// Rules, evaluated in order; each matching rule adds its score.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Final score ranges and their actions; together they cover 0..=100.
    pub thresholds: Vec<Threshold>,
}

/// Lists the `listed_*` features are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lists {
    /// ISO 3166-1 alpha-2 codes.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Destination addresses, as they appear in requests.
    #[serde(default)]
    pub destinations: Vec<String>,
    /// CIDR ranges (`10.0.0.0/8`, `2001:db8::/32`). An IP is listed when
    /// its /24 (IPv6: /48) overlaps one of them, so a range narrower than
    /// that flags its whole block (see [`RiskTree::is_listed_ip`]).
    #[serde(default)]
    pub ip_ranges: Vec<String>,
}

/// An action as written in the tree (`{ kind = "freeze", scope = "device" }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ActionSpec {
    /// Let the payment through.
    Allow,
    /// Ask the customer for a second factor (TOTP or a device signature).
    StepUp,
    /// Hold the payment for a person to review.
    Review,
    /// Refuse the payment and freeze an entity until a person lifts it.
    Freeze {
        /// What to freeze.
        scope: FreezeScope,
    },
    /// Refuse the payment.
    Deny,
}

impl ActionSpec {
    /// The action and, for a freeze, its scope.
    pub fn split(self) -> (Action, Option<FreezeScope>) {
        match self {
            ActionSpec::Allow => (Action::Allow, None),
            ActionSpec::StepUp => (Action::StepUp, None),
            ActionSpec::Review => (Action::Review, None),
            ActionSpec::Freeze { scope } => (Action::Freeze, Some(scope)),
            ActionSpec::Deny => (Action::Deny, None),
        }
    }
}

/// `count = { entity = "device", window = "10m", above = 5 }`: more than
/// `above` requests of this entity in the window, this one included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountCondition {
    /// Whose requests.
    pub entity: EntityKind,
    /// One of `1m 10m 1h 24h 7d`.
    pub window: String,
    /// Matches when the count is greater.
    pub above: u64,
}

/// `sum = { entity = "customer", window = "24h", above = "..." }`: the
/// entity's amounts in the request's asset, this one included, add up to
/// more than `above` (base units; the rule must name its `assets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SumCondition {
    /// Whose payments.
    pub entity: EntityKind,
    /// One of `1m 10m 1h 24h 7d`.
    pub window: String,
    /// Matches when the sum is greater.
    pub above: Amount,
}

/// `rate_spike = { entity = "customer", z_above = 4.0 }`: this hour's
/// request count is that many deviations above the entity's baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpike {
    /// Whose rate.
    pub entity: EntityKind,
    /// Matches when the z-score is greater.
    pub z_above: f64,
}

/// A rule's condition: every sub-condition present must hold (AND); at
/// least one must be present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// The request's asset is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<Vec<String>>,
    /// The request's chain is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chains: Option<Vec<String>>,
    /// The amount is greater (base units; needs `assets`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_above: Option<Amount>,
    /// A windowed request count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<CountCondition>,
    /// A windowed amount sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<SumCondition>,
    /// A request-rate spike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_spike: Option<RateSpike>,
    /// The amount's z-score against the customer's history is greater.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_z_above: Option<f64>,
    /// The amount divided by the customer's mean amount is greater.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_ratio_above: Option<f64>,
    /// The customer has (not) paid this destination before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_destination: Option<bool>,
    /// The customer has (not) used this device before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_device: Option<bool>,
    /// The country differs (or not) from the customer's last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_changed: Option<bool>,
    /// The country changed faster than `min_travel_secs` (or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impossible_travel: Option<bool>,
    /// The country is (not) in `lists.countries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_country: Option<bool>,
    /// The destination is (not) in `lists.destinations`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_destination: Option<bool>,
    /// The IP's /24 (IPv6: /48) does (not) overlap `lists.ip_ranges`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed_ip: Option<bool>,
    /// At least this many refused device signatures in the last hour
    /// (the customer's or the device's, whichever is more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusals_at_least: Option<u32>,
    /// The customer's KYC tier is lower than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kyc_below: Option<KycTier>,
    /// The request was not authenticated with this method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_lacks: Option<AuthMethod>,
    /// The score added by the earlier matching rules is greater.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_above: Option<u8>,
}

impl Condition {
    fn is_empty(&self) -> bool {
        *self == Condition::default()
    }
}

/// A rule: when its condition holds, it adds `score`, and may force an
/// action or require a KYC tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name, given in reasons.
    pub name: String,
    /// The condition.
    pub when: Condition,
    /// Points added to the score, 0..=100 (the total is clamped to 100).
    #[serde(default)]
    pub score: u8,
    /// An action the decision gets at least.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ActionSpec>,
    /// A tier the customer must have, else the payment is denied
    /// (`kyc_required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_kyc: Option<KycTier>,
}

/// Scores `from..=to` get `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Lowest score, inclusive.
    pub from: u8,
    /// Highest score, inclusive.
    pub to: u8,
    /// What scores in the range get.
    pub action: ActionSpec,
}

/// The windows a rule's `count` and `sum` conditions name, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct RuleWindows {
    pub(crate) count: Option<Window>,
    pub(crate) sum: Option<Window>,
}

/// A validated tree, ready for evaluation. Build it with
/// [`RiskTree::from_toml`] or [`RiskTree::from_document`].
#[derive(Debug, Clone, PartialEq)]
pub struct RiskTree {
    doc: TreeDocument,
    countries: BTreeSet<CountryCode>,
    destinations: BTreeSet<String>,
    ip_ranges: Vec<IpNet>,
    pub(crate) windows: Vec<RuleWindows>,
    /// Action of each score 0..=100.
    by_score: Vec<ActionSpec>,
}

fn bad(rule: &Rule, field: &'static str, why: impl Into<String>) -> TreeError {
    TreeError::BadField {
        rule: rule.name.clone(),
        field,
        why: why.into(),
    }
}

fn window(rule: &Rule, field: &'static str, value: &str) -> Result<Window, TreeError> {
    Window::parse(value).ok_or_else(|| TreeError::BadWindow {
        rule: rule.name.clone(),
        field,
        value: value.chars().take(32).collect(),
    })
}

fn too_many(what: &'static str, count: usize, max: usize) -> Result<(), TreeError> {
    if count > max {
        return Err(TreeError::TooMany { what, count, max });
    }
    Ok(())
}

fn check_rule(rule: &Rule, min_travel_secs: u64) -> Result<RuleWindows, TreeError> {
    let w = &rule.when;
    if w.is_empty() {
        return Err(TreeError::EmptyCondition {
            rule: rule.name.clone(),
        });
    }
    for (field, list) in [("when.assets", &w.assets), ("when.chains", &w.chains)] {
        if let Some(list) = list {
            if list.is_empty() {
                return Err(bad(rule, field, "an empty list never matches"));
            }
            too_many(field, list.len(), MAX_LIST_ENTRIES)?;
        }
    }
    // Amount thresholds need a unit: 10^10 is 100 BTC in satoshis but a
    // speck of ETH in wei.
    if w.assets.is_none() {
        if w.amount_above.is_some() {
            return Err(bad(
                rule,
                "when.amount_above",
                "name the `assets` it is counted in",
            ));
        }
        if w.sum.is_some() {
            return Err(bad(rule, "when.sum", "name the `assets` it is counted in"));
        }
    }
    for (field, v) in [
        ("when.amount_z_above", w.amount_z_above),
        ("when.amount_ratio_above", w.amount_ratio_above),
        (
            "when.rate_spike.z_above",
            w.rate_spike.as_ref().map(|r| r.z_above),
        ),
    ] {
        if matches!(v, Some(x) if !x.is_finite()) {
            return Err(bad(rule, field, "must be a finite number"));
        }
    }
    if matches!(w.score_above, Some(s) if s >= 100) {
        return Err(bad(rule, "when.score_above", "the score never exceeds 100"));
    }
    if w.refusals_at_least == Some(0) {
        return Err(bad(
            rule,
            "when.refusals_at_least",
            "0 always holds; use 1 or more",
        ));
    }
    if w.kyc_below == Some(KycTier::None) {
        return Err(bad(rule, "when.kyc_below", "no tier is below `none`"));
    }
    if w.impossible_travel == Some(true) && min_travel_secs == 0 {
        return Err(bad(
            rule,
            "when.impossible_travel",
            "min_travel_secs is 0, so travel is never impossible",
        ));
    }
    if rule.score > 100 {
        return Err(bad(rule, "score", format!("{} is above 100", rule.score)));
    }
    if rule.require_kyc == Some(KycTier::None) {
        return Err(bad(
            rule,
            "require_kyc",
            "every customer has at least `none`",
        ));
    }
    if rule.score == 0 && rule.action.is_none() && rule.require_kyc.is_none() {
        return Err(bad(
            rule,
            "score",
            "the rule has no effect: give it a score, an action or require_kyc",
        ));
    }
    Ok(RuleWindows {
        count: match &w.count {
            Some(c) => Some(window(rule, "when.count.window", &c.window)?),
            None => None,
        },
        sum: match &w.sum {
            Some(s) => Some(window(rule, "when.sum.window", &s.window)?),
            None => None,
        },
    })
}

fn check_thresholds(thresholds: &[Threshold]) -> Result<Vec<ActionSpec>, TreeError> {
    too_many("thresholds", thresholds.len(), 101)?;
    let mut sorted: Vec<Threshold> = thresholds.to_vec();
    sorted.sort_by_key(|t| (t.from, t.to));
    let mut by_score = Vec::with_capacity(101);
    let mut next: u16 = 0; // the first score not yet covered
    for t in &sorted {
        if t.from > t.to {
            return Err(TreeError::Thresholds(format!(
                "range {}..={} is empty (from > to)",
                t.from, t.to
            )));
        }
        if t.to > 100 {
            return Err(TreeError::Thresholds(format!(
                "range {}..={} goes past 100",
                t.from, t.to
            )));
        }
        let from = u16::from(t.from);
        if from < next {
            return Err(TreeError::Thresholds(format!(
                "scores {from}..={} are covered twice",
                (next - 1).min(u16::from(t.to))
            )));
        }
        if from > next {
            return Err(TreeError::Thresholds(format!(
                "gap: no range covers {next}..={}",
                from - 1
            )));
        }
        for _ in t.from..=t.to {
            by_score.push(t.action);
        }
        next = u16::from(t.to) + 1;
    }
    if next <= 100 {
        return Err(TreeError::Thresholds(format!(
            "gap: no range covers {next}..=100"
        )));
    }
    Ok(by_score)
}

impl RiskTree {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<RiskTree, TreeError> {
        if text.len() > MAX_TREE_BYTES {
            return Err(TreeError::TooLarge {
                size: text.len(),
                limit: MAX_TREE_BYTES,
            });
        }
        let doc: TreeDocument =
            toml::from_str(text).map_err(|e| TreeError::Parse(e.to_string()))?;
        RiskTree::from_document(doc)
    }

    /// Validates a parsed document.
    pub fn from_document(doc: TreeDocument) -> Result<RiskTree, TreeError> {
        if doc.version == 0 {
            return Err(TreeError::BadVersion);
        }
        too_many("rules", doc.rules.len(), MAX_RULES)?;
        too_many(
            "lists.countries",
            doc.lists.countries.len(),
            MAX_LIST_ENTRIES,
        )?;
        too_many(
            "lists.destinations",
            doc.lists.destinations.len(),
            MAX_LIST_ENTRIES,
        )?;
        too_many(
            "lists.ip_ranges",
            doc.lists.ip_ranges.len(),
            MAX_LIST_ENTRIES,
        )?;
        let mut countries = BTreeSet::new();
        for c in &doc.lists.countries {
            let code: CountryCode = c.parse().map_err(|_| TreeError::BadCountry {
                value: c.chars().take(16).collect(),
            })?;
            countries.insert(code);
        }
        let mut destinations = BTreeSet::new();
        for listed in &doc.lists.destinations {
            let d = crate::input::canonical_destination(listed).into_owned();
            let why = if d.is_empty() {
                Some("empty")
            } else if d.len() > MAX_ID_BYTES {
                Some("longer than 128 bytes")
            } else if destinations.contains(&d) {
                Some("listed twice")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(TreeError::BadDestination {
                    value: d.chars().take(MAX_ID_BYTES).collect(),
                    why: why.to_string(),
                });
            }
            destinations.insert(d);
        }
        let mut ip_ranges = Vec::with_capacity(doc.lists.ip_ranges.len());
        for r in &doc.lists.ip_ranges {
            let bad_cidr = |reason: String| TreeError::BadCidr {
                value: r.chars().take(64).collect(),
                reason,
            };
            let net: IpNet = r
                .parse()
                .map_err(|e: ipnet::AddrParseError| bad_cidr(e.to_string()))?;
            // `10.0.0.1/8` is almost always a typo for a host or for
            // `10.0.0.0/8`: make the author say which.
            if net.trunc() != net {
                return Err(bad_cidr(format!(
                    "host bits are set; write {}",
                    net.trunc()
                )));
            }
            ip_ranges.push(net);
        }
        let mut names = BTreeSet::new();
        let mut windows = Vec::with_capacity(doc.rules.len());
        for r in &doc.rules {
            if r.name.is_empty() || r.name.len() > MAX_RULE_NAME {
                return Err(TreeError::BadRuleName(r.name.chars().take(80).collect()));
            }
            if !names.insert(r.name.as_str()) {
                return Err(TreeError::DuplicateRuleName(r.name.clone()));
            }
            windows.push(check_rule(r, doc.min_travel_secs)?);
        }
        let by_score = check_thresholds(&doc.thresholds)?;
        Ok(RiskTree {
            doc,
            countries,
            destinations,
            ip_ranges,
            windows,
            by_score,
        })
    }

    /// The tree version.
    pub fn version(&self) -> u64 {
        self.doc.version
    }

    /// The underlying document.
    pub fn document(&self) -> &TreeDocument {
        &self.doc
    }

    /// Serializes the document back to TOML.
    pub fn to_toml(&self) -> Result<String, TreeError> {
        toml::to_string(&self.doc).map_err(|e| TreeError::Parse(e.to_string()))
    }

    /// Whether a country is in `lists.countries`.
    pub fn is_listed_country(&self, c: CountryCode) -> bool {
        self.countries.contains(&c)
    }

    /// Whether a destination is in `lists.destinations`.
    pub fn is_listed_destination(&self, d: &str) -> bool {
        self.destinations
            .contains(crate::input::canonical_destination(d).as_ref())
    }

    /// Whether an IP's block ([`crate::ip_block`]: its /24, or /48 for
    /// IPv6; an IPv4-mapped IPv6 address is the IPv4 address it is)
    /// overlaps one of `lists.ip_ranges`: a range contains the block, or
    /// the block contains the range.
    ///
    /// The engine never reads an IP more precisely than its block, so the
    /// coordinator can log just the block and the auditor still recomputes
    /// every feature. The price: a range narrower than a block flags the
    /// whole block (a listed `192.0.2.7/32` flags every address of
    /// `192.0.2.0/24`), so list ranges of at least a block's size.
    pub fn is_listed_ip(&self, ip: IpAddr) -> bool {
        let block = crate::input::ip_block_net(ip);
        self.ip_ranges
            .iter()
            .any(|n| n.contains(&block) || block.contains(n))
    }

    /// The action thresholds give a final score (above 100 counts as 100).
    pub fn threshold_action(&self, score: u8) -> ActionSpec {
        let i = usize::from(score.min(100));
        // Validation made `by_score` exactly 101 entries long.
        self.by_score.get(i).copied().unwrap_or(ActionSpec::Deny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLDS: &str = r#"
[[thresholds]]
from = 0
to = 49
action = { kind = "allow" }
[[thresholds]]
from = 50
to = 100
action = { kind = "deny" }
"#;

    fn tree(body: &str) -> Result<RiskTree, TreeError> {
        RiskTree::from_toml(&format!("version = 1\n{body}\n{THRESHOLDS}"))
    }

    #[test]
    fn thresholds_map_scores() {
        let t = tree("").map_err(|e| e.to_string());
        let Ok(t) = t else { panic!("{t:?}") };
        assert_eq!(t.threshold_action(0), ActionSpec::Allow);
        assert_eq!(t.threshold_action(49), ActionSpec::Allow);
        assert_eq!(t.threshold_action(50), ActionSpec::Deny);
        assert_eq!(t.threshold_action(100), ActionSpec::Deny);
        assert_eq!(t.threshold_action(255), ActionSpec::Deny);
    }

    #[test]
    fn amount_needs_assets() {
        let e = tree("[[rules]]\nname = \"big\"\nwhen = { amount_above = 5 }\nscore = 10");
        assert_eq!(
            e.err(),
            Some(TreeError::BadField {
                rule: "big".into(),
                field: "when.amount_above",
                why: "name the `assets` it is counted in".into()
            })
        );
    }

    #[test]
    fn empty_condition_and_no_effect_are_refused() {
        let e = tree("[[rules]]\nname = \"r\"\nwhen = {}\nscore = 10");
        assert_eq!(
            e.err(),
            Some(TreeError::EmptyCondition { rule: "r".into() })
        );
        let e = tree("[[rules]]\nname = \"r\"\nwhen = { first_device = true }");
        assert!(
            matches!(e, Err(TreeError::BadField { field: "score", .. })),
            "{e:?}"
        );
    }

    #[test]
    fn impossible_travel_needs_min_travel_secs() {
        let rule = "[[rules]]\nname = \"t\"\nwhen = { impossible_travel = true }\nscore = 10";
        assert!(matches!(
            tree(rule),
            Err(TreeError::BadField {
                field: "when.impossible_travel",
                ..
            })
        ));
        assert!(tree(&format!("min_travel_secs = 3600\n{rule}")).is_ok());
    }

    #[test]
    fn host_bits_in_cidr_are_refused() {
        let e = tree("[lists]\nip_ranges = [\"10.0.0.1/8\"]");
        assert!(matches!(e, Err(TreeError::BadCidr { .. })), "{e:?}");
    }

    #[test]
    fn large_amounts_as_strings_round_trip() {
        let t = tree(
            "[[rules]]\nname = \"r\"\nwhen = { assets = [\"ETH\"], amount_above = \"100000000000000000000000\" }\nscore = 10",
        );
        let Ok(t) = t else { panic!("{t:?}") };
        assert_eq!(
            t.document().rules[0].when.amount_above,
            Some(Amount(100_000_000_000_000_000_000_000))
        );
        let again = t.to_toml().map(|s| RiskTree::from_toml(&s));
        assert!(matches!(again, Ok(Ok(ref t2)) if *t2 == t), "{again:?}");
    }
}
