//! The request lifecycle through the real coordinator: store, journal,
//! audit log, policy, signing with (in-process) signers, the REST API, and
//! time from a manual clock. Each test names the behaviour it checks.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{start, verify_ecdsa, Env};
use keyfold_coordinator::modules::{Module, Modules, Prepared, StepOutcome};
use keyfold_coordinator::requests::lifecycle::Verdict;
use keyfold_coordinator::requests::record::StoredRequest;
use keyfold_coordinator::service::BoxFuture;
use keyfold_coordinator::testing::Behaviour;
use keyfold_policy::ApprovalDecision;
use keyfold_proto::api::SignResult;
use keyfold_proto::signer::WireBlameKind;
use keyfold_proto::Curve;
use serde_json::{json, Value};

fn states(history: &Value) -> Vec<String> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_allowed_transfer_is_signed_and_completed_with_its_history() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Secp256k1).await;
    let (s, v) = env.transfer("payments", "pay-1", &key, 500).await;
    assert_eq!(s, 200, "{v}");
    verify_ecdsa(&v);
    assert_eq!(v["mode"], "full");
    let st = env.status("pay-1").await;
    assert_eq!(st["state"], "completed");
    assert_eq!(
        states(&st["history"]),
        ["approved", "signing", "signed", "completed"]
    );
    assert!(st["history"][0]["from"].is_null());
    assert_eq!(st["history"][1]["from"], "approved");
    // The audit log holds the request, its decision, the session and the
    // signature, in that order.
    let kinds: Vec<String> = env
        .audit_events()
        .iter()
        .filter(|e| e["request_id"] == "pay-1")
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["sign_request", "decision", "signing_session", "signature"]
    );
}

#[tokio::test]
async fn a_retry_returns_the_first_signature_and_the_signers_sign_once() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Ed25519).await;
    env.signers.clear_calls();
    let (s1, first) = env.transfer("payments", "pay-1", &key, 10).await;
    let (s2, second) = env.transfer("payments", "pay-1", &key, 10).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(first["signature"], second["signature"]);
    let signs: usize = ["signer-1", "signer-2", "signer-3"]
        .iter()
        .map(|n| env.signers.calls(n).iter().filter(|c| *c == "sign").count())
        .sum();
    assert_eq!(signs, 2, "one session of t = 2 signers, not two");
    // The same id with another amount is a conflict; the first stands.
    let (s, v) = env.transfer("payments", "pay-1", &key, 11).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");
    // And so is the same body from another client (another initiator).
    let (s, _) = env.transfer("other", "pay-1", &key, 10).await;
    assert_eq!(s, 409);
    let sigs = env
        .audit_events()
        .iter()
        .filter(|e| e["type"] == "signature" && e["request_id"] == "pay-1")
        .count();
    assert_eq!(sigs, 1);
}

#[tokio::test]
async fn a_waiting_request_is_approved_by_two_officers_and_signed() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Secp256k1).await;
    let (s, v) = env.transfer("payments", "mid-1", &key, 3000).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state"], "pending_approval");
    assert!(v["expires_at"].as_u64().is_some());
    let a = env.approval(3, "mid-1", ApprovalDecision::Approve).await;
    let (s, v) = env
        .post("ops-alice", "/v1/requests/mid-1/approvals", a)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "pending_approval");
    let b = env.approval(4, "mid-1", ApprovalDecision::Approve).await;
    let (s, v) = env
        .post("payments", "/v1/requests/mid-1/approvals", b)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "completed", "{v}");
    verify_ecdsa(&v["result"]);
    assert_eq!(
        states(&v["history"]),
        [
            "pending_approval",
            "approved",
            "signing",
            "signed",
            "completed"
        ]
    );
    assert_eq!(v["approvals"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_waiting_request_expires_at_its_deadline_and_takes_no_approval_after() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Secp256k1).await;
    let (s, v) = env.transfer("payments", "mid-2", &key, 3000).await;
    assert_eq!(s, 202, "{v}");
    let deadline = v["expires_at"].as_u64().unwrap();
    // 600 s after it started waiting (decision times never go back, so the
    // start may be a second past the manual clock).
    assert!(
        (600..=601).contains(&(deadline - env.clock_secs())),
        "{deadline}"
    );
    // Just before: still waiting.
    env.clock.set_ms((deadline as i64 - 1) * 1000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.status("mid-2").await["state"], "pending_approval");
    env.clock.set_ms(deadline as i64 * 1000);
    let st = env.wait_state("mid-2", "expired").await;
    assert!(st["expires_at"].is_null());
    let a = env.approval(4, "mid-2", ApprovalDecision::Approve).await;
    let (s, v) = env
        .post("payments", "/v1/requests/mid-2/approvals", a)
        .await;
    assert_eq!(s, 409, "{v}");
    let closed: Vec<Value> = env
        .audit_events()
        .into_iter()
        .filter(|e| e["type"] == "request_closed")
        .collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["state"], "expired");
    // A retry of an expired request is refused, not signed.
    let (s, _) = env.transfer("payments", "mid-2", &key, 3000).await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn a_time_lock_is_released_by_the_timer_when_it_ends() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Ed25519).await;
    let (s, v) = env.transfer("payments", "big-1", &key, 9000).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state"], "time_locked");
    env.clock.advance_ms(30_000);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(env.status("big-1").await["state"], "time_locked");
    env.clock.advance_ms(31_000);
    let st = env.wait_state("big-1", "completed").await;
    assert_eq!(
        states(&st["history"]),
        ["time_locked", "approved", "signing", "signed", "completed"]
    );
}

