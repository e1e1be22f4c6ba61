//! The risk events of the audit log (`risk_tree`, `risk_decision`, `freeze`,
//! `review`, `risk_refusal`, `customer_auth`): their JSON form and canonical bytes as `docs/audit-log.md`
//! section 3.3 lays them out, the `record` helpers that build them, and the
//! auditor's risk checks on logs built like the coordinator builds them:
//! decisions computed with `keyfold_risk`'s default tree, and lies pushed
//! between honest entries, so that only the recomputation can catch them.

mod common;

use common::{audit, ed, Sim, ADMINS, BTC_DAILY, MALLORY, T0};
use keyfold_audit::record::{
    customer_auth_event, freeze_added_event, freeze_lifted_event, review_event,
    risk_decision_event, risk_refusal_event, risk_tree_event, CustomerAuthAction, ReviewVerdict,
};
use keyfold_audit::{
    DecisionProblem, Entry, EntryError, Event, RefusalProblem, RiskFinding, VerifyError,
};
use keyfold_risk::{
    default_tree, evaluate, refusal_step, Action, ClientContext, Decision, Features, FreezeScope,
    KycTier, Payment, RefusalInput, RiskRequest, RiskState, RiskTree, SignedTree, TreeSignature,
    DEFAULT_TREE_TOML,
};
use sha2::{Digest, Sha256};

/// A 25 USDC payment by customer `c-1` from device `d-1`, `secs` after T0.
fn payment(secs: u64) -> RiskRequest {
    RiskRequest {
        payment: Payment {
            chain: "base".into(),
            asset: "USDC".into(),
            amount: 25_000_000,
            destination: "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".into(),
            wallet: "hot-1".into(),
            merchant: Some("shop".into()),
        },
        context: ClientContext {
            customer_id: Some("c-1".into()),
            device_id: Some("d-1".into()),
            kyc_tier: KycTier::Basic,
            ..ClientContext::default()
        },
        at: T0 + secs,
    }
}

// ---------------------------------------------------------------------------
// Canonical bytes, written out field by field from the docs.

fn str_(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    v
}

fn opt_str(s: Option<&str>) -> Vec<u8> {
    match s {
        None => vec![0],
        Some(s) => [vec![1], str_(s)].concat(),
    }
}

fn list(l: &[&str]) -> Vec<u8> {
    let mut v = (l.len() as u32).to_be_bytes().to_vec();
    for s in l {
        v.extend(str_(s));
    }
    v
}

/// The bytes every entry starts with, up to and including the type code.
fn header(index: u64, time: i64, prev: [u8; 32], code: u16) -> Vec<u8> {
    [
        str_("keyfold/audit/entry"),
        2u16.to_be_bytes().to_vec(),
        index.to_be_bytes().to_vec(),
        time.to_be_bytes().to_vec(),
        prev.to_vec(),
        code.to_be_bytes().to_vec(),
    ]
    .concat()
}

fn entry(event: Event) -> Entry {
    Entry {
        index: 5,
        time: 1_735_689_600_123,
        prev_hash: [0xab; 32],
        event,
    }
}

#[test]
fn risk_tree_bytes_and_json() {
    let doc = "version = 2\n";
    let hash: [u8; 32] = Sha256::digest(doc.as_bytes()).into();
    let e = entry(Event::RiskTree {
        version: 2,
        document_hash: hash,
        document: doc.into(),
        update: Some("{\"tree_toml\":\"version = 2\\n\",\"signatures\":[]}".into()),
    });
    assert_eq!(e.event.type_code(), 14);
    assert_eq!(e.event.request_id(), None);
    let want = [
        header(5, 1_735_689_600_123, [0xab; 32], 14),
        2u64.to_be_bytes().to_vec(),
        hash.to_vec(),
        str_(doc),
        opt_str(Some("{\"tree_toml\":\"version = 2\\n\",\"signatures\":[]}")),
    ]
    .concat();
    assert_eq!(e.canonical_bytes(), want);
    let json = String::from_utf8(e.to_json_line()).unwrap();
    assert!(
        json.contains(&format!(
            "\"event\":{{\"type\":\"risk_tree\",\"version\":2,\"document_hash\":\"{}\",\"document\":\"version = 2\\n\",\"update\":",
            hex::encode(hash)
        )),
        "{json}"
    );
}

#[test]
fn risk_decision_bytes_and_json() {
    let e = entry(Event::RiskDecision {
        request_id: "r-9".into(),
        seq: 7,
        tree_version: 1,
        input: "{\"i\":1}".into(),
        features: "{\"f\":2}".into(),
        score: 40,
        action: "review".into(),
        detail: "{\"d\":3}".into(),
    });
    assert_eq!(e.event.type_code(), 15);
    assert_eq!(e.event.request_id(), Some("r-9"));
    let want = [
        header(5, 1_735_689_600_123, [0xab; 32], 15),
        str_("r-9"),
        7u64.to_be_bytes().to_vec(),
        1u64.to_be_bytes().to_vec(),
        str_("{\"i\":1}"),
        str_("{\"f\":2}"),
        40u64.to_be_bytes().to_vec(),
        str_("review"),
        str_("{\"d\":3}"),
    ]
    .concat();
    assert_eq!(e.canonical_bytes(), want);
    let json = String::from_utf8(e.to_json_line()).unwrap();
    assert!(
        json.ends_with(
            "\"event\":{\"type\":\"risk_decision\",\"request_id\":\"r-9\",\"seq\":7,\"tree_version\":1,\"input\":\"{\\\"i\\\":1}\",\"features\":\"{\\\"f\\\":2}\",\"score\":40,\"action\":\"review\",\"detail\":\"{\\\"d\\\":3}\"}}\n"
        ),
        "{json}"
    );
}

