//! The risk module: judges every payout that carries a client context with
//! `keyfold-risk`'s decision tree before the policy sees it, freezes
//! subjects, holds payouts for review, and records every decision in the
//! audit log with its inputs and features so the auditor recomputes it.
//!
//! * **Order.** Decisions are numbered (`seq`) under one short lock that
//!   reads the features, evaluates the tree and counts the request
//!   (`keyfold_risk::decide_step`, the function the auditor replays); the
//!   decision's audit entry and store row are written after the lock, in
//!   one journal step. At start the windows are rebuilt by replaying every
//!   recorded decision in `seq` order.
//! * **Outcomes.** `allow` goes on to the policy; `step_up` refuses with
//!   `step_up_required` (the coordinator verifies no step-up method yet, so
//!   a client's own claim never satisfies one); `review` holds the request
//!   (`GET /v1/reviews`) until an officer's signed review releases or
//!   rejects it, or it expires; `freeze` records a freeze of the decision's
//!   scope and refuses with `risk_frozen`; `deny` refuses with
//!   `risk_denied`. A payout of a frozen customer, device, wallet or
//!   merchant is refused with `risk_frozen` before the engine runs.
//! * **Freezes** are added by the engine or an operator at once; lifting
//!   one needs two officers' signatures (`keyfold_risk::FreezeLift`).

pub mod config;
pub mod context;
pub mod customers;
mod endpoints;
pub(crate) mod recovery;
pub mod signers;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use keyfold_audit::Event;
use keyfold_policy::Payload;
use keyfold_proto::api::RiskSummary;
use keyfold_risk::{
    Action, Decision, FreezeScope, Payment, RefusalInput, RiskRequest, RiskState, RiskTree,
};
use keyfold_store::{CoordinatorStore, FreezeRow, Op, RiskOp, RiskStepRow};
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::journal::Journal;
use crate::modules::{Module, Prepared};
use crate::requests::lifecycle::Verdict;
use crate::requests::record::StoredRequest;
use crate::service::BoxFuture;
use config::RiskConfig;
use context::{PayoutClient, PseudonymKey, CLIENT_DATA};

/// The module's name (stored with requests, in holds and in module data).
pub const MODULE: &str = "risk";

/// The file in the data directory holding the pseudonym key.
const KEY_FILE: &str = "risk-pseudonym.key";

/// The live engine: the tree in force, the windows, the next `seq`.
struct Engine {
    tree: Arc<RiskTree>,
    state: RiskState,
    next_seq: u64,
}

/// The risk module (see the module docs).
pub struct Risk {
    cfg: RiskConfig,
    key: PseudonymKey,
    engine: Mutex<Engine>,
    /// Active freezes: (scope, subject) -> freeze id.
    frozen: RwLock<HashMap<(FreezeScope, String), String>>,
    journal: Journal,
    clock: Arc<dyn Clock>,
    /// The signers, to push freezes to.
    client: crate::signers::client::SignerClient,
    push_timeout: std::time::Duration,
    /// TEST ONLY: ignore freezes here (the signers must still refuse).
    skip_freezes: bool,
    /// Customers' sealed authentication records.
    vault: customers::CustomerVault,
    /// One tree update at a time.
    tree_update: tokio::sync::Mutex<()>,
    /// `[risk] tier_limits_file`, loaded at start.
    tier_limits: Option<keyfold_risk::TierLimits>,
}

impl std::fmt::Debug for Risk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Risk")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