#[tokio::test]
async fn the_initiator_or_an_officer_cancels_and_another_client_cannot_see_it() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Secp256k1).await;
    for id in ["c-1", "c-2", "c-3"] {
        let (s, _) = env.transfer("payments", id, &key, 3000).await;
        assert_eq!(s, 202);
    }
    // Another client: as if the request did not exist.
    let (s, v) = env
        .post(
            "other",
            "/v1/requests/c-1/cancel",
            json!({ "reason": "mine?" }),
        )
        .await;
    assert_eq!(s, 404, "{v}");
    // The initiator.
    let (s, v) = env
        .post(
            "payments",
            "/v1/requests/c-1/cancel",
            json!({ "reason": "duplicate" }),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "cancelled");
    let last = v["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["cause"],
        "cancelled by its initiator payments: duplicate"
    );
    // An officer (the API client of approver alice).
    let (s, v) = env
        .post("ops-alice", "/v1/requests/c-2/cancel", json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "cancelled");
    // Not twice, and not once signed.
    let (s, _) = env
        .post("payments", "/v1/requests/c-1/cancel", json!({}))
        .await;
    assert_eq!(s, 409);
    let (s, v) = env.transfer("payments", "small-1", &key, 5).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = env
        .post("payments", "/v1/requests/small-1/cancel", json!({}))
        .await;
    assert_eq!(s, 409, "{v}");
    let closed: Vec<Value> = env
        .audit_events()
        .into_iter()
        .filter(|e| e["type"] == "request_closed")
        .collect();
    assert_eq!(closed.len(), 2);
    assert_eq!(closed[0]["by"], "payments");
    assert_eq!(closed[1]["by"], "ops-alice");
}