#[test]
fn freeze_bytes_and_json() {
    let e = entry(Event::Freeze {
        freeze_id: "fz-1".into(),
        action: "lifted".into(),
        scope: "device".into(),
        subject: "d-1".into(),
        reason: "owner confirmed".into(),
        request_id: Some("r-3".into()),
        by: vec!["alice".into(), "bob".into()],
        lift: Some("{\"s\":[]}".into()),
    });
    assert_eq!(e.event.type_code(), 16);
    assert_eq!(e.event.request_id(), Some("r-3"));
    let want = [
        header(5, 1_735_689_600_123, [0xab; 32], 16),
        str_("fz-1"),
        str_("lifted"),
        str_("device"),
        str_("d-1"),
        str_("owner confirmed"),
        opt_str(Some("r-3")),
        list(&["alice", "bob"]),
        opt_str(Some("{\"s\":[]}")),
    ]
    .concat();
    assert_eq!(e.canonical_bytes(), want);
    let json = String::from_utf8(e.to_json_line()).unwrap();
    assert!(
        json.ends_with(
            "\"event\":{\"type\":\"freeze\",\"freeze_id\":\"fz-1\",\"action\":\"lifted\",\"scope\":\"device\",\"subject\":\"d-1\",\"reason\":\"owner confirmed\",\"request_id\":\"r-3\",\"by\":[\"alice\",\"bob\"],\"lift\":\"{\\\"s\\\":[]}\"}}\n"
        ),
        "{json}"
    );
    // An operator's freeze names no request.
    let added = entry(Event::Freeze {
        freeze_id: "fz-2".into(),
        action: "added".into(),
        scope: "wallet".into(),
        subject: "hot-1".into(),
        reason: "incident".into(),
        request_id: None,
        by: vec!["ops".into()],
        lift: None,
    });
    assert_eq!(added.event.request_id(), None);
    let bytes = added.canonical_bytes();
    assert!(bytes.ends_with(&[opt_str(None), list(&["ops"]), opt_str(None)].concat()));
}

#[test]
fn review_bytes_and_json() {
    let e = entry(Event::Review {
        request_id: "r-4".into(),
        officer: "carol".into(),
        verdict: "reject".into(),
        signed: "{\"sig\":\"00\"}".into(),
    });
    assert_eq!(e.event.type_code(), 17);
    assert_eq!(e.event.request_id(), Some("r-4"));
    let want = [
        header(5, 1_735_689_600_123, [0xab; 32], 17),
        str_("r-4"),
        str_("carol"),
        str_("reject"),
        str_("{\"sig\":\"00\"}"),
    ]
    .concat();
    assert_eq!(e.canonical_bytes(), want);
    let json = String::from_utf8(e.to_json_line()).unwrap();
    assert!(
        json.ends_with(
            "\"event\":{\"type\":\"review\",\"request_id\":\"r-4\",\"officer\":\"carol\",\"verdict\":\"reject\",\"signed\":\"{\\\"sig\\\":\\\"00\\\"}\"}}\n"
        ),
        "{json}"
    );
}

#[test]
fn risk_event_bounds() {
    use keyfold_audit::event::{MAX_DOCUMENT, MAX_LIST, MAX_STRING};
    use keyfold_audit::BoundsError;
    let big_doc = "x".repeat(MAX_DOCUMENT + 1);
    let big_str = "x".repeat(MAX_STRING + 1);
    let decision = |input: String, action: String| Event::RiskDecision {
        request_id: "r".into(),
        seq: 1,
        tree_version: 1,
        input,
        features: "{}".into(),
        score: 0,
        action,
        detail: "{}".into(),
    };
    // Documents may be long (up to MAX_DOCUMENT), plain strings may not.
    assert_eq!(
        decision("x".repeat(MAX_STRING + 1), "allow".into()).validate(),
        Ok(())
    );
    assert_eq!(
        decision(big_doc.clone(), "allow".into()).validate(),
        Err(BoundsError::StringTooLong("input"))
    );
    assert_eq!(
        decision("{}".into(), big_str.clone()).validate(),
        Err(BoundsError::StringTooLong("action"))
    );
    let freeze = |by: Vec<String>, lift: Option<String>| Event::Freeze {
        freeze_id: "f".into(),
        action: "lifted".into(),
        scope: "device".into(),
        subject: "d".into(),
        reason: "r".into(),
        request_id: None,
        by,
        lift,
    };
    assert_eq!(
        freeze(vec!["a".into(); MAX_LIST + 1], None).validate(),
        Err(BoundsError::ListTooLong("by"))
    );
    assert_eq!(
        freeze(vec![big_str.clone()], None).validate(),
        Err(BoundsError::StringTooLong("by"))
    );
    assert_eq!(
        freeze(vec![], Some(big_doc.clone())).validate(),
        Err(BoundsError::StringTooLong("lift"))
    );
    let tree = Event::RiskTree {
        version: 1,
        document_hash: [0; 32],
        document: "v".into(),
        update: Some(big_doc.clone()),
    };
    assert_eq!(tree.validate(), Err(BoundsError::StringTooLong("update")));
    let review = Event::Review {
        request_id: "r".into(),
        officer: big_str,
        verdict: "approve".into(),
        signed: "{}".into(),
    };
    assert_eq!(
        review.validate(),
        Err(BoundsError::StringTooLong("officer"))
    );
}

// ---------------------------------------------------------------------------
// Constructors (`keyfold_audit::record`).

#[test]
fn constructors_carry_the_engine_types_as_json() {
    let tree = default_tree().unwrap();
    let state = RiskState::new();
    let input = payment(0);
    let features = state.features(&tree, &input).unwrap();
    let decision = evaluate(&tree, &features);
    let Event::RiskDecision {
        request_id,
        seq,
        tree_version,
        input: input_json,
        features: features_json,
        score,
        action,
        detail,
    } = risk_decision_event("r-1", 1, &input, &features, &decision).unwrap()
    else {
        panic!("not a risk decision");
    };
    assert_eq!((request_id.as_str(), seq, tree_version), ("r-1", 1, 1));
    assert_eq!(score, u64::from(decision.score));
    assert_eq!(action, decision.action.name());
    assert_eq!(
        serde_json::from_str::<RiskRequest>(&input_json).unwrap(),
        input
    );
    assert_eq!(serde_json::from_str::<Decision>(&detail).unwrap(), decision);
    let f: Features = serde_json::from_str(&features_json).unwrap();
    assert_eq!((f.at, f.amount, f.first_device), (T0, 25_000_000, true));

    let Event::RiskTree {
        version,
        document_hash,
        document,
        update,
    } = risk_tree_event(1, DEFAULT_TREE_TOML, None).unwrap()
    else {
        panic!("not a risk tree");
    };
    assert_eq!(version, 1);
    assert_eq!(document, DEFAULT_TREE_TOML);
    assert_eq!(
        document_hash,
        <[u8; 32]>::from(Sha256::digest(DEFAULT_TREE_TOML))
    );
    assert_eq!(update, None);
    let signed = SignedTree {
        tree_toml: DEFAULT_TREE_TOML.replace("version = 1", "version = 2"),
        signatures: vec![],
    };
    let Event::RiskTree { update, .. } =
        risk_tree_event(2, &signed.tree_toml, Some(&signed)).unwrap()
    else {
        panic!("not a risk tree");
    };
    assert_eq!(
        serde_json::from_str::<SignedTree>(&update.unwrap()).unwrap(),
        signed
    );

    let added = freeze_added_event(
        "fz-1",
        FreezeScope::Device,
        "d-1",
        "burst",
        Some("r-6"),
        "risk",
    );
    assert!(
        matches!(&added, Event::Freeze { action, scope, by, lift: None, .. }
        if action == "added" && scope == "device" && by == &["risk"])
    );
    let officers = vec!["alice".to_string(), "bob".to_string()];
    let lifted = freeze_lifted_event(
        "fz-1",
        FreezeScope::Device,
        "d-1",
        "owner confirmed",
        Some("r-6"),
        &officers,
        &serde_json::json!({ "signatures": ["..", ".."] }),
    )
    .unwrap();
    assert!(
        matches!(&lifted, Event::Freeze { action, by, lift: Some(l), .. }
        if action == "lifted" && by == &officers && l.starts_with('{'))
    );
    let review = review_event(
        "r-8",
        "carol",
        ReviewVerdict::Escalate,
        &serde_json::json!({ "signature": "00" }),
    )
    .unwrap();
    assert!(matches!(&review, Event::Review { verdict, .. } if verdict == "escalate"));
    for v in ReviewVerdict::ALL {
        assert_eq!(ReviewVerdict::from_name(v.name()), Some(v));
    }
    assert_eq!(ReviewVerdict::from_name("Approve"), None);
}

