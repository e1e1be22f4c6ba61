//! The auditor's checks of the risk events: `risk_tree` (the tree is the
//! document it names, and a later tree carries the admin quorum of the
//! policy in force), `risk_decision` and `risk_refusal` (the engine's
//! numbered steps, replayed in its own `seq` order, one numbering for both
//! kinds, through one [`RiskState`]: every decision recomputed with
//! `keyfold_risk` and compared member by member, every refused device
//! signature counted as the engine counted it, so a later decision's
//! `refusals_at_least` is recomputed too), `freeze`, `review` and
//! `customer_auth` (well formed; a lift names two officers and a freeze in
//! force).
//!
//! Findings are typed ([`RiskFinding`]) and reach the verifier as
//! [`EntryError::Risk`], next to the policy checks' [`EntryError::Rejected`].

use std::collections::{BTreeMap, BTreeSet, HashSet};

use keyfold_risk::{
    AdminSet, Decision, FreezeScope, RefusalInput, RiskRequest, RiskState, RiskTree,
    DEVICE_REFUSAL_CODES,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Auditor;
use crate::event::Event;
use crate::record::{CustomerAuthAction, ReviewVerdict, FREEZE_ADDED, FREEZE_LIFTED};
use crate::verify::{EntryError, VerifyError};

/// Most risk steps (decisions and refusals) the auditor holds back while it
/// waits for an earlier `seq` (the coordinator numbers steps under its lock
/// and appends them later, so concurrent requests may be logged a few
/// places out of order). A step still missing after this many later ones is
/// a gap: waiting longer would let a log make the auditor hold everything.
pub const MAX_RISK_REORDER: usize = 1024;

/// Most bytes (request id, input, features, detail) of the risk steps held
/// back, for the same reason as [`MAX_RISK_REORDER`]: each member may be
/// up to a MiB, the count alone does not bound the memory.
pub const MAX_RISK_REORDER_BYTES: usize = 32 * 1024 * 1024;

/// A risk event the auditor refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RiskFinding {
    /// A `risk_tree` entry does not bring a valid tree into force.
    #[error("risk tree version {version}: {problem}")]
    Tree {
        /// The version the event claims.
        version: u64,
        /// What does not hold.
        problem: String,
    },
    /// A `risk_decision` is out of the engine's order or is not what the
    /// engine computes.
    #[error("risk decision seq {seq} on request {request_id} (entry {entry}): {problem}")]
    Decision {
        /// The decision's request.
        request_id: String,
        /// Its `seq`.
        seq: u64,
        /// The index of the entry that records it, which the verifier names
        /// (decisions are replayed in `seq` order, so a decision logged
        /// ahead of its turn is found wrong at a later entry).
        entry: u64,
        /// What is wrong.
        problem: DecisionProblem,
    },
    /// A `freeze` entry does not hold.
    #[error("freeze {freeze_id}: {problem}")]
    Freeze {
        /// The freeze's id.
        freeze_id: String,
        /// What does not hold.
        problem: String,
    },
    /// A `review` entry does not hold.
    #[error("review of request {request_id}: {problem}")]
    Review {
        /// The reviewed request.
        request_id: String,
        /// What does not hold.
        problem: String,
    },
    /// A `risk_refusal` is out of the engine's order or is not a refusal
    /// the engine counts.
    #[error("risk refusal seq {seq} on request {request_id} (entry {entry}): {problem}")]
    Refusal {
        /// The refused request.
        request_id: String,
        /// Its `seq`.
        seq: u64,
        /// The index of the entry that records it (as for a decision: a
        /// refusal logged ahead of its turn is found wrong later).
        entry: u64,
        /// What is wrong.
        problem: RefusalProblem,
    },
    /// A `customer_auth` entry is malformed.
    #[error("customer auth change of {customer}: {problem}")]
    CustomerAuth {
        /// The customer (pseudonym).
        customer: String,
        /// What does not hold.
        problem: String,
    },
}