#[tokio::test]
async fn requests_are_listed_newest_first_with_a_cursor() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Ed25519).await;
    for i in 0..7 {
        let (s, _) = env
            .transfer("payments", &format!("w-{i}"), &key, 3000)
            .await;
        assert_eq!(s, 202);
    }
    let (s, p1) = env.get("payments", "/v1/requests?limit=3").await;
    assert_eq!(s, 200, "{p1}");
    let ids = |p: &Value| -> Vec<String> {
        p["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["request_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&p1), ["w-6", "w-5", "w-4"]);
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = env
        .get("payments", &format!("/v1/requests?limit=3&cursor={c}"))
        .await;
    assert_eq!(ids(&p2), ["w-3", "w-2", "w-1"]);
    let c = p2["next_cursor"].as_str().unwrap();
    let (_, p3) = env
        .get("payments", &format!("/v1/requests?limit=3&cursor={c}"))
        .await;
    assert_eq!(ids(&p3), ["w-0"]);
    assert!(p3.get("next_cursor").is_none());
    // Unknown parameters and bad cursors are refused.
    for q in ["x=1", "cursor=abc", "limit=0", "limit=501", "state=denied"] {
        let (s, v) = env.get("payments", &format!("/v1/requests?{q}")).await;
        assert_eq!(s, 400, "{q}: {v}");
    }
    let (s, _) = env.get("payments", "/v1/keys?x=1").await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn keys_are_listed_in_creation_order_with_a_cursor() {
    let env = start(Modules::default(), "").await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(env.key(Curve::Ed25519).await.key_id);
    }
    let ids = |p: &Value| -> Vec<String> {
        p["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["key_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (s, p1) = env.get("payments", "/v1/keys?limit=2").await;
    assert_eq!(s, 200, "{p1}");
    assert_eq!(ids(&p1), made[..2]);
    let c = p1["next_cursor"].as_str().unwrap();
    let (s, p2) = env
        .get("payments", &format!("/v1/keys?limit=2&cursor={c}"))
        .await;
    assert_eq!(s, 200, "{p2}");
    assert_eq!(ids(&p2), made[2..]);
    assert!(p2.get("next_cursor").is_none(), "{p2}");
    for q in [
        "cursor=abc",
        "cursor=0",
        "cursor=-3",
        "limit=0",
        "limit=501",
    ] {
        let (s, v) = env.get("payments", &format!("/v1/keys?{q}")).await;
        assert_eq!(s, 400, "{q}: {v}");
    }
}

#[tokio::test]
async fn a_signer_that_lies_about_a_peer_does_not_get_it_excluded() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Secp256k1).await;
    // signer-1 fails every session and blames signer-2 (party 1), in its
    // typed culprits and in its message text.
    env.signers.set(
        "signer-1",
        Behaviour::Accuses {
            parties: vec![1],
            kind: WireBlameKind::Silent,
            message: "party 1 (signer-2) sent nothing".into(),
        },
    );
    let (s, v) = env.transfer("payments", "lie-1", &key, 5).await;
    assert_eq!(s, 200, "{v}");
    verify_ecdsa(&v);
    let r: SignResult = serde_json::from_value(v).unwrap();
    assert_eq!(
        r.signers,
        ["signer-2", "signer-3"],
        "signed without the liar"
    );
    for e in env.audit_events().iter().filter(|e| e["type"] == "aborted") {
        assert!(e["blamed"].is_null(), "nobody is blamed on one word: {e}");
    }
}

#[tokio::test]
async fn a_signer_that_is_down_is_left_out_and_named() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Ed25519).await;
    env.signers.set("signer-1", Behaviour::Down);
    let (s, v) = env.transfer("payments", "down-1", &key, 5).await;
    assert_eq!(s, 200, "{v}");
    let r: SignResult = serde_json::from_value(v).unwrap();
    assert!(!r.signers.contains(&"signer-1".to_string()));
    // Two down: no quorum, a clear error, no hang.
    env.signers.set("signer-2", Behaviour::Down);
    let (s, v) = env.transfer("payments", "down-2", &key, 5).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "quorum_unavailable");
    // The request failed and may be submitted again once signers are back.
    assert_eq!(env.status("down-2").await["state"], "failed");
    env.signers.set("signer-1", Behaviour::Honest);
    env.signers.set("signer-2", Behaviour::Honest);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, v) = env.transfer("payments", "down-2", &key, 5).await;
    assert_eq!(s, 200, "{v}");
    let st = env.status("down-2").await;
    assert_eq!(
        states(&st["history"]),
        [
            "approved",
            "signing",
            "failed",
            "received",
            "approved",
            "signing",
            "signed",
            "completed"
        ]
    );
}

#[tokio::test]
async fn signers_that_refuse_under_their_policy_make_it_policy_denied() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Ed25519).await;
    for n in ["signer-1", "signer-2", "signer-3"] {
        env.signers.set(n, Behaviour::RefusesPolicy);
    }
    let (s, v) = env.transfer("payments", "ref-1", &key, 5).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["error"]["code"], "policy_denied");
    assert_eq!(env.status("ref-1").await["state"], "failed");
    // It no longer counts: a request_failed entry follows.
    assert!(env
        .audit_events()
        .iter()
        .any(|e| e["type"] == "request_failed" && e["request_id"] == "ref-1"));
}