// ---------------------------------------------------------------------------
// The auditor's risk checks.

/// An honest risk engine: decides with its tree and state, numbers its
/// decisions, and records them with `record::risk_decision_event`.
struct Engine {
    tree: RiskTree,
    state: RiskState,
    seq: u64,
}

impl Engine {
    fn new() -> Engine {
        Engine {
            tree: default_tree().unwrap(),
            state: RiskState::new(),
            seq: 0,
        }
    }

    /// Decides on `input` as request `request_id`, observes it, and returns
    /// the decision's event.
    fn decide(&mut self, request_id: &str, input: &RiskRequest) -> Event {
        let features = self.state.features(&self.tree, input).unwrap();
        let decision = evaluate(&self.tree, &features);
        self.state.observe(input).unwrap();
        self.seq += 1;
        risk_decision_event(request_id, self.seq, input, &features, &decision).unwrap()
    }

    /// Counts the refused device signature `input` of request `request_id`
    /// as the next step, and returns its event.
    fn refuse(&mut self, request_id: &str, input: &RefusalInput) -> Event {
        self.seq += 1;
        refusal_step(&mut self.state, self.seq, input).unwrap();
        risk_refusal_event(request_id, self.seq, input).unwrap()
    }
}

/// The default tree, version 1, as the first tree of the log.
fn first_tree() -> Event {
    risk_tree_event(1, DEFAULT_TREE_TOML, None).unwrap()
}

/// The default tree renumbered to `version`.
fn tree_toml(version: u64) -> String {
    DEFAULT_TREE_TOML.replace("version = 1\n", &format!("version = {version}\n"))
}

/// A tree update signed by the keys of these seeds.
fn signed_tree(toml: &str, seeds: &[u8]) -> SignedTree {
    SignedTree {
        tree_toml: toml.into(),
        signatures: seeds
            .iter()
            .map(|&s| TreeSignature::sign(&ed(s), toml))
            .collect(),
    }
}

/// Three payments by customer `c-1`: 25 USDC from device `d-1` (new device
/// and destination), the same a minute later, then 2,000 USDC from a new
/// device `d-2` (a step-up).
fn payments() -> [RiskRequest; 3] {
    let mut large = payment(120);
    large.payment.amount = 2_000_000_000;
    large.context.device_id = Some("d-2".into());
    [payment(0), payment(60), large]
}

/// The fixture's keys and policy (2-of-3 admins), the first risk tree,
/// then `decisions`.
fn log_with(decisions: impl IntoIterator<Item = Event>) -> Vec<Event> {
    let mut events = Sim::new(BTC_DAILY).events;
    events.push(first_tree());
    events.extend(decisions);
    events
}

/// The three honest decisions on [`payments`], as (events, index of the
/// first decision in the log).
fn honest() -> (Vec<Event>, usize) {
    let mut engine = Engine::new();
    let [a, b, c] = payments();
    let decisions = vec![
        engine.decide("r-1", &a),
        engine.decide("r-2", &b),
        engine.decide("r-3", &c),
    ];
    let events = log_with(decisions);
    let first = events.len() - 3;
    (events, first)
}

/// The risk finding that stops the audit of `events`, and the entry named.
#[track_caller]
fn finding(events: &[Event]) -> (u64, RiskFinding) {
    match audit(events) {
        Err(VerifyError::BadEntry {
            index,
            reason: EntryError::Risk(f),
        }) => (index, *f),
        other => panic!("expected a risk finding, got {other:?}"),
    }
}

/// The decision finding that stops the audit of `events`: (entry named,
/// request, seq, entry in the finding, problem).
#[track_caller]
fn decision_finding(events: &[Event]) -> (u64, String, u64, u64, DecisionProblem) {
    match finding(events) {
        (
            index,
            RiskFinding::Decision {
                request_id,
                seq,
                entry,
                problem,
            },
        ) => (index, request_id, seq, entry, problem),
        (_, other) => panic!("expected a decision finding, got {other}"),
    }
}

/// The field a `Differs` problem names.
#[track_caller]
fn differs(problem: &DecisionProblem) -> &str {
    match problem {
        DecisionProblem::Differs { field, .. } => field,
        other => panic!("expected a difference, got {other}"),
    }
}

/// Rewrites the members of a recorded risk decision.
fn edit(event: &mut Event, f: impl FnOnce(&mut String, &mut String, &mut u64, &mut String)) {
    let Event::RiskDecision {
        input,
        features,
        score,
        detail,
        ..
    } = event
    else {
        panic!("not a risk decision");
    };
    f(input, features, score, detail);
}

// (a)
#[test]
fn a_tree_and_consistent_decisions_verify() {
    let (events, first) = honest();
    // The decisions are not all trivial: the third asks for a step-up.
    let Event::RiskDecision { action, score, .. } = &events[first + 2] else {
        panic!()
    };
    assert_eq!((action.as_str(), *score), ("step_up", 30));
    let stats = audit(&events).unwrap();
    assert_eq!((stats.risk_trees, stats.risk_decisions), (1, 3));
}