fn load_or_create_key(dir: &Path) -> Result<PseudonymKey, String> {
    let path = dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                format!(
                    "{} must hold exactly 32 bytes; it holds {}",
                    path.display(),
                    bytes.len()
                )
            })?;
            Ok(PseudonymKey::new(arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut k = [0u8; 32];
            rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut k)
                .map_err(|e| format!("no randomness for the pseudonym key: {e}"))?;
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            f.write_all(&k)
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(PseudonymKey::new(k))
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The audit event of a tree that came into force.
fn tree_event(document: &str, version: u64, update: Option<String>) -> Event {
    Event::RiskTree {
        version,
        document_hash: Sha256::digest(document.as_bytes()).into(),
        document: document.to_string(),
        update,
    }
}

impl Risk {
    /// Opens the module at start (blocking: reads the store, may write the
    /// first tree): the pseudonym key, the tree in force, the windows
    /// rebuilt from every recorded decision, the active freezes.
    #[allow(clippy::too_many_arguments)] // the coordinator's parts, once at start
    pub fn open(
        cfg: RiskConfig,
        data_dir: &Path,
        store: &CoordinatorStore,
        journal: Journal,
        clock: Arc<dyn Clock>,
        client: crate::signers::client::SignerClient,
        push_timeout: std::time::Duration,
        skip_freezes: bool,
    ) -> Result<Risk, String> {
        cfg.validate()?;
        let key = load_or_create_key(data_dir)?;
        let vault = customers::CustomerVault::open(data_dir)?;
        let tier_limits = match &cfg.tier_limits_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("[risk] tier_limits_file {}: {e}", p.display()))?;
                Some(
                    keyfold_risk::TierLimits::from_toml(&text)
                        .map_err(|e| format!("[risk] tier_limits_file {}: {e}", p.display()))?,
                )
            }
            None => None,
        };
        let tree = match store.latest_risk_tree().map_err(|e| e.to_string())? {
            Some((version, document, _)) => {
                let t = RiskTree::from_toml(&document)
                    .map_err(|e| format!("stored risk tree {version}: {e}"))?;
                tracing::info!(version, "risk tree loaded");
                t
            }
            None => {
                let document = match &cfg.tree_file {
                    Some(p) => std::fs::read_to_string(p)
                        .map_err(|e| format!("risk tree {}: {e}", p.display()))?,
                    None => keyfold_risk::DEFAULT_TREE_TOML.to_string(),
                };
                let t = RiskTree::from_toml(&document).map_err(|e| format!("risk tree: {e}"))?;
                let at = i64::try_from(clock.now_secs()).unwrap_or(i64::MAX);
                journal
                    .submit(
                        vec![tree_event(&document, t.version(), None)],
                        vec![Op::Risk(RiskOp::InsertTree {
                            version: t.version(),
                            document,
                            update_json: None,
                            at,
                        })],
                    )
                    .done_blocking()
                    .map_err(|e| format!("recording the first risk tree: {e}"))?;
                tracing::info!(version = t.version(), "risk tree in force (first)");
                t
            }
        };
        let (rows, last_seq) = store
            .risk_steps_since(i64::MIN)
            .map_err(|e| e.to_string())?;
        let mut state = RiskState::new();
        // Decisions and refused device signatures, in the one order the
        // engine took them (the auditor replays the same).
        for row in &rows {
            match row {
                RiskStepRow::Decision(row) => {
                    let input: RiskRequest = serde_json::from_str(&row.input_json)
                        .map_err(|e| format!("risk decision {} does not parse: {e}", row.seq))?;
                    keyfold_risk::replay_step(&mut state, row.seq, &input)
                        .map_err(|e| format!("risk decision {}: {e}", row.seq))?;
                }
                RiskStepRow::Refusal(row) => {
                    let input: RefusalInput = serde_json::from_str(&row.input_json)
                        .map_err(|e| format!("risk refusal {} does not parse: {e}", row.seq))?;
                    keyfold_risk::refusal_step(&mut state, row.seq, &input)
                        .map_err(|e| format!("risk refusal {}: {e}", row.seq))?;
                }
            }
        }
        let mut frozen = HashMap::new();
        for f in store.active_freezes().map_err(|e| e.to_string())? {
            if let Some(scope) = FreezeScope::from_name(&f.scope) {
                frozen.insert((scope, f.subject), f.freeze_id);
            }
        }
        tracing::info!(
            decisions = rows.len(),
            next_seq = last_seq + 1,
            freezes = frozen.len(),
            "risk windows rebuilt"
        );
        Ok(Risk {
            cfg,
            key,
            engine: Mutex::new(Engine {
                tree: Arc::new(tree),
                state,
                next_seq: last_seq + 1,
            }),
            frozen: RwLock::new(frozen),
            journal,
            clock,
            client,
            push_timeout,
            skip_freezes,
            vault,
            tree_update: tokio::sync::Mutex::new(()),
            tier_limits,
        })
    }

    /// Verifies a signed tree against the current one and puts it in
    /// force once recorded. The engine's lock is held across the check and
    /// the swap (not across the write) so two updates cannot both pass the
    /// version check; the windows are kept: they count payments, not trees.
    pub(crate) async fn replace_tree(
        &self,
        signed: &keyfold_risk::SignedTree,
        admins: &keyfold_risk::AdminSet,
        update_json: String,
        at: i64,
    ) -> Result<u64, crate::service::ServiceError> {
        use crate::service::ServiceError;
        let _one_update = self.tree_update.lock().await;
        let current = self.tree();
        let tree = signed
            .verify(admins, Some(&current))
            .map_err(|e| ServiceError::PolicyDenied(format!("risk tree update refused: {e}")))?;
        let version = tree.version();
        self.journal
            .write(
                vec![tree_event(
                    &signed.tree_toml,
                    version,
                    Some(update_json.clone()),
                )],
                vec![Op::Risk(RiskOp::InsertTree {
                    version,
                    document: signed.tree_toml.clone(),
                    update_json: Some(update_json),
                    at,
                })],
            )
            .await
            .map_err(|e| ServiceError::AuditUnavailable(format!("risk tree not recorded: {e}")))?;
        let mut engine = match self.engine.lock() {
            Ok(e) => e,
            Err(p) => p.into_inner(),
        };
        engine.tree = Arc::new(tree);
        tracing::info!(version, "risk tree in force (signed update)");
        Ok(version)
    }

    /// Customers' sealed records.
    pub(crate) fn vault(&self) -> &customers::CustomerVault {
        &self.vault
    }

    /// Records a refused device signature as the engine's next numbered
    /// step (it counts toward `refusals_at_least`), in the audit log and
    /// the store.
    pub(crate) async fn refusal(
        &self,
        request_id: &str,
        customer: Option<&str>,
        device: Option<&str>,
        code: &str,
    ) -> Result<u64, String> {
        let input = RefusalInput {
            customer_id: customer.map(str::to_string),
            device_id: device.map(str::to_string),
            code: code.to_string(),
            at: self.clock.now_secs(),
        };
        let seq = {
            let mut engine = match self.engine.lock() {
                Ok(e) => e,
                Err(p) => p.into_inner(),
            };
            let seq = engine.next_seq;
            keyfold_risk::refusal_step(&mut engine.state, seq, &input)
                .map_err(|e| e.to_string())?;
            engine.next_seq += 1;
            seq
        };
        let input_json = serde_json::to_string(&input).map_err(|e| e.to_string())?;
        self.journal
            .write(
                vec![Event::RiskRefusal {
                    request_id: request_id.to_string(),
                    seq,
                    input: input_json.clone(),
                    code: code.to_string(),
                }],
                vec![Op::Risk(RiskOp::InsertRefusal {
                    seq,
                    request_id: request_id.to_string(),
                    at: i64::try_from(input.at).unwrap_or(i64::MAX),
                    input_json,
                })],
            )
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(request = %request_id, seq, code, "device signature refused");
        Ok(seq)
    }

    /// Pushes a lift to every signer.
    pub(crate) fn push_lift(&self, freeze_id: &str, lift_json: &str) {
        signers::push_lift(&self.client, self.push_timeout, freeze_id, lift_json);
    }

    /// Pushes a new freeze to every signer.
    pub(crate) fn push_freeze(&self, f: &FreezeRow) {
        signers::push_freeze(&self.client, self.push_timeout, f);
    }

    /// The pseudonym key (the payout endpoint pseudonymises with it).
    pub fn key(&self) -> &PseudonymKey {
        &self.key
    }

    /// Its configuration.
    pub fn config(&self) -> &RiskConfig {
        &self.cfg
    }

    /// The tree in force.
    pub fn tree(&self) -> Arc<RiskTree> {
        match self.engine.lock() {
            Ok(e) => e.tree.clone(),
            Err(p) => p.into_inner().tree.clone(),
        }
    }

    /// The active freeze on `scope`/`subject`, if any.
    pub fn frozen(&self, scope: FreezeScope, subject: &str) -> Option<String> {
        let map = match self.frozen.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        map.get(&(scope, subject.to_string())).cloned()
    }

    fn set_frozen(&self, scope: FreezeScope, subject: &str, id: Option<&str>) {
        let mut map = match self.frozen.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        match id {
            Some(id) => {
                map.insert((scope, subject.to_string()), id.to_string());
            }
            None => {
                map.remove(&(scope, subject.to_string()));
            }
        }
    }

    /// The subjects of a request, broadest last.
    fn subjects(req: &RiskRequest) -> Vec<(FreezeScope, String)> {
        let mut out = Vec::new();
        if let Some(d) = &req.context.device_id {
            out.push((FreezeScope::Device, d.clone()));
        }
        if let Some(c) = &req.context.customer_id {
            out.push((FreezeScope::Customer, c.clone()));
        }
        out.push((FreezeScope::Wallet, req.payment.wallet.clone()));
        if let Some(m) = &req.payment.merchant {
            out.push((FreezeScope::Merchant, m.clone()));
        }
        out
    }

    /// What a freeze of `scope` applies to for this request: the subject of
    /// that scope, or the next broader one the request has (a device freeze
    /// of a request without a device freezes its customer, then its wallet).
    fn freeze_subject(req: &RiskRequest, scope: FreezeScope) -> (FreezeScope, String) {
        let order = [
            FreezeScope::Device,
            FreezeScope::Customer,
            FreezeScope::Wallet,
            FreezeScope::Merchant,
        ];
        let subjects = Self::subjects(req);
        let start = order.iter().position(|s| *s == scope).unwrap_or(0);
        for s in &order[start..] {
            if let Some((_, subj)) = subjects.iter().find(|(x, _)| x == s) {
                return (*s, subj.clone());
            }
        }
        (FreezeScope::Wallet, req.payment.wallet.clone())
    }

    /// The engine's input for a payout's request, if it carries a client
    /// context (and is the payout's first request: a fee replacement is the
    /// same payment and is not judged twice).
    /// With it, whether a device signature passed from a device still
    /// inside its delay (`PayoutClient::device_too_new`).
    fn input_of(
        &self,
        request: &StoredRequest,
        at: u64,
    ) -> Result<Option<(RiskRequest, bool)>, String> {
        if crate::payments::payout::is_replacement(&request.request.id) {
            return Ok(None);
        }
        let Payload::ChainTransaction { chain, .. } = &request.request.payload else {
            return Ok(None);
        };
        let Some(data) = request.modules.iter().find(|m| m.module == CLIENT_DATA) else {
            return Ok(None);
        };
        let client: PayoutClient = serde_json::from_value(data.data.clone())
            .map_err(|e| format!("the payout's client context does not parse: {e}"))?;
        let device_too_new = client.device_too_new;
        Ok(Some((
            RiskRequest {
                payment: Payment {
                    chain: chain.clone(),
                    asset: request.request.asset.clone(),
                    amount: request.request.amount,
                    destination: keyfold_risk::canonical_destination(&request.request.destination)
                        .into_owned(),
                    wallet: request.key_id.clone(),
                    merchant: client.merchant,
                },
                context: client.context,
                at,
            },
            device_too_new,
        )))
    }

    /// Judges one request (see the module docs).
    async fn judge(&self, request: &StoredRequest) -> Prepared {
        let refuse = |code: &str, why: String, summary: Option<RiskSummary>| Prepared {
            verdict: Verdict::Refuse {
                reason: format!("{code}: {why}"),
            },
            data: summary.and_then(|s| serde_json::to_value(s).ok()),
        };
        let at = self.clock.now_secs();
        let (input, device_too_new) = match self.input_of(request, at) {
            Ok(Some(i)) => i,
            Ok(None) => {
                let is_payout = matches!(request.request.payload, Payload::ChainTransaction { .. })
                    && request
                        .request
                        .id
                        .starts_with(crate::payments::payout::REQUEST_PREFIX)
                    && !crate::payments::payout::is_replacement(&request.request.id);
                // A frozen wallet stops every request it would sign, judged
                // or not (its signers refuse it too).
                if let Some(id) = self
                    .frozen(FreezeScope::Wallet, &request.key_id)
                    .filter(|_| !self.skip_freezes)
                {
                    return refuse(
                        "risk_frozen",
                        format!("its wallet is frozen ({id})"),
                        Some(frozen_summary(id)),
                    );
                }
                if self.cfg.require_client && is_payout {
                    return refuse(
                        "risk_denied",
                        "this coordinator requires a client context on every payout ([risk] require_client)".into(),
                        None,
                    );
                }
                return Prepared::proceed();
            }
            Err(e) => return refuse("risk_denied", e, None),
        };
        // A frozen subject stops the payout before the engine counts it.
        let subjects = if self.skip_freezes {
            tracing::error!("TEST ONLY: this coordinator ignores freezes");
            Vec::new()
        } else {
            Self::subjects(&input)
        };
        for (scope, subject) in subjects {
            if let Some(id) = self.frozen(scope, &subject) {
                return Prepared {
                    verdict: Verdict::Refuse {
                        reason: format!("risk_frozen: its {} is frozen ({id})", scope.name()),
                    },
                    data: serde_json::to_value(frozen_summary(id)).ok(),
                };
            }
        }
        let step = {
            let mut engine = match self.engine.lock() {
                Ok(e) => e,
                Err(p) => p.into_inner(),
            };
            let seq = engine.next_seq;
            let tree = engine.tree.clone();
            match keyfold_risk::decide_step(&mut engine.state, &tree, seq, &input) {
                Ok((features, decision)) => {
                    engine.next_seq += 1;
                    Ok((seq, features, decision))
                }
                Err(e) => Err(e),
            }
        };
        let (seq, features, decision) = match step {
            Ok(s) => s,
            Err(e) => return refuse("risk_denied", format!("client context refused: {e}"), None),
        };
        let freeze = (decision.action == Action::Freeze).then(|| {
            let scope = decision.freeze_scope.unwrap_or(FreezeScope::Device);
            let (scope, subject) = Self::freeze_subject(&input, scope);
            FreezeRow {
                freeze_id: format!("frz-s{seq}"),
                scope: scope.name().to_string(),
                subject,
                reason: format!(
                    "risk decision {seq} (score {}): {}",
                    decision.score,
                    reason_names(&decision).join(", ")
                ),
                request_id: Some(request.request.id.clone()),
                added_by: MODULE.to_string(),
                added_at: i64::try_from(at).unwrap_or(i64::MAX),
                lifted_at: None,
                lifted_by: None,
                lift_json: None,
            }
        });
        if let Err(e) = self
            .record(request, seq, &input, &features, &decision, freeze.as_ref())
            .await
        {
            tracing::error!(request = %request.request.id, seq, error = %e, "risk decision not recorded");
            return refuse(
                "risk_unavailable",
                format!("the risk decision could not be recorded ({e}); retry later"),
                None,
            );
        }
        if let Some(f) = &freeze {
            if let Some(scope) = FreezeScope::from_name(&f.scope) {
                self.set_frozen(scope, &f.subject, Some(&f.freeze_id));
            }
            signers::push_freeze(&self.client, self.push_timeout, f);
        }
        // The customer's tier limits, on a payment the tree lets through:
        // the 24-hour total is the customer's window, this payment removed.
        let over_tier = match (&self.tier_limits, decision.action) {
            (Some(limits), Action::Allow) if input.context.customer_id.is_some() => {
                let p = &input.payment;
                let spent = features
                    .customer
                    .window(keyfold_risk::Window::H24)
                    .sum
                    .saturating_sub(p.amount);
                limits
                    .check_tier(input.context.kyc_tier, &p.asset, p.amount, spent)
                    .err()
            }
            _ => None,
        };
        let code = match decision.action {
            Action::Allow if over_tier.is_some() => Some("kyc_tier_limit"),
            Action::Allow => None,
            // The device signed, but it is too new to stand in for a step-up.
            Action::StepUp if device_too_new => Some("device_too_new"),
            Action::StepUp => Some("step_up_required"),
            Action::Review => Some("risk_review"),
            Action::Freeze => Some("risk_frozen"),
            Action::Deny => Some("risk_denied"),
        };
        let summary = RiskSummary {
            seq,
            score: decision.score,
            action: decision.action.name().to_string(),
            reasons: reason_names(&decision),
            tree_version: decision.tree_version,
            code: code.map(str::to_string),
            freeze_id: freeze.as_ref().map(|f| f.freeze_id.clone()),
        };
        tracing::info!(
            request = %request.request.id,
            seq,
            score = decision.score,
            action = decision.action.name(),
            "risk decision"
        );
        let why = format!(
            "score {} ({})",
            decision.score,
            if summary.reasons.is_empty() {
                "no rule fired".to_string()
            } else {
                summary.reasons.join(", ")
            }
        );
        let verdict = match (decision.action, code) {
            (Action::Allow, Some(c)) => Verdict::Refuse {
                reason: format!(
                    "{c}: {}",
                    over_tier.map(|r| r.to_string()).unwrap_or_default()
                ),
            },
            (Action::Allow, _) | (_, None) => Verdict::Continue,
            (Action::Review, Some(c)) => Verdict::Hold {
                reason: format!("{c}: {why}"),
            },
            (Action::Freeze, Some(c)) => Verdict::Refuse {
                reason: format!(
                    "{c}: {why}; froze its {}",
                    freeze
                        .as_ref()
                        .map(|f| f.scope.as_str())
                        .unwrap_or("device")
                ),
            },
            (_, Some(c)) => Verdict::Refuse {
                reason: format!("{c}: {why}"),
            },
        };
        Prepared {
            verdict,
            data: serde_json::to_value(&summary).ok(),
        }
    }

    /// Writes a decision (and the freeze it adds) to the audit log and the
    /// store, in one journal step.
    async fn record(
        &self,
        request: &StoredRequest,
        seq: u64,
        input: &RiskRequest,
        features: &keyfold_risk::Features,
        decision: &Decision,
        freeze: Option<&FreezeRow>,
    ) -> Result<(), String> {
        let input_json = serde_json::to_string(input).map_err(|e| e.to_string())?;
        let features_json = serde_json::to_string(features).map_err(|e| e.to_string())?;
        let decision_json = serde_json::to_string(decision).map_err(|e| e.to_string())?;
        let mut events = vec![Event::RiskDecision {
            request_id: request.request.id.clone(),
            seq,
            tree_version: decision.tree_version,
            input: input_json.clone(),
            features: features_json,
            score: u64::from(decision.score),
            action: decision.action.name().to_string(),
            detail: decision_json.clone(),
        }];
        let mut ops = vec![Op::Risk(RiskOp::InsertDecision {
            seq,
            request_id: request.request.id.clone(),
            at: i64::try_from(input.at).unwrap_or(i64::MAX),
            input_json,
            decision_json,
        })];
        if let Some(f) = freeze {
            events.push(freeze_event(f, "added", vec![f.added_by.clone()], None));
            ops.push(Op::Risk(RiskOp::AddFreeze(f.clone())));
        }
        self.journal
            .write(events, ops)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The risk facts the policy sees for a request the engine judged: its
/// score and action, and the customer's KYC tier. `None` for a request the
/// engine did not judge (no client context, or stopped by a freeze).
pub(crate) fn facts_of(stored: &StoredRequest) -> Option<keyfold_policy::RiskFacts> {
    let summary: RiskSummary = stored
        .modules
        .iter()
        .find(|m| m.module == MODULE)
        .and_then(|m| serde_json::from_value(m.data.clone()).ok())?;
    if summary.seq == 0 {
        return None;
    }
    let client: PayoutClient = stored
        .modules
        .iter()
        .find(|m| m.module == CLIENT_DATA)
        .and_then(|m| serde_json::from_value(m.data.clone()).ok())?;
    let action = match summary.action.as_str() {
        "allow" => keyfold_policy::RiskAction::Allow,
        "step_up" => keyfold_policy::RiskAction::StepUp,
        "review" => keyfold_policy::RiskAction::Review,
        "freeze" => keyfold_policy::RiskAction::Freeze,
        _ => keyfold_policy::RiskAction::Deny,
    };
    let kyc_tier = match client.context.kyc_tier {
        keyfold_risk::KycTier::None => keyfold_policy::KycLevel::None,
        keyfold_risk::KycTier::Basic => keyfold_policy::KycLevel::Basic,
        keyfold_risk::KycTier::Full => keyfold_policy::KycLevel::Full,
    };
    Some(keyfold_policy::RiskFacts {
        score: summary.score,
        action,
        kyc_tier,
    })
}

/// The customer, device and merchant a request names (from its client
/// context), for the signers' own freeze check (they add the wallet).
pub(crate) fn intent_subjects(stored: &StoredRequest) -> Vec<keyfold_proto::signer::FreezeSubject> {
    let Some(client) = stored
        .modules
        .iter()
        .find(|m| m.module == CLIENT_DATA)
        .and_then(|m| serde_json::from_value::<PayoutClient>(m.data.clone()).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |scope: &str, subject: &Option<String>| {
        if let Some(s) = subject {
            out.push(keyfold_proto::signer::FreezeSubject {
                scope: scope.to_string(),
                subject: s.clone(),
            });
        }
    };
    add("customer", &client.context.customer_id);
    add("device", &client.context.device_id);
    add("merchant", &client.merchant);
    out
}

/// The audit event of a freeze added or lifted.
pub(crate) fn freeze_event(
    f: &FreezeRow,
    action: &str,
    by: Vec<String>,
    lift: Option<String>,
) -> Event {
    Event::Freeze {
        freeze_id: f.freeze_id.clone(),
        action: action.to_string(),
        scope: f.scope.clone(),
        subject: f.subject.clone(),
        reason: f.reason.clone(),
        request_id: f.request_id.clone(),
        by,
        lift,
    }
}

/// What a payout stopped by freeze `id` shows: no decision (seq 0), the
/// freeze named.
fn frozen_summary(id: String) -> RiskSummary {
    RiskSummary {
        seq: 0,
        score: 0,
        action: "freeze".into(),
        reasons: Vec::new(),
        tree_version: 0,
        code: Some("risk_frozen".into()),
        freeze_id: Some(id),
    }
}

fn reason_names(d: &Decision) -> Vec<String> {
    d.reasons.iter().map(|r| r.rule.clone()).collect()
}

impl Module for Risk {
    fn name(&self) -> &'static str {
        MODULE
    }

    fn prepare<'a>(&'a self, request: &'a StoredRequest) -> BoxFuture<'a, Prepared> {
        if !self.cfg.enabled {
            return Box::pin(async { Prepared::proceed() });
        }
        Box::pin(self.judge(request))
    }
}