#[tokio::test]
async fn a_denied_request_is_rejected_and_a_deny_list_matches_every_spelling() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Secp256k1).await;
    // The deny list names the EIP-55 spelling; lowercase and uppercase hex
    // are the same address.
    for (id, dest) in [
        ("d-1", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
        ("d-2", "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"),
        ("d-3", "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED"),
    ] {
        let (s, v) = env
            .post(
                "payments",
                "/v1/signatures",
                json!({"request_id": id, "key_id": key.key_id,
                       "transfer": {"asset": "ETH", "amount": "5", "destination": dest}}),
            )
            .await;
        assert_eq!(s, 403, "{id}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("sanctioned"),
            "{v}"
        );
        let st = env.status(id).await;
        assert_eq!(st["state"], "rejected");
        assert_eq!(
            st["request"]["destination"],
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        );
    }
    // A trailing space, a zero-width space, a bad checksum: refused before
    // the policy, naming the field.
    for dest in [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed ",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe\u{200b}d",
        "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    ] {
        let (s, v) = env
            .post(
                "payments",
                "/v1/signatures",
                json!({"request_id": "d-x", "key_id": key.key_id,
                       "transfer": {"asset": "ETH", "amount": "5", "destination": dest}}),
            )
            .await;
        assert_eq!(s, 400, "{dest:?}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("transfer.destination"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn every_field_has_one_canonical_form() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Secp256k1).await;
    let body = |id: &str, key_id: &str, amount: &str, path: Option<&str>| {
        let mut b = json!({"request_id": id, "key_id": key_id,
            "transfer": {"asset": "ETH", "amount": amount,
                         "destination": "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"}});
        if let Some(p) = path {
            b["derivation_path"] = json!(p);
        }
        b
    };
    let upper = key.key_id.to_uppercase();
    let cases = [
        (body("ok-1", &key.key_id, "+5", None), "transfer.amount"),
        (body("ok-1", &key.key_id, "0005", None), "transfer.amount"),
        (body("ok-1", &key.key_id, "5", Some("m")), "derivation_path"),
        (
            body("ok-1", &key.key_id, "5", Some("m/01")),
            "derivation_path",
        ),
        (body("ok-1", &upper, "5", None), "key_id"),
        (body(".", &key.key_id, "5", None), "request_id"),
        (body("..", &key.key_id, "5", None), "request_id"),
        (body("a b", &key.key_id, "5", None), "request_id"),
    ];
    for (b, field) in cases {
        let (s, v) = env.post("payments", "/v1/signatures", b.clone()).await;
        assert_eq!(s, 400, "{b}: {v}");
        let m = v["error"]["message"].as_str().unwrap();
        assert!(m.contains(field), "{b}: {m}");
    }
    // A wrong type inside `transfer` names the nested field.
    let (s, v) = env
        .post(
            "payments",
            "/v1/signatures",
            json!({"request_id": "t-1", "key_id": key.key_id,
                   "transfer": {"asset": "ETH", "amount": 5, "destination": "x"}}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("transfer.amount"),
        "{v}"
    );
    // Nothing of the refused requests was recorded.
    assert!(env
        .audit_events()
        .iter()
        .all(|e| e["type"] != "sign_request"));
}

#[tokio::test]
async fn key_creation_is_idempotent_per_client_id() {
    let env = start(Modules::default(), "").await;
    let body = json!({"client_id": "treasury-eth-1", "curve": "secp256k1", "t": 2, "n": 3});
    let (s1, a) = env.post("payments", "/v1/keys", body.clone()).await;
    let (s2, b) = env.post("payments", "/v1/keys", body).await;
    assert_eq!((s1, s2), (201, 201), "{a} {b}");
    assert_eq!(a["key_id"], b["key_id"]);
    let (_, list) = env.get("payments", "/v1/keys").await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 1);
    let (s, v) = env
        .post(
            "payments",
            "/v1/keys",
            json!({"client_id": "treasury-eth-1", "curve": "ed25519", "t": 2, "n": 3}),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    let keys = env
        .audit_events()
        .iter()
        .filter(|e| e["type"] == "key_created")
        .count();
    assert_eq!(keys, 1);
}

#[tokio::test]
async fn a_policy_push_without_its_signed_update_is_refused() {
    let env = start(Modules::default(), "").await;
    let (_, p) = env.get("payments", "/v1/policy").await;
    let doc = common::policy();
    let (s, v) = env
        .post(
            "payments",
            "/v1/policy",
            json!({"document_toml": doc, "signatures": []}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("in force already"));
    assert_eq!(p["version"], 1);
    // An invalid document is answered with its own error.
    let (s, v) = env
        .post(
            "payments",
            "/v1/policy",
            json!({"document_toml": "", "signatures": []}),
        )
        .await;
    assert_eq!(s, 400);
    let m = v["error"]["message"].as_str().unwrap();
    assert!(m.starts_with("policy document:"), "{m}");
    // Nobody was asked to update.
    assert!(env
        .signers
        .calls("signer-1")
        .iter()
        .all(|c| c != "update_policy"));
}

#[tokio::test]
async fn a_full_audit_log_refuses_every_step_and_nothing_is_recorded() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Ed25519).await;
    let (s, _) = env.transfer("payments", "before", &key, 5).await;
    assert_eq!(s, 200);
    let env = env.restart("audit_max_bytes = 1").await;
    let entries = env.audit_events().len();
    let (s, v) = env.transfer("payments", "after", &key, 5).await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "audit_unavailable");
    let (s, _) = env.get("payments", "/v1/requests/after").await;
    assert_eq!(s, 404, "no store row without its audit entry");
    let (s, v) = env
        .post(
            "payments",
            "/v1/keys",
            json!({"curve": "ed25519", "t": 2, "n": 3}),
        )
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(env.audit_events().len(), entries);
    // After a restart without the limit the same request signs.
    let env = env.restart("").await;
    let (s, v) = env.transfer("payments", "after", &key, 5).await;
    assert_eq!(s, 200, "{v}");
    // The earlier one survived both restarts.
    assert_eq!(env.status("before").await["state"], "completed");
}

/// A module that attaches data, holds requests whose id starts with
/// `hold-`, refuses those starting with `no-`, and adds two post-signing
/// steps, the first of which asks to be retried once.
struct TestModule {
    runs: std::sync::Mutex<Vec<String>>,
}

impl Module for TestModule {
    fn name(&self) -> &'static str {
        "test"
    }

    fn prepare<'a>(&'a self, request: &'a StoredRequest) -> BoxFuture<'a, Prepared> {
        Box::pin(async move {
            let id = &request.request.id;
            let verdict = if id.starts_with("hold-") {
                Verdict::Hold {
                    reason: "manual review".into(),
                }
            } else if id.starts_with("no-") {
                Verdict::Refuse {
                    reason: "not for this module".into(),
                }
            } else {
                Verdict::Continue
            };
            Prepared {
                verdict,
                data: Some(json!({ "seen": id })),
            }
        })
    }

    fn post_signing(&self, _r: &StoredRequest, _res: &SignResult) -> Vec<String> {
        vec!["broadcast".into(), "confirm".into()]
    }

    fn run_step<'a>(
        &'a self,
        request: &'a StoredRequest,
        _result: &'a SignResult,
        step: &'a str,
    ) -> BoxFuture<'a, StepOutcome> {
        Box::pin(async move {
            let mut runs = self.runs.lock().unwrap();
            runs.push(format!("{}:{step}", request.request.id));
            let tries = runs.iter().filter(|r| r.ends_with(":broadcast")).count();
            if step == "broadcast" && tries == 1 {
                StepOutcome::Retry {
                    at: 0,
                    reason: "rpc busy".into(),
                }
            } else {
                StepOutcome::Done
            }
        })
    }
}