/// What is wrong with a `risk_refusal` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefusalProblem {
    /// `seq` is 0: the engine numbers its steps from 1.
    #[error("seq 0: the engine numbers its steps from 1")]
    ZeroSeq,
    /// Another step of the log (a decision or a refusal) has the same `seq`.
    #[error("another decision or refusal of the log has this seq")]
    DuplicateSeq,
    /// `missing` is not in the log though this later one is: at the end
    /// of the log, or after [`MAX_RISK_REORDER`] later steps.
    #[error("seq {missing} is not in the log, though this later one is")]
    MissingSeq {
        /// The first `seq` not found.
        missing: u64,
    },
    /// `input` does not parse as a `keyfold_risk::RefusalInput`.
    #[error("input does not parse: {0}")]
    Unparsable(String),
    /// `code` and the input's code differ.
    #[error("code {recorded} differs from the input's code {input}")]
    CodeDiffers {
        /// The event's `code` (JSON, shortened).
        recorded: String,
        /// The input's `code` (JSON, shortened).
        input: String,
    },
    /// The code is not a refused device signature (not one of
    /// `keyfold_risk::DEVICE_REFUSAL_CODES`): the engine does not count it.
    #[error("code {0} is not a device-signature refusal")]
    UnknownCode(String),
    /// The engine refuses the recorded input (no customer nor device, an
    /// id or time out of bounds).
    #[error("the engine refuses the input: {0}")]
    BadInput(String),
}

/// What is wrong with a `risk_decision` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecisionProblem {
    /// `seq` is 0: the engine numbers its evaluations from 1.
    #[error("seq 0: the engine numbers its evaluations from 1")]
    ZeroSeq,
    /// Another step of the log (a decision or a refusal) has the same `seq`.
    #[error("another decision or refusal of the log has this seq")]
    DuplicateSeq,
    /// `missing` is not in the log though this later one is: at the end
    /// of the log, or after [`MAX_RISK_REORDER`] later steps.
    #[error("seq {missing} is not in the log, though this later one is")]
    MissingSeq {
        /// The first `seq` not found.
        missing: u64,
    },
    /// `tree_version` names no `risk_tree` recorded before this entry.
    #[error("tree version {0} was never recorded before this decision")]
    UnknownTree(u64),
    /// A member does not parse as its engine type.
    #[error("{field} does not parse: {error}")]
    Unparsable {
        /// `input`, `features` or `detail`.
        field: &'static str,
        /// The parser's message.
        error: String,
    },
    /// The engine refuses the recorded input (a bound it checks).
    #[error("the engine refuses the input: {0}")]
    BadInput(String),
    /// A member differs from the engine's recomputation.
    #[error("{field} differs: recorded {recorded}, recomputed {recomputed}")]
    Differs {
        /// The member: `score`, `action`, or a path into `features` or
        /// `detail` (`features.device.windows[1].count`, `detail.score`).
        field: String,
        /// The recorded value (JSON, shortened).
        recorded: String,
        /// The recomputed value (JSON, shortened).
        recomputed: String,
    },
}

/// A recorded decision, as replayed.
#[derive(Debug, Clone, Copy)]
struct Recorded<'a> {
    request_id: &'a str,
    seq: u64,
    /// Index of its entry.
    entry: u64,
    tree_version: u64,
    input: &'a str,
    features: &'a str,
    score: u64,
    action: &'a str,
    detail: &'a str,
}

impl Recorded<'_> {
    fn finding(&self, problem: DecisionProblem) -> RiskFinding {
        RiskFinding::Decision {
            request_id: self.request_id.to_string(),
            seq: self.seq,
            entry: self.entry,
            problem,
        }
    }
}

/// A recorded decision waiting for its turn in `seq` order.
#[derive(Debug)]
struct HeldDecision {
    request_id: String,
    seq: u64,
    entry: u64,
    tree_version: u64,
    input: String,
    features: String,
    score: u64,
    action: String,
    detail: String,
}

impl HeldDecision {
    fn of(r: Recorded<'_>) -> HeldDecision {
        HeldDecision {
            request_id: r.request_id.to_string(),
            seq: r.seq,
            entry: r.entry,
            tree_version: r.tree_version,
            input: r.input.to_string(),
            features: r.features.to_string(),
            score: r.score,
            action: r.action.to_string(),
            detail: r.detail.to_string(),
        }
    }

    fn recorded(&self) -> Recorded<'_> {
        Recorded {
            request_id: &self.request_id,
            seq: self.seq,
            entry: self.entry,
            tree_version: self.tree_version,
            input: &self.input,
            features: &self.features,
            score: self.score,
            action: &self.action,
            detail: &self.detail,
        }
    }

    fn bytes(&self) -> usize {
        self.request_id.len() + self.input.len() + self.features.len() + self.detail.len()
    }
}