// (b)
#[test]
fn a_changed_score_is_flagged() {
    let (mut events, first) = honest();
    edit(&mut events[first + 2], |_, _, score, _| *score = 10);
    let (index, request, seq, entry, problem) = decision_finding(&events);
    assert_eq!(
        (index, request.as_str(), seq, entry),
        (first as u64 + 2, "r-3", 3, first as u64 + 2)
    );
    assert_eq!(differs(&problem), "score");
    assert!(
        problem.to_string().contains("recorded 10, recomputed 30"),
        "{problem}"
    );
}

// (b) The same lie told in the detail too.
#[test]
fn a_changed_score_in_the_detail_is_flagged() {
    let (mut events, first) = honest();
    edit(&mut events[first + 2], |_, _, score, detail| {
        let mut d: Decision = serde_json::from_str(detail).unwrap();
        d.score = 10;
        d.action = Action::Allow;
        *detail = serde_json::to_string(&d).unwrap();
        *score = 10;
    });
    let (_, request, _, _, problem) = decision_finding(&events);
    assert_eq!(request, "r-3");
    assert_eq!(differs(&problem), "detail.action");
}

// (c)
#[test]
fn changed_features_are_flagged_even_with_a_matching_decision() {
    // The coordinator claims d-2 is a device the customer used before, and
    // records the decision the tree gives on that claim: allow, not step-up.
    let (mut events, first) = honest();
    edit(&mut events[first + 2], |_, features, score, detail| {
        let mut f: Features = serde_json::from_str(features).unwrap();
        assert!(f.first_device);
        f.first_device = false;
        let d = evaluate(&default_tree().unwrap(), &f);
        assert_eq!(d.action, Action::Allow);
        *features = serde_json::to_string(&f).unwrap();
        *score = u64::from(d.score);
        *detail = serde_json::to_string(&d).unwrap();
    });
    let (index, request, seq, _, problem) = decision_finding(&events);
    assert_eq!((index, request.as_str(), seq), (first as u64 + 2, "r-3", 3));
    assert_eq!(differs(&problem), "features.first_device");
}

// (d)
#[test]
fn a_changed_input_is_flagged_by_its_recomputed_features() {
    // The second payment is recorded as 2,000 USDC, with the features and
    // decision of the 25 USDC one.
    let (mut events, first) = honest();
    edit(&mut events[first + 1], |input, _, _, _| {
        let mut r: RiskRequest = serde_json::from_str(input).unwrap();
        r.payment.amount = 2_000_000_000;
        *input = serde_json::to_string(&r).unwrap();
    });
    let (index, request, seq, _, problem) = decision_finding(&events);
    assert_eq!((index, request.as_str(), seq), (first as u64 + 1, "r-2", 2));
    assert_eq!(differs(&problem), "features.amount");
}

// (e)
#[test]
fn a_gap_in_seq_is_flagged() {
    let mut engine = Engine::new();
    let [a, b, c] = payments();
    let one = engine.decide("r-1", &a);
    let _two = engine.decide("r-2", &b);
    let three = engine.decide("r-3", &c);
    let events = log_with([one, three]);
    // Named: the decision after the gap, at the end of the log.
    let (index, request, seq, entry, problem) = decision_finding(&events);
    assert_eq!(
        (index, entry),
        (events.len() as u64 - 1, events.len() as u64 - 1)
    );
    assert_eq!((request.as_str(), seq), ("r-3", 3));
    assert_eq!(problem, DecisionProblem::MissingSeq { missing: 2 });
}

// (e) Without a pruned-log notion, the engine's numbers start at 1.
#[test]
fn a_log_whose_first_seq_is_not_one_is_flagged() {
    let (mut events, first) = honest();
    events.remove(first);
    let (_, request, seq, _, problem) = decision_finding(&events);
    assert_eq!((request.as_str(), seq), ("r-2", 2));
    assert_eq!(problem, DecisionProblem::MissingSeq { missing: 1 });
}

#[test]
fn a_duplicate_seq_is_flagged() {
    let (mut events, first) = honest();
    // r-3 numbered 2, like r-2.
    let Event::RiskDecision { seq, .. } = &mut events[first + 2] else {
        panic!()
    };
    *seq = 2;
    let (index, request, _, _, problem) = decision_finding(&events);
    assert_eq!((index, request.as_str()), (first as u64 + 2, "r-3"));
    assert_eq!(problem, DecisionProblem::DuplicateSeq);
    // A replayed decision recorded again, too.
    let (mut events, first) = honest();
    let again = events[first].clone();
    events.push(again);
    let (index, _, seq, _, problem) = decision_finding(&events);
    assert_eq!((index, seq), (events.len() as u64 - 1, 1));
    assert_eq!(problem, DecisionProblem::DuplicateSeq);
}

// (f)
#[test]
fn a_decision_naming_an_unknown_tree_is_flagged() {
    let mut engine = Engine::new();
    engine.tree = RiskTree::from_toml(&tree_toml(2)).unwrap();
    let [a, ..] = payments();
    let events = log_with([engine.decide("r-1", &a)]);
    let (index, request, _, _, problem) = decision_finding(&events);
    assert_eq!((index, request.as_str()), (events.len() as u64 - 1, "r-1"));
    assert_eq!(problem, DecisionProblem::UnknownTree(2));
}

#[track_caller]
fn tree_refused(events: &[Event], why: &str) {
    match finding(events) {
        (index, RiskFinding::Tree { version, problem }) => {
            assert_eq!(index, events.len() as u64 - 1);
            assert_eq!(version, 2);
            assert!(problem.contains(why), "{problem:?}, expected {why:?}");
        }
        (_, other) => panic!("expected a tree finding, got {other}"),
    }
}