#[tokio::test]
async fn modules_attach_data_hold_refuse_and_run_post_signing_steps() {
    let module = Arc::new(TestModule {
        runs: std::sync::Mutex::new(Vec::new()),
    });
    let env: Env = start(Modules::new(vec![module.clone()]), "").await;
    let key = env.key(Curve::Ed25519).await;
    // Refused before the policy: rejected, no decision recorded.
    let (s, v) = env.transfer("payments", "no-1", &key, 5).await;
    assert_eq!(s, 403, "{v}");
    let st = env.status("no-1").await;
    assert_eq!(st["state"], "rejected");
    assert!(st["decision"].is_null());
    // Held: waits, then released, then evaluated and signed; the steps run
    // after the answer, the first one twice.
    let (s, v) = env.transfer("payments", "hold-1", &key, 5).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state"], "held");
    assert_eq!(v["modules"][0]["module"], "test");
    assert_eq!(v["modules"][0]["data"]["seen"], "hold-1");
    env.coordinator.release("hold-1", "test").await.unwrap();
    let st = env.wait_state("hold-1", "completed").await;
    assert_eq!(
        states(&st["history"]),
        ["held", "approved", "signing", "signed", "completed"]
    );
    assert_eq!(
        *module.runs.lock().unwrap(),
        ["hold-1:broadcast", "hold-1:broadcast", "hold-1:confirm"]
    );
}

