//! The risk events of the audit log (`risk_tree`, `risk_decision`, `freeze`,
//! `review`): their JSON form and canonical bytes as `docs/audit-log.md`
//! section 3.3 lays them out.

use keyfold_audit::record::{
    freeze_added_event, freeze_lifted_event, review_event, risk_decision_event, risk_tree_event,
    ReviewVerdict,
};
use keyfold_audit::{Entry, Event};
use keyfold_risk::{
    default_tree, evaluate, ClientContext, Decision, Features, FreezeScope, KycTier, Payment,
    RiskRequest, RiskState, SignedTree, DEFAULT_TREE_TOML,
};
use sha2::{Digest, Sha256};

/// Time of the first risk request of the tests.
const T0: u64 = 1_700_000_000;

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