// (g)
#[test]
fn a_second_tree_needs_an_admin_signed_update() {
    let doc = tree_toml(2);
    let second = |update: Option<&SignedTree>| risk_tree_event(2, &doc, update).unwrap();
    // Two of the three admins sign: accepted, and decisions under it verify.
    let good = signed_tree(&doc, &ADMINS[..2]);
    let mut engine = Engine::new();
    engine.tree = RiskTree::from_toml(&doc).unwrap();
    let [a, ..] = payments();
    let mut events = log_with([second(Some(&good)), engine.decide("r-1", &a)]);
    let stats = audit(&events).unwrap();
    assert_eq!((stats.risk_trees, stats.risk_decisions), (2, 1));
    events.truncate(events.len() - 1);

    let mut with = |update: Option<&SignedTree>, why: &str| {
        *events.last_mut().unwrap() = second(update);
        tree_refused(&events, why);
    };
    with(None, "without a signed update");
    with(Some(&signed_tree(&doc, &ADMINS[..1])), "update not allowed");
    with(
        Some(&signed_tree(&doc, &[ADMINS[0], MALLORY])),
        "update not allowed",
    );
    // Signed, but not the recorded document.
    with(
        Some(&signed_tree(&tree_toml(3), &ADMINS[..2])),
        "not the recorded document",
    );
    // Not a signed tree at all.
    *events.last_mut().unwrap() = Event::RiskTree {
        version: 2,
        document_hash: Sha256::digest(doc.as_bytes()).into(),
        document: doc.clone(),
        update: Some("{\"signatures\":[]}".into()),
    };
    tree_refused(&events, "not a signed tree");
    // A version that does not increase.
    let events = log_with([first_tree()]);
    match finding(&events) {
        (
            _,
            RiskFinding::Tree {
                version: 1,
                problem,
            },
        ) => {
            assert!(problem.contains("without a signed update"), "{problem}")
        }
        (_, other) => panic!("{other}"),
    }
}

#[test]
fn a_tree_must_be_the_document_it_names() {
    let mut events = log_with([]);
    let idx = events.len() as u64 - 1;
    if let Some(Event::RiskTree { document_hash, .. }) = events.last_mut() {
        document_hash[0] ^= 1;
    }
    assert!(matches!(finding(&events),
        (i, RiskFinding::Tree { problem, .. }) if i == idx && problem.contains("document_hash")));
    let mut events = log_with([]);
    if let Some(Event::RiskTree { version, .. }) = events.last_mut() {
        *version = 2;
    }
    assert!(matches!(finding(&events),
        (_, RiskFinding::Tree { problem, .. }) if problem.contains("the document is version 1")));
    // Not a tree at all.
    let doc = "version = 1\n";
    let mut events = log_with([]);
    *events.last_mut().unwrap() = risk_tree_event(1, doc, None).unwrap();
    assert!(matches!(
        finding(&events),
        (_, RiskFinding::Tree { version: 1, .. })
    ));
}

fn freeze(action: &str, by: &[&str], lift: Option<&str>) -> Event {
    Event::Freeze {
        freeze_id: "fz-1".into(),
        action: action.into(),
        scope: "device".into(),
        subject: "d-1".into(),
        reason: "burst".into(),
        request_id: Some("r-1".into()),
        by: by.iter().map(|s| s.to_string()).collect(),
        lift: lift.map(str::to_string),
    }
}

#[track_caller]
fn freeze_refused(events: &[Event], why: &str) {
    match finding(events) {
        (index, RiskFinding::Freeze { freeze_id, problem }) => {
            assert_eq!(
                (index, freeze_id.as_str()),
                (events.len() as u64 - 1, "fz-1")
            );
            assert!(problem.contains(why), "{problem:?}, expected {why:?}");
        }
        (_, other) => panic!("expected a freeze finding, got {other}"),
    }
}

// (h)
#[test]
fn a_lift_needs_two_officers_and_a_freeze_in_force() {
    let lift = Some("{\"signatures\":[]}");
    let added = freeze("added", &["risk"], None);
    let events = log_with([added.clone(), freeze("lifted", &["alice", "bob"], lift)]);
    assert_eq!(audit(&events).unwrap().freezes, 2);

    freeze_refused(
        &log_with([added.clone(), freeze("lifted", &["alice"], lift)]),
        "1 distinct officer",
    );
    freeze_refused(
        &log_with([added.clone(), freeze("lifted", &["alice", "alice"], lift)]),
        "1 distinct officer",
    );
    freeze_refused(
        &log_with([added.clone(), freeze("lifted", &[], lift)]),
        "0 distinct officer",
    );
    freeze_refused(
        &log_with([added.clone(), freeze("lifted", &["alice", "bob"], None)]),
        "without a signed lift",
    );
    freeze_refused(
        &log_with([
            added.clone(),
            freeze("lifted", &["alice", "bob"], Some("[1]")),
        ]),
        "not a JSON object",
    );
    // Never added, or lifted twice.
    freeze_refused(
        &log_with([freeze("lifted", &["alice", "bob"], lift)]),
        "never added",
    );
    freeze_refused(
        &log_with([
            added.clone(),
            freeze("lifted", &["alice", "bob"], lift),
            freeze("lifted", &["alice", "bob"], lift),
        ]),
        "lifted already",
    );
    freeze_refused(&log_with([freeze("thawed", &["risk"], None)]), "action");
    freeze_refused(
        &log_with([freeze("added", &["risk"], lift)]),
        "carries a lift",
    );
}

#[test]
fn a_review_has_a_known_verdict_and_a_signed_object() {
    let review = |verdict: &str, signed: &str| Event::Review {
        request_id: "r-3".into(),
        officer: "carol".into(),
        verdict: verdict.into(),
        signed: signed.into(),
    };
    let ok = log_with([review("approve", "{\"signature\":\"00\"}")]);
    assert_eq!(audit(&ok).unwrap().reviews, 1);
    for (verdict, signed, why) in [
        ("maybe", "{}", "verdict"),
        ("reject", "\"signed\"", "not a JSON object"),
        ("reject", "{", "does not parse"),
    ] {
        let events = log_with([review(verdict, signed)]);
        match finding(&events) {
            (
                i,
                RiskFinding::Review {
                    request_id,
                    problem,
                },
            ) => {
                assert_eq!((i, request_id.as_str()), (events.len() as u64 - 1, "r-3"));
                assert!(problem.contains(why), "{problem}");
            }
            (_, other) => panic!("{other}"),
        }
    }
}

// (i)
#[test]
fn decisions_logged_out_of_seq_order_verify() {
    let (mut events, first) = honest();
    events.swap(first, first + 1);
    let stats = audit(&events).unwrap();
    assert_eq!(stats.risk_decisions, 3);
    // Further back: 3, 2, 1.
    let (mut events, first) = honest();
    events[first..].reverse();
    assert_eq!(audit(&events).unwrap().risk_decisions, 3);
}