#[tokio::test]
async fn the_store_catches_up_with_the_audit_log_after_losing_its_last_writes() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Secp256k1).await;
    let (s, first) = env.transfer("payments", "kept-1", &key, 5).await;
    assert_eq!(s, 200);
    let (s, _) = env.transfer("payments", "wait-1", &key, 3000).await;
    assert_eq!(s, 202);
    let a = env.approval(4, "wait-1", ApprovalDecision::Approve).await;
    let (s, _) = env
        .post("payments", "/v1/requests/wait-1/approvals", a)
        .await;
    assert_eq!(s, 200);
    let (s, lost) = env.transfer("payments", "lost-1", &key, 7).await;
    assert_eq!(s, 200);
    let first_lost = env
        .audit_events()
        .iter()
        .position(|e| e["request_id"] == "wait-1")
        .unwrap();
    let stopped = env.stop().await;
    // A machine crash loses the store's last commits (synchronous=NORMAL)
    // but not the fsynced log: from the first entry of `wait-1` on.
    {
        let c = rusqlite::Connection::open(stopped.db()).unwrap();
        c.execute_batch(
            "DELETE FROM requests WHERE request_id IN ('wait-1', 'lost-1');
             DELETE FROM request_transitions WHERE request_id IN ('wait-1', 'lost-1');
             DELETE FROM approvals WHERE request_id = 'wait-1';",
        )
        .unwrap();
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'audit_applied'",
            [first_lost.to_string()],
        )
        .unwrap();
    }
    let env = stopped.start("").await;
    // Restored from the log: states, the approval, the signature.
    let w = env.status("wait-1").await;
    assert_eq!(w["state"], "pending_approval", "{w}");
    assert_eq!(w["approvals"].as_array().unwrap().len(), 1);
    let l = env.status("lost-1").await;
    assert_eq!(l["state"], "completed", "{l}");
    assert_eq!(l["result"]["signature"], lost["signature"]);
    verify_ecdsa(&l["result"]);
    // A retry answers the logged signature: nothing is signed twice.
    env.signers.clear_calls();
    let (s, again) = env.transfer("payments", "lost-1", &key, 7).await;
    assert_eq!(s, 200);
    assert_eq!(again["signature"], lost["signature"]);
    assert!(env.signers.calls("signer-1").iter().all(|c| c != "sign"));
    assert_eq!(
        env.status("kept-1").await["result"]["signature"],
        first["signature"]
    );
}

#[tokio::test]
async fn a_request_interrupted_while_signing_is_closed_at_restart_and_can_be_retried() {
    let env = start(Modules::default(), "").await;
    let key = env.key(Curve::Ed25519).await;
    let (s, _) = env.transfer("payments", "int-1", &key, 5).await;
    assert_eq!(s, 200);
    let stopped = env.stop().await;
    // As if the process died while the signers were signing.
    {
        let c = rusqlite::Connection::open(stopped.db()).unwrap();
        c.execute_batch(
            "UPDATE requests SET state = 'signing', result_json = NULL WHERE request_id = 'int-1';",
        )
        .unwrap();
    }
    let env = stopped.start("").await;
    let st = env.status("int-1").await;
    assert_eq!(st["state"], "failed", "{st}");
    assert!(env
        .audit_events()
        .iter()
        .any(|e| e["type"] == "request_failed" && e["request_id"] == "int-1"));
    let (s, v) = env.transfer("payments", "int-1", &key, 5).await;
    assert_eq!(s, 200, "{v}");
}