/// A recorded refusal, checked and parsed (it is small: parsed as it
/// arrives, held parsed).
#[derive(Debug)]
struct Refusal {
    request_id: String,
    seq: u64,
    /// Index of its entry.
    entry: u64,
    input: RefusalInput,
    /// Bytes of its request id and recorded input.
    bytes: usize,
}

impl Refusal {
    fn finding(&self, problem: RefusalProblem) -> RiskFinding {
        RiskFinding::Refusal {
            request_id: self.request_id.clone(),
            seq: self.seq,
            entry: self.entry,
            problem,
        }
    }
}

/// A step of the engine recorded ahead of its turn.
#[derive(Debug)]
enum Held {
    Decision(HeldDecision),
    Refusal(Refusal),
}

impl Held {
    fn bytes(&self) -> usize {
        match self {
            Held::Decision(d) => d.bytes(),
            Held::Refusal(r) => r.bytes,
        }
    }

    /// Its entry, and the finding that step `missing` never came before it.
    fn gap(&self, missing: u64) -> (u64, RiskFinding) {
        match self {
            Held::Decision(d) => (
                d.entry,
                d.recorded()
                    .finding(DecisionProblem::MissingSeq { missing }),
            ),
            Held::Refusal(r) => (r.entry, r.finding(RefusalProblem::MissingSeq { missing })),
        }
    }
}

/// The risk engine as the log describes it.
#[derive(Debug, Default)]
pub(super) struct RiskReplay {
    /// Every tree recorded, by version (versions only increase).
    trees: BTreeMap<u64, RiskTree>,
    /// The engine's state after the steps replayed so far.
    state: RiskState,
    /// The `seq` of the last step (decision or refusal) replayed (0 before
    /// the first).
    replayed: u64,
    /// Steps recorded ahead of their turn, by `seq`.
    held: BTreeMap<u64, Held>,
    /// Their [`Held::bytes`].
    held_bytes: usize,
    /// Freezes in force (added, not lifted since).
    frozen: HashSet<String>,
}

impl RiskReplay {
    /// The gap finding for the first step held back, if any, with the
    /// index of its entry.
    fn gap(&self) -> Option<(u64, RiskFinding)> {
        let h = self.held.first_key_value()?.1;
        Some(h.gap(self.replayed.saturating_add(1)))
    }

    /// Whether a decision or a refusal already has step number `seq`.
    fn seq_taken(&self, seq: u64) -> bool {
        seq <= self.replayed || self.held.contains_key(&seq)
    }
}

/// JSON of a value, at most 200 bytes of it (findings quote leaf values;
/// a forged member could be a MiB long).
fn short(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The first place where `recorded` and `fresh` differ, as (path, recorded,
/// recomputed); an absent member shows as `absent`.
fn first_difference(
    path: &str,
    recorded: &Value,
    fresh: &Value,
) -> Option<(String, String, String)> {
    match (recorded, fresh) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().find_map(|k| {
                let sub = format!("{path}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => first_difference(&sub, x, y),
                    (x, y) => {
                        let show = |v: Option<&Value>| v.map_or("absent".to_string(), short);
                        Some((sub, show(x), show(y)))
                    }
                }
            })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y)),
        (a, b) if a == b => None,
        (a, b) => Some((path.to_string(), short(a), short(b))),
    }
}

/// Parses a member that must be a JSON object.
fn json_object(what: &str, text: &str) -> Result<(), String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => Err(format!("{what} is not a JSON object")),
        Err(e) => Err(format!("{what} does not parse as JSON: {e}")),
    }
}