#[test]
fn a_lie_logged_out_of_seq_order_names_its_own_entry() {
    // Seq 2 is logged first and lies about its score; it is recomputed
    // when seq 1 arrives, one entry later, and named where it was logged.
    let (mut events, first) = honest();
    edit(&mut events[first + 1], |_, _, score, _| *score = 99);
    events.swap(first, first + 1);
    let (index, request, seq, entry, problem) = decision_finding(&events);
    assert_eq!((index, entry), (first as u64, first as u64));
    assert_eq!((request.as_str(), seq), ("r-2", 2));
    assert_eq!(differs(&problem), "score");
}

#[test]
fn the_auditor_holds_back_a_bounded_number_of_decisions() {
    // Seq 1 never comes: after MAX_RISK_REORDER later decisions the
    // auditor stops waiting, before the end of the log.
    let mut engine = Engine::new();
    let mut decisions = Vec::new();
    for i in 0..keyfold_audit::auditor::MAX_RISK_REORDER as u64 + 5 {
        let mut p = payment(i * 600);
        p.context.customer_id = Some(format!("c-{i}"));
        decisions.push(engine.decide(&format!("r-{i}"), &p));
    }
    decisions.remove(0);
    let events = log_with(decisions);
    let first = events.len() as u64 - (keyfold_audit::auditor::MAX_RISK_REORDER as u64 + 4);
    let (index, request, seq, entry, problem) = decision_finding(&events);
    assert_eq!(problem, DecisionProblem::MissingSeq { missing: 1 });
    assert_eq!((request.as_str(), seq, entry), ("r-1", 2, first));
    assert!(
        index < events.len() as u64 - 1,
        "named at the end of the log"
    );
}

// ---------------------------------------------------------------------------
// Refused device signatures and customer-auth changes.

#[test]
fn risk_refusal_and_customer_auth_bytes_and_json() {
    let e = entry(Event::RiskRefusal {
        request_id: "r-9".into(),
        seq: 7,
        input: "{\"i\":1}".into(),
        code: "wrong_device_key".into(),
    });
    assert_eq!(e.event.type_code(), 18);
    assert_eq!(e.event.request_id(), Some("r-9"));
    let want = [
        header(5, 1_735_689_600_123, [0xab; 32], 18),
        str_("r-9"),
        7u64.to_be_bytes().to_vec(),
        str_("{\"i\":1}"),
        str_("wrong_device_key"),
    ]
    .concat();
    assert_eq!(e.canonical_bytes(), want);
    let json = String::from_utf8(e.to_json_line()).unwrap();
    assert!(
        json.ends_with(
            "\"event\":{\"type\":\"risk_refusal\",\"request_id\":\"r-9\",\"seq\":7,\"input\":\"{\\\"i\\\":1}\",\"code\":\"wrong_device_key\"}}\n"
        ),
        "{json}"
    );
    assert_eq!(serde_json::from_slice::<Entry>(json.as_bytes()).unwrap(), e);

    for device in [Some("dv_1"), None] {
        let e = entry(Event::CustomerAuth {
            customer: "cu_1".into(),
            action: "device_registered".into(),
            device: device.map(str::to_string),
            detail: "ed25519".into(),
        });
        assert_eq!(e.event.type_code(), 19);
        assert_eq!(e.event.request_id(), None);
        let want = [
            header(5, 1_735_689_600_123, [0xab; 32], 19),
            str_("cu_1"),
            str_("device_registered"),
            opt_str(device),
            str_("ed25519"),
        ]
        .concat();
        assert_eq!(e.canonical_bytes(), want);
        let json = String::from_utf8(e.to_json_line()).unwrap();
        let device_json = device.map_or("null".to_string(), |d| format!("\"{d}\""));
        assert!(
            json.ends_with(&format!(
                "\"event\":{{\"type\":\"customer_auth\",\"customer\":\"cu_1\",\"action\":\"device_registered\",\"device\":{device_json},\"detail\":\"ed25519\"}}}}\n"
            )),
            "{json}"
        );
    }
}

#[test]
fn new_risk_events_are_bounded() {
    let long = "x".repeat(keyfold_audit::event::MAX_STRING + 1);
    let refusal = |request_id: &str, code: &str| Event::RiskRefusal {
        request_id: request_id.into(),
        seq: 1,
        input: "{}".into(),
        code: code.into(),
    };
    assert!(refusal("r", "c").validate().is_ok());
    assert!(refusal(&long, "c").validate().is_err());
    assert!(refusal("r", &long).validate().is_err());
    let auth = |device: Option<&str>, detail: &str| Event::CustomerAuth {
        customer: "cu_1".into(),
        action: "device_revoked".into(),
        device: device.map(str::to_string),
        detail: detail.into(),
    };
    assert!(auth(Some("dv_1"), "").validate().is_ok());
    assert!(auth(Some(&long), "").validate().is_err());
    assert!(auth(None, &long).validate().is_err());
}

