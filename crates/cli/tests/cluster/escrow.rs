//! Conditional payouts on the cluster's local chain: held until their
//! condition holds (a deadline, named approvers, a confirmed token transfer
//! into an address), then paid once and checked on chain; given up when
//! the condition can no longer hold (cancelled, or refunded); and
//! conditions that cannot work refused naming the field.

use std::time::{Duration, Instant};

use keyfold_proto::api::ConditionalPayoutInfo;
use serde_json::{json, Value};

use crate::fixture::*;
use crate::payouts::{check_on_chain, unique};

const TO: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/// Where refunds go (anvil's account 7).
const REFUND: &str = "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn body(c: &Cluster, id: &str, escrow: Value) -> Value {
    json!({
        "escrow_id": id,
        "payout": {"wallet": c.ecdsa.key_id, "chain": "devnet-l1", "asset": "ETH",
                   "to": TO, "amount": "0.002"},
        "escrow": escrow,
    })
}

impl Cluster {
    async fn post_escrow(&self, path: &str, body: &Value) -> (u16, String) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn hold(&self, body: &Value) -> ConditionalPayoutInfo {
        let (code, text) = self.post_escrow("/v1/conditional-payouts", body).await;
        assert_eq!(code, 201, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn wait_escrow(&self, id: &str, secs: u64, state: &str) -> ConditionalPayoutInfo {
        let t0 = Instant::now();
        loop {
            let (code, e, body) = self
                .get::<ConditionalPayoutInfo>(&format!("/v1/conditional-payouts/{id}"))
                .await;
            assert_eq!(code, 200, "{body}");
            let e = e.unwrap();
            if e.state == state {
                return e;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "conditional payout {id} is not {state} after {secs} s: {e:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The coordinator's `escrow` audit actions of `id`.
fn logged(c: &Cluster, id: &str) -> Vec<String> {
    c.coordinator_audit()
        .into_iter()
        .filter_map(|e| match e.event {
            keyfold_audit::Event::Escrow {
                escrow_id, action, ..
            } if escrow_id == id => Some(action),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_held_until_a_deadline_is_paid_once_after_it() {
    let c = cluster().await;
    let rpc = c.chains.l1_rpc();
    let id = unique("deadline");
    let at = now() + 3;
    let held = c
        .hold(&body(
            &c,
            &id,
            json!({"condition": {"kind": "after", "at": at}}),
        ))
        .await;
    assert_eq!(held.state, "held");
    let (code, _, _) = c.get::<Value>(&format!("/v1/payouts/{id}.pay")).await;
    assert_eq!(code, 404, "nothing is paid before the deadline");
    let e = c.wait_escrow(&id, 60, "released").await;
    assert!(e.reason.as_deref().unwrap().contains("deadline"), "{e:?}");
    assert_eq!(e.payout_id.as_deref(), Some(format!("{id}.pay").as_str()));
    let p = c.wait_completed(&format!("{id}.pay")).await;
    assert!(
        p.created_at >= at as i64,
        "paid at or after the deadline: {p:?}"
    );
    check_on_chain(&c, &rpc, &p).await;
    assert_eq!(logged(&c, &id), ["created", "released"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_approvers_release_a_held_payout_and_others_cannot() {
    let c = cluster().await;
    let id = unique("approvers");
    // The cluster's API token is the client `devnet` (`keyfold devnet`
    // issues it); `ops-bob` never calls.
    let me = "devnet".to_string();
    let held = c
        .hold(&body(
            &c,
            &id,
            json!({"condition": {"kind": "approvers", "approvers": ["ops-bob", me], "quorum": 1},
                   "expires_at": now() + 600}),
        ))
        .await;
    assert_eq!(held.state, "held");
    let e = c.wait_escrow(&id, 5, "held").await;
    assert!(e.released_by.is_empty());
    let (code, text) = c
        .post_escrow(&format!("/v1/conditional-payouts/{id}/release"), &json!({}))
        .await;
    assert_eq!(code, 200, "{text}");
    let e = c.wait_escrow(&id, 30, "released").await;
    assert_eq!(e.released_by, [me.as_str()]);
    assert!(e.reason.as_deref().unwrap().contains(&me), "{e:?}");
    c.wait_completed(&format!("{id}.pay")).await;
    assert_eq!(logged(&c, &id), ["created", "approved", "released"]);

    // Not an approver of this one: 403, and it stays held.
    let other = unique("not-mine");
    c.hold(&body(
        &c,
        &other,
        json!({"condition": {"kind": "approvers", "approvers": ["ops-bob"], "quorum": 1},
               "expires_at": now() + 600}),
    ))
    .await;
    let (code, text) = c
        .post_escrow(
            &format!("/v1/conditional-payouts/{other}/release"),
            &json!({}),
        )
        .await;
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("ops-bob"), "{text}");
    let (code, text) = c
        .post_escrow(
            &format!("/v1/conditional-payouts/{other}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(code, 200, "{text}");
    let e = c.wait_escrow(&other, 5, "cancelled").await;
    assert_eq!(e.payout_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_that_expires_refunds_as_configured() {
    let c = cluster().await;
    let rpc = c.chains.l1_rpc();
    let id = unique("refund");
    c.hold(&body(
        &c,
        &id,
        json!({"condition": {"kind": "approvers", "approvers": ["ops-bob"], "quorum": 1},
               "expires_at": now() + 3,
               "on_expiry": {"kind": "refund", "to": REFUND}}),
    ))
    .await;
    let e = c.wait_escrow(&id, 60, "expired").await;
    assert!(e.reason.as_deref().unwrap().contains("refunded"), "{e:?}");
    let refund = c.wait_completed(&format!("{id}.refund")).await;
    assert_eq!(refund.to, REFUND);
    check_on_chain(&c, &rpc, &refund).await;
    let (code, _, _) = c.get::<Value>(&format!("/v1/payouts/{id}.pay")).await;
    assert_eq!(code, 404, "the held payout itself is never paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_token_transfer_into_an_address_releases_a_held_payout() {
    let c = cluster().await;
    let id = unique("transfer");
    // Released by 1.5 KFT (6 decimals) into the watched address: the
    // cluster's own wallet pays it, as a customer would.
    let watched = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720";
    c.hold(&body(
        &c,
        &id,
        json!({"condition": {"kind": "token_transfer", "chain": "devnet-l1", "asset": "KFT",
                             "to": watched, "min_amount": "1500000"},
               "expires_at": now() + 600}),
    ))
    .await;
    // Too small first: still held.
    let mut small = crate::payouts::payout(&unique("tt-small"), &c, "devnet-l1", "KFT", "1");
    small.to = watched.into();
    let small = c.payout_ok(&small).await;
    c.wait_completed(&small.payout_id).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.wait_escrow(&id, 1, "held").await;
    let mut enough = crate::payouts::payout(&unique("tt-enough"), &c, "devnet-l1", "KFT", "1.5");
    enough.to = watched.into();
    let enough = c.payout_ok(&enough).await;
    let enough = c.wait_completed(&enough.payout_id).await;
    let e = c.wait_escrow(&id, 60, "released").await;
    let tx = enough.tx_hash.unwrap();
    assert!(
        e.reason.as_deref().unwrap().contains(&tx),
        "the transfer is named: {e:?}"
    );
    c.wait_completed(&format!("{id}.pay")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_that_cannot_work_are_refused_naming_the_field() {
    let c = cluster().await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"condition": {"kind": "moon_phase"}}),
            400,
            "moon_phase",
        ),
        (
            json!({"condition": {"kind": "approvers", "approvers": ["a"], "quorum": 2}}),
            400,
            "condition.quorum",
        ),
        (
            json!({"condition": {"kind": "after", "at": now() + 100}, "expires_at": now() + 50}),
            400,
            "expires_at",
        ),
        (
            json!({"condition": {"kind": "order_settled", "order_id": "o-1"}}),
            400,
            "merchant",
        ),
        (
            json!({"condition": {"kind": "token_transfer", "chain": "devnet-l1", "asset": "ETH",
                                 "to": TO, "min_amount": "1"}}),
            400,
            "condition.asset",
        ),
        (
            json!({"condition": {"kind": "token_transfer", "chain": "devnet-l1", "asset": "KFT",
                                 "to": "nowhere", "min_amount": "1"}}),
            400,
            "condition.to",
        ),
        (
            json!({"condition": {"kind": "after", "at": now() + 100}, "expires_at": now() + 200,
                   "on_expiry": {"kind": "refund", "to": "0x1234"}}),
            400,
            "on_expiry.to",
        ),
    ];
    for (escrow, code, needle) in cases {
        let (got, text) = c
            .post_escrow("/v1/conditional-payouts", &body(&c, &unique("bad"), escrow))
            .await;
        assert_eq!(
            (got, text.contains(needle)),
            (code, true),
            "{needle}: {text}"
        );
    }
    let id = unique("twice");
    let b = body(
        &c,
        &id,
        json!({"condition": {"kind": "after", "at": now() + 600}}),
    );
    c.hold(&b).await;
    let (code, text) = c.post_escrow("/v1/conditional-payouts", &b).await;
    assert_eq!(code, 201, "the same body again answers the same: {text}");
    let other = body(
        &c,
        &id,
        json!({"condition": {"kind": "after", "at": now() + 700}}),
    );
    let (code, text) = c.post_escrow("/v1/conditional-payouts", &other).await;
    assert_eq!(code, 409, "{text}");
    let (code, text) = c
        .post_escrow(&format!("/v1/conditional-payouts/{id}/release"), &json!({}))
        .await;
    assert_eq!(code, 409, "not an approvers condition: {text}");
    c.post_escrow(&format!("/v1/conditional-payouts/{id}/cancel"), &json!({}))
        .await;
}