impl Auditor {
    /// A `risk_tree` entry: the document it names, parsed by the engine,
    /// of the version it claims; after the first tree, signed by the admin
    /// quorum of the policy in force, with a version above the last tree's.
    pub(super) fn risk_tree(
        &mut self,
        version: u64,
        document_hash: &[u8; 32],
        document: &str,
        update: Option<&str>,
    ) -> Result<(), RiskFinding> {
        let bad = |problem: String| RiskFinding::Tree { version, problem };
        let hash: [u8; 32] = Sha256::digest(document.as_bytes()).into();
        if &hash != document_hash {
            return Err(bad(
                "document_hash is not the SHA-256 of the document".into()
            ));
        }
        let tree = RiskTree::from_toml(document).map_err(|e| bad(e.to_string()))?;
        if tree.version() != version {
            return Err(bad(format!("the document is version {}", tree.version())));
        }
        match (self.risk.trees.last_key_value(), update) {
            (None, None) => {}
            // Like the genesis policy: the first tree is the node's own
            // configuration, an update only means something against a tree
            // in force.
            (None, Some(_)) => {
                return Err(bad(
                    "the first risk tree of the log carries an update".into()
                ))
            }
            (Some((v, _)), None) => {
                return Err(bad(format!(
                    "replaces tree version {v} without a signed update"
                )))
            }
            (Some((_, current)), Some(u)) => {
                let signed: keyfold_risk::SignedTree = serde_json::from_str(u)
                    .map_err(|e| bad(format!("update is not a signed tree: {e}")))?;
                if signed.tree_toml != document {
                    return Err(bad("the signed update is not the recorded document".into()));
                }
                // Whoever may change the policy may change the tree: the
                // admins of the policy in force at this point of the log.
                let policy = self.policy().map_err(bad)?;
                let admins = AdminSet::from_policy(policy).map_err(|e| {
                    bad(format!(
                        "no admin set in policy version {}: {e}",
                        policy.version()
                    ))
                })?;
                signed
                    .verify(&admins, Some(current))
                    .map_err(|e| bad(format!("update not allowed: {e}")))?;
            }
        }
        self.risk.trees.insert(version, tree);
        self.stats.risk_trees += 1;
        Ok(())
    }

    /// A `risk_decision` entry at `index`: its `seq` is new and its tree
    /// known; it is replayed now if its turn has come (and so are the
    /// decisions held back behind it), otherwise held until it has.
    pub(super) fn risk_decision(&mut self, index: u64, event: &Event) -> Result<(), RiskFinding> {
        let Event::RiskDecision {
            request_id,
            seq,
            tree_version,
            input,
            features,
            score,
            action,
            detail,
        } = event
        else {
            return Ok(());
        };
        let r = Recorded {
            request_id,
            seq: *seq,
            entry: index,
            tree_version: *tree_version,
            input,
            features,
            score: *score,
            action,
            detail,
        };
        if r.seq == 0 {
            return Err(r.finding(DecisionProblem::ZeroSeq));
        }
        if self.risk.seq_taken(r.seq) {
            return Err(r.finding(DecisionProblem::DuplicateSeq));
        }
        // The tree must be in the log before the decision that names it:
        // the coordinator records a tree as it comes into force.
        if !self.risk.trees.contains_key(&r.tree_version) {
            return Err(r.finding(DecisionProblem::UnknownTree(r.tree_version)));
        }
        if r.seq != self.risk.replayed.saturating_add(1) {
            // Ahead of its turn: an earlier step is still to come.
            return self.hold(r.seq, Held::Decision(HeldDecision::of(r)));
        }
        // Its turn (the usual case: no copy), then those held behind it.
        self.replay_decision(r)?;
        self.risk.replayed = r.seq;
        self.replay_held()
    }

    /// A `risk_refusal` entry at `index`: its `seq` is new, its input a
    /// refusal the engine counts, with the code it names; it is counted
    /// now if its turn has come (and the steps held back behind it are
    /// replayed), otherwise held until it has.
    pub(super) fn risk_refusal(&mut self, index: u64, event: &Event) -> Result<(), RiskFinding> {
        let Event::RiskRefusal {
            request_id,
            seq,
            input,
            code,
        } = event
        else {
            return Ok(());
        };
        let fail = |problem| RiskFinding::Refusal {
            request_id: request_id.clone(),
            seq: *seq,
            entry: index,
            problem,
        };
        if *seq == 0 {
            return Err(fail(RefusalProblem::ZeroSeq));
        }
        if self.risk.seq_taken(*seq) {
            return Err(fail(RefusalProblem::DuplicateSeq));
        }
        // What does not depend on the order is checked as it arrives, so
        // the finding names this entry even when it is ahead of its turn.
        let parsed: RefusalInput = serde_json::from_str(input)
            .map_err(|e| fail(RefusalProblem::Unparsable(e.to_string())))?;
        if parsed.code != *code {
            return Err(fail(RefusalProblem::CodeDiffers {
                recorded: short(&Value::String(code.clone())),
                input: short(&Value::String(parsed.code.clone())),
            }));
        }
        if !DEVICE_REFUSAL_CODES.contains(&code.as_str()) {
            return Err(fail(RefusalProblem::UnknownCode(short(&Value::String(
                code.clone(),
            )))));
        }
        parsed
            .validate()
            .map_err(|e| fail(RefusalProblem::BadInput(e.to_string())))?;
        let r = Refusal {
            request_id: request_id.clone(),
            seq: *seq,
            entry: index,
            input: parsed,
            bytes: request_id.len() + input.len(),
        };
        if r.seq != self.risk.replayed.saturating_add(1) {
            return self.hold(r.seq, Held::Refusal(r));
        }
        self.replay_refusal(&r)?;
        self.risk.replayed = r.seq;
        self.replay_held()
    }