#[test]
fn record_helpers_build_refusal_and_customer_auth_events() {
    let input = refusal_input(Some("cu_1"), Some("dv_1"), "stale_timestamp", T0);
    let e = risk_refusal_event("r-1", 4, &input).unwrap();
    let Event::RiskRefusal {
        request_id,
        seq,
        input: json,
        code,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!(
        (request_id.as_str(), *seq, code.as_str()),
        ("r-1", 4, "stale_timestamp")
    );
    assert_eq!(serde_json::from_str::<RefusalInput>(json).unwrap(), input);

    let e = customer_auth_event("cu_1", CustomerAuthAction::KycTierSet, None, "verified");
    assert_eq!(
        e,
        Event::CustomerAuth {
            customer: "cu_1".into(),
            action: "kyc_tier_set".into(),
            device: None,
            detail: "verified".into(),
        }
    );
    for a in CustomerAuthAction::ALL {
        assert_eq!(CustomerAuthAction::from_name(a.name()), Some(a));
        assert_eq!(a.names_device(), a.name().starts_with("device_"));
    }
    assert_eq!(CustomerAuthAction::from_name("Device_Registered"), None);
}

fn refusal_input(
    customer: Option<&str>,
    device: Option<&str>,
    code: &str,
    at: u64,
) -> RefusalInput {
    RefusalInput {
        customer_id: customer.map(str::to_string),
        device_id: device.map(str::to_string),
        code: code.into(),
        at,
    }
}

/// Three refused signatures of `c-1`'s device `d-1` (seq 1..=3), then a
/// payment from it (seq 4) that the default tree's
/// `device-signature-refusals` rule freezes: (events, index of the first
/// refusal in the log).
fn refused_then_paid() -> (Vec<Event>, usize) {
    let mut engine = Engine::new();
    let mut steps = Vec::new();
    for (i, code) in [
        "wrong_device_key",
        "stale_timestamp",
        "replayed_device_signature",
    ]
    .into_iter()
    .enumerate()
    {
        let input = refusal_input(Some("c-1"), Some("d-1"), code, T0 + 10 * i as u64);
        steps.push(engine.refuse(&format!("r-x{i}"), &input));
    }
    steps.push(engine.decide("r-1", &payment(60)));
    let events = log_with(steps);
    let first = events.len() - 4;
    (events, first)
}

/// The refusal finding that stops the audit of `events`: (entry named,
/// request, seq, entry in the finding, problem).
#[track_caller]
fn refusal_finding(events: &[Event]) -> (u64, String, u64, u64, RefusalProblem) {
    match finding(events) {
        (
            index,
            RiskFinding::Refusal {
                request_id,
                seq,
                entry,
                problem,
            },
        ) => (index, request_id, seq, entry, problem),
        (_, other) => panic!("expected a refusal finding, got {other}"),
    }
}

#[test]
fn refusals_replay_into_a_later_decisions_features() {
    let (events, first) = refused_then_paid();
    let Event::RiskDecision {
        action,
        detail,
        features,
        ..
    } = &events[first + 3]
    else {
        panic!()
    };
    assert_eq!(action, "freeze");
    assert!(detail.contains("device-signature-refusals"), "{detail}");
    let f: Features = serde_json::from_str(features).unwrap();
    assert_eq!(f.device_signature_refusals, 3);
    let stats = audit(&events).unwrap();
    assert_eq!((stats.risk_refusals, stats.risk_decisions), (3, 1));

    // The coordinator hides the refusals' effect: it records the decision
    // it would have made without them (allow). Only the replay of the
    // refusals can tell.
    let (mut honest_events, first) = refused_then_paid();
    let mut clean = Engine::new();
    clean.seq = 3;
    honest_events[first + 3] = clean.decide("r-1", &payment(60));
    let Event::RiskDecision { action, .. } = &honest_events[first + 3] else {
        panic!()
    };
    assert_eq!(action, "allow");
    let (index, request, seq, _, problem) = decision_finding(&honest_events);
    assert_eq!((index, request.as_str(), seq), (first as u64 + 3, "r-1", 4));
    assert_eq!(differs(&problem), "features.device_signature_refusals");

    // A refusal rewritten to another customer and device: the decision
    // recomputes with two refusals, not the three it claims.
    let (mut events, first) = refused_then_paid();
    let Event::RiskRefusal { input, .. } = &mut events[first + 1] else {
        panic!()
    };
    let mut r: RefusalInput = serde_json::from_str(input).unwrap();
    r.customer_id = Some("c-9".into());
    r.device_id = Some("d-9".into());
    *input = serde_json::to_string(&r).unwrap();
    let (index, request, _, _, problem) = decision_finding(&events);
    assert_eq!((index, request.as_str()), (first as u64 + 3, "r-1"));
    assert_eq!(differs(&problem), "features.device_signature_refusals");

    // A refusal left out of the log: its seq is missing.
    let (mut events, first) = refused_then_paid();
    events.remove(first + 1);
    let (_, request, seq, _, problem) = refusal_finding(&events);
    assert_eq!((request.as_str(), seq), ("r-x2", 3));
    assert_eq!(problem, RefusalProblem::MissingSeq { missing: 2 });
}

#[test]
fn refusals_logged_out_of_seq_order_are_held_back() {
    // Logged 3, 1, 4, 2: each step waits for its turn, and the decision is
    // still recomputed after all three refusals.
    let (mut events, first) = refused_then_paid();
    let steps: Vec<Event> = events.drain(first..).collect();
    for i in [2, 0, 3, 1] {
        events.push(steps[i].clone());
    }
    let stats = audit(&events).unwrap();
    assert_eq!((stats.risk_refusals, stats.risk_decisions), (3, 1));

    // A refusal ahead of its turn whose turn never comes: a gap, named at
    // the refusal's own entry, at the end of the log.
    let (mut events, first) = refused_then_paid();
    events.remove(first);
    let (index, request, seq, entry, problem) = refusal_finding(&events);
    assert_eq!((request.as_str(), seq), ("r-x1", 2));
    assert_eq!((index, entry), (first as u64, first as u64));
    assert_eq!(problem, RefusalProblem::MissingSeq { missing: 1 });
}

#[test]
fn a_seq_is_taken_once_across_decisions_and_refusals() {
    // A refusal numbered like the decision before it.
    let mut engine = Engine::new();
    let decision = engine.decide("r-1", &payment(0));
    let refusal = risk_refusal_event(
        "r-2",
        1,
        &refusal_input(Some("c-1"), None, "wrong_device_key", T0 + 5),
    )
    .unwrap();
    let events = log_with([decision.clone(), refusal]);
    let (index, request, seq, _, problem) = refusal_finding(&events);
    assert_eq!(
        (index, request.as_str(), seq),
        (events.len() as u64 - 1, "r-2", 1)
    );
    assert_eq!(problem, RefusalProblem::DuplicateSeq);

    // A decision numbered like a refusal held back before it.
    let held = risk_refusal_event(
        "r-2",
        2,
        &refusal_input(Some("c-1"), None, "wrong_device_key", T0 + 5),
    )
    .unwrap();
    let mut engine = Engine::new();
    engine.seq = 1;
    let second = engine.decide("r-3", &payment(10));
    let events = log_with([held, second]);
    let (index, request, seq, _, problem) = decision_finding(&events);
    assert_eq!(
        (index, request.as_str(), seq),
        (events.len() as u64 - 1, "r-3", 2)
    );
    assert_eq!(problem, DecisionProblem::DuplicateSeq);

    // Seq 0.
    let zero = risk_refusal_event(
        "r-2",
        0,
        &refusal_input(Some("c-1"), None, "wrong_device_key", T0),
    )
    .unwrap();
    let (_, _, _, _, problem) = refusal_finding(&log_with([zero]));
    assert_eq!(problem, RefusalProblem::ZeroSeq);
}

#[test]
fn a_refusal_the_engine_does_not_count_is_flagged() {
    let input = refusal_input(Some("c-1"), Some("d-1"), "wrong_device_key", T0);
    let good = risk_refusal_event("r-1", 1, &input).unwrap();
    assert_eq!(audit(&log_with([good.clone()])).unwrap().risk_refusals, 1);

    let with = |f: &dyn Fn(&mut String, &mut String)| {
        let mut e = good.clone();
        let Event::RiskRefusal { input, code, .. } = &mut e else {
            panic!()
        };
        f(input, code);
        log_with([e])
    };
    // A step-up refusal is not a device-signature refusal, whatever the
    // event says.
    let events = with(&|input, code| {
        *input = input.replace("wrong_device_key", "bad_totp");
        *code = "bad_totp".into();
    });
    let (index, request, seq, entry, problem) = refusal_finding(&events);
    assert_eq!(
        (index, request.as_str(), seq, entry),
        (events.len() as u64 - 1, "r-1", 1, events.len() as u64 - 1)
    );
    assert_eq!(problem, RefusalProblem::UnknownCode("\"bad_totp\"".into()));
    // The code read without parsing the input is not the input's.
    let events = with(&|_, code| *code = "device_revoked".into());
    let (_, _, _, _, problem) = refusal_finding(&events);
    assert_eq!(
        problem,
        RefusalProblem::CodeDiffers {
            recorded: "\"device_revoked\"".into(),
            input: "\"wrong_device_key\"".into(),
        }
    );
    // An input that is not a refusal.
    for bad in ["{", "{\"code\":\"wrong_device_key\"}", "[]"] {
        let events = with(&|input, _| *input = bad.into());
        let (_, _, _, _, problem) = refusal_finding(&events);
        assert!(
            matches!(problem, RefusalProblem::Unparsable(_)),
            "{bad}: {problem}"
        );
    }
    let events = with(&|input, _| *input = input.replace("\"at\"", "\"ip\":\"1.2.3.4\",\"at\""));
    let (_, _, _, _, problem) = refusal_finding(&events);
    assert!(
        matches!(problem, RefusalProblem::Unparsable(_)),
        "{problem}"
    );
    // A refusal counted against nobody.
    let nobody = refusal_input(None, None, "wrong_device_key", T0);
    let events = log_with([risk_refusal_event("r-1", 1, &nobody).unwrap()]);
    let (_, _, _, _, problem) = refusal_finding(&events);
    assert!(matches!(problem, RefusalProblem::BadInput(_)), "{problem}");
}

#[test]
fn customer_auth_changes_are_checked_structurally() {
    let ok = log_with([
        customer_auth_event(
            "cu_1",
            CustomerAuthAction::DeviceRegistered,
            Some("dv_1"),
            "ed25519",
        ),
        customer_auth_event("cu_1", CustomerAuthAction::TotpEnrolled, None, ""),
        customer_auth_event("cu_1", CustomerAuthAction::KycTierSet, None, "verified"),
        customer_auth_event("cu_1", CustomerAuthAction::PasswordSet, None, ""),
        customer_auth_event(
            "cu_1",
            CustomerAuthAction::DeviceRevoked,
            Some("dv_1"),
            "lost",
        ),
    ]);
    assert_eq!(audit(&ok).unwrap().customer_auth_changes, 5);

    let raw = |customer: &str, action: &str, device: Option<&str>| Event::CustomerAuth {
        customer: customer.into(),
        action: action.into(),
        device: device.map(str::to_string),
        detail: String::new(),
    };
    for (event, why) in [
        (raw("cu_1", "password_reset", None), "is not one of"),
        (raw("cu_1", "device_registered", None), "names no device"),
        (raw("cu_1", "device_revoked", Some("")), "names no device"),
        (raw("", "kyc_tier_set", None), "customer is empty"),
    ] {
        let events = log_with([event]);
        match finding(&events) {
            (i, RiskFinding::CustomerAuth { problem, .. }) => {
                assert_eq!(i, events.len() as u64 - 1);
                assert!(problem.contains(why), "{problem:?}, expected {why:?}");
            }
            (_, other) => panic!("{other}"),
        }
    }
}

/// A coordinator log with refusals, the decision they freeze and
/// customer-auth changes, written in the layout of `keyfold audit export`
/// (to `KEYFOLD_AUDIT_DUMP`, or a temporary directory) and verified by the
/// bundle reader, for the independent verifier:
///
/// ```text
/// KEYFOLD_AUDIT_DUMP=/tmp/r cargo test -p keyfold-audit --test risk refusals_export
/// python3 crates/audit/tools/independent_verify.py /tmp/r
/// ```
#[test]
fn refusals_export_for_independent_verifiers() {
    use keyfold_audit::{bundle, CheckpointSigner};
    let (mut events, first) = refused_then_paid();
    // Logged out of seq order, as concurrent requests can be.
    events.swap(first, first + 1);
    events.push(customer_auth_event(
        "cu_1",
        CustomerAuthAction::DeviceRegistered,
        Some("dv_1"),
        "ed25519",
    ));
    events.push(customer_auth_event(
        "cu_1",
        CustomerAuthAction::KycTierSet,
        None,
        "verified",
    ));
    let x = common::build("coordinator", events, &[3]);
    let tmp = tempfile::tempdir().unwrap();
    let dump = std::env::var_os("KEYFOLD_AUDIT_DUMP").map(std::path::PathBuf::from);
    let dir = dump.unwrap_or_else(|| tmp.path().to_path_buf());
    let log_dir = dir.join("coordinator");
    std::fs::create_dir_all(&log_dir).unwrap();
    let keys = std::collections::BTreeMap::from([(
        "coordinator".to_string(),
        hex::encode(common::signer().public_key()),
    )]);
    std::fs::write(
        dir.join(bundle::KEYS_FILE),
        serde_json::to_string_pretty(&keys).unwrap(),
    )
    .unwrap();
    std::fs::write(log_dir.join("entries.jsonl"), x.bytes()).unwrap();
    std::fs::write(log_dir.join("checkpoints.jsonl"), x.checkpoint_bytes()).unwrap();
    let trusted = bundle::read_keys(&dir.join(bundle::KEYS_FILE)).unwrap();
    let verdict = bundle::verify_log(&dir, "coordinator", trusted["coordinator"], None).unwrap();
    assert_eq!(verdict.included, verdict.report.entries);
    let s = &verdict.stats;
    assert_eq!(
        (s.risk_refusals, s.risk_decisions, s.customer_auth_changes),
        (3, 1, 2)
    );
}