    /// Holds step `seq` until its turn; a gap if too much is held.
    fn hold(&mut self, seq: u64, held: Held) -> Result<(), RiskFinding> {
        self.risk.held_bytes += held.bytes();
        self.risk.held.insert(seq, held);
        if self.risk.held.len() > MAX_RISK_REORDER || self.risk.held_bytes > MAX_RISK_REORDER_BYTES
        {
            if let Some((_, gap)) = self.risk.gap() {
                return Err(gap);
            }
        }
        Ok(())
    }

    /// Replays the steps held back whose turn has come, in `seq` order.
    fn replay_held(&mut self) -> Result<(), RiskFinding> {
        loop {
            let next = self.risk.replayed.saturating_add(1);
            let Some(h) = self.risk.held.remove(&next) else {
                return Ok(());
            };
            self.risk.held_bytes -= h.bytes();
            match &h {
                Held::Decision(d) => self.replay_decision(d.recorded())?,
                Held::Refusal(r) => self.replay_refusal(r)?,
            }
            self.risk.replayed = next;
        }
    }

    /// Counts a refusal as the coordinator's engine did
    /// (`keyfold_risk::refusal_step`: the same pruning schedule, then the
    /// refusal against its customer and device).
    fn replay_refusal(&mut self, r: &Refusal) -> Result<(), RiskFinding> {
        keyfold_risk::refusal_step(&mut self.risk.state, r.seq, &r.input)
            .map_err(|e| r.finding(RefusalProblem::BadInput(e.to_string())))?;
        self.stats.risk_refusals += 1;
        Ok(())
    }

    /// Recomputes a decision from the state of the decisions before it,
    /// compares it with what was recorded, then counts its request.
    fn replay_decision(&mut self, h: Recorded<'_>) -> Result<(), RiskFinding> {
        let fail = |problem| h.finding(problem);
        let unparsable = |field, e: serde_json::Error| {
            fail(DecisionProblem::Unparsable {
                field,
                error: e.to_string(),
            })
        };
        let differs = |(field, recorded, recomputed)| {
            fail(DecisionProblem::Differs {
                field,
                recorded,
                recomputed,
            })
        };
        let tree = self
            .risk
            .trees
            .get(&h.tree_version)
            .ok_or_else(|| fail(DecisionProblem::UnknownTree(h.tree_version)))?;
        let input: RiskRequest =
            serde_json::from_str(h.input).map_err(|e| unparsable("input", e))?;
        // The coordinator's own step (`keyfold_risk::decide_step`): prune
        // on schedule, features, decision, then count the request whatever
        // its action, so the two cannot drift apart.
        let (features, decision) =
            keyfold_risk::decide_step(&mut self.risk.state, tree, h.seq, &input)
                .map_err(|e| fail(DecisionProblem::BadInput(e.to_string())))?;
        // Compared as JSON values, both sides through the same parser: the
        // statistics are f64, and serde_json's float parsing is not an
        // exact inverse of its printing, so a value compared with its own
        // printed and re-parsed form could differ in the last bit.
        let recorded: Value =
            serde_json::from_str(h.features).map_err(|e| unparsable("features", e))?;
        let fresh: Value = serde_json::to_string(&features)
            .and_then(|s| serde_json::from_str(&s))
            .map_err(|e| unparsable("features (recomputed)", e))?;
        if let Some(d) = first_difference("features", &recorded, &fresh) {
            return Err(differs(d));
        }
        let recorded: Decision =
            serde_json::from_str(h.detail).map_err(|e| unparsable("detail", e))?;
        if recorded != decision {
            let as_value = |d: &Decision| serde_json::to_value(d).unwrap_or(Value::Null);
            let d = first_difference("detail", &as_value(&recorded), &as_value(&decision))
                .unwrap_or_else(|| ("detail".into(), String::new(), String::new()));
            return Err(differs(d));
        }
        if h.score != u64::from(decision.score) {
            return Err(differs((
                "score".into(),
                h.score.to_string(),
                decision.score.to_string(),
            )));
        }
        if h.action != decision.action.name() {
            return Err(differs((
                "action".into(),
                short(&Value::String(h.action.to_string())),
                format!("\"{}\"", decision.action.name()),
            )));
        }
        self.stats.risk_decisions += 1;
        Ok(())
    }

    /// A `freeze` entry: a known action and scope; an added freeze without
    /// a lift; a lifted one with its lift (a JSON object), at least two
    /// distinct officers in `by`, and naming a freeze in force.
    pub(super) fn freeze(&mut self, event: &Event) -> Result<(), RiskFinding> {
        let Event::Freeze {
            freeze_id,
            action,
            scope,
            by,
            lift,
            ..
        } = event
        else {
            return Ok(());
        };
        let bad = |problem: String| RiskFinding::Freeze {
            freeze_id: freeze_id.clone(),
            problem,
        };
        if FreezeScope::from_name(scope).is_none() {
            return Err(bad(format!(
                "scope {scope:?} is not customer, device, wallet or merchant"
            )));
        }
        if let Some(l) = lift {
            json_object("lift", l).map_err(bad)?;
        }
        match action.as_str() {
            FREEZE_ADDED => {
                if lift.is_some() {
                    return Err(bad("an added freeze carries a lift".into()));
                }
                self.risk.frozen.insert(freeze_id.clone());
            }
            FREEZE_LIFTED => {
                if lift.is_none() {
                    return Err(bad("lifted without a signed lift".into()));
                }
                // Lifting a freeze takes two officers.
                let officers: BTreeSet<&String> = by.iter().collect();
                if officers.len() < 2 {
                    return Err(bad(format!(
                        "lifted by {} distinct officer(s), at least 2 are needed",
                        officers.len()
                    )));
                }
                if !self.risk.frozen.remove(freeze_id) {
                    return Err(bad(
                        "lifted, but it was never added or was lifted already".into()
                    ));
                }
            }
            other => {
                return Err(bad(format!(
                    "action {other:?} is not \"added\" or \"lifted\""
                )))
            }
        }
        self.stats.freezes += 1;
        Ok(())
    }

    /// A `review` entry: a known verdict, and a signed review that is a
    /// JSON object.
    pub(super) fn review(&mut self, event: &Event) -> Result<(), RiskFinding> {
        let Event::Review {
            request_id,
            verdict,
            signed,
            ..
        } = event
        else {
            return Ok(());
        };
        let bad = |problem: String| RiskFinding::Review {
            request_id: request_id.clone(),
            problem,
        };
        if ReviewVerdict::from_name(verdict).is_none() {
            return Err(bad(format!(
                "verdict {verdict:?} is not approve, reject or escalate"
            )));
        }
        json_object("signed", signed).map_err(bad)?;
        self.stats.reviews += 1;
        Ok(())
    }

    /// A `customer_auth` entry: a customer, a known action, and a device
    /// for the device actions.
    pub(super) fn customer_auth(&mut self, event: &Event) -> Result<(), RiskFinding> {
        let Event::CustomerAuth {
            customer,
            action,
            device,
            ..
        } = event
        else {
            return Ok(());
        };
        let bad = |problem: String| RiskFinding::CustomerAuth {
            customer: customer.clone(),
            problem,
        };
        if customer.is_empty() {
            return Err(bad("the customer is empty".into()));
        }
        let Some(a) = CustomerAuthAction::from_name(action) else {
            let names: Vec<&str> = CustomerAuthAction::ALL.iter().map(|a| a.name()).collect();
            return Err(bad(format!(
                "action {} is not one of {}",
                short(&Value::String(action.clone())),
                names.join(", ")
            )));
        };
        if a.names_device() && device.as_deref().is_none_or(str::is_empty) {
            return Err(bad(format!("{action} names no device")));
        }
        self.stats.customer_auth_changes += 1;
        Ok(())
    }

    /// At the end of the log: a step still held back has a gap before it.
    pub(super) fn risk_finish(&mut self) -> Result<(), VerifyError> {
        match self.risk.gap() {
            Some((index, gap)) => Err(VerifyError::BadEntry {
                index,
                reason: EntryError::Risk(Box::new(gap)),
            }),
            None => Ok(()),
        }
    }
}
