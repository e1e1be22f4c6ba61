//! The auditor's replay of conditional payouts: a release backed by its
//! condition verifies; a release before the deadline, without the quorum of
//! logged approvals, by someone not named, as another payout, an expiry
//! before its time or with the wrong payout, or anything after the end
//! fails.
mod common;

use common::audit;
use keyfold_audit::Event;

/// Entries of `common::build` are a second apart from this time.
const LOG_START: u64 = 1_700_000_000;

fn ev(id: &str, action: &str, detail: String) -> Event {
    Event::Escrow {
        escrow_id: id.into(),
        action: action.into(),
        detail,
    }
}

fn created(id: &str, escrow: &str) -> Event {
    ev(
        id,
        "created",
        format!(
            r#"{{"merchant_id":null,"client":"ops","spec":{{"payout":{{"wallet":"k","chain":"devnet-l1","asset":"ETH","to":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","amount":"1"}},"escrow":{escrow}}}}}"#
        ),
    )
}

fn ended(id: &str, action: &str, payout: Option<&str>, reason: &str) -> Event {
    let payout = payout.map_or("null".to_string(), |p| format!("\"{p}\""));
    ev(
        id,
        action,
        format!(r#"{{"reason":"{reason}","payout_id":{payout},"released_by":[],"at":0}}"#),
    )
}

fn approved(id: &str, by: &str) -> Event {
    ev(id, "approved", format!(r#"{{"by":"{by}"}}"#))
}

const APPROVERS: &str =
    r#"{"condition":{"kind":"approvers","approvers":["a","b","c"],"quorum":2}}"#;

fn refused(events: &[Event], needle: &str) {
    let e = audit(events).expect_err("the auditor must refuse this log");
    assert!(e.to_string().contains(needle), "{e}");
}

#[test]
fn releases_backed_by_their_condition_verify() {
    let after = format!(
        r#"{{"condition":{{"kind":"after","at":{}}}}}"#,
        LOG_START + 2
    );
    let refund = format!(
        r#"{{"condition":{{"kind":"after","at":{}}},"expires_at":{},"on_expiry":{{"kind":"refund","to":"0xabc"}}}}"#,
        LOG_START + 100,
        LOG_START + 5
    );
    let events = vec![
        created("d", &after),
        ended("d", "released", Some("d.pay"), "the deadline passed"),
        created("q", APPROVERS),
        approved("q", "a"),
        approved("q", "c"),
        ended("q", "released", Some("q.pay"), "released by 2 of 2"),
        created("r", &refund),
        ended(
            "r",
            "expired",
            Some("r.refund"),
            "the condition did not hold; refunded",
        ),
        created("x", APPROVERS),
        ended("x", "cancelled", None, "cancelled by ops"),
    ];
    assert_eq!(audit(&events).unwrap().escrow_events, 10);
}

#[test]
fn a_release_before_its_deadline_is_refused() {
    let after = format!(
        r#"{{"condition":{{"kind":"after","at":{}}}}}"#,
        LOG_START + 100
    );
    refused(
        &[
            created("d", &after),
            ended("d", "released", Some("d.pay"), "x"),
        ],
        "before its deadline",
    );
}

#[test]
fn a_release_without_its_quorum_or_by_someone_not_named_is_refused() {
    refused(
        &[
            created("q", APPROVERS),
            approved("q", "a"),
            ended("q", "released", Some("q.pay"), "x"),
        ],
        "1 logged approvals of the 2 required",
    );
    refused(
        &[created("q", APPROVERS), approved("q", "mallory")],
        "not a named approver",
    );
}

#[test]
fn an_ending_with_the_wrong_payout_or_twice_is_refused() {
    let after = format!(r#"{{"condition":{{"kind":"after","at":{LOG_START}}}}}"#);
    refused(
        &[
            created("w", &after),
            ended("w", "released", Some("other"), "x"),
        ],
        "not w.pay",
    );
    refused(
        &[
            created("t", &after),
            ended("t", "released", Some("t.pay"), "x"),
            ended("t", "cancelled", None, "x"),
        ],
        "after it ended",
    );
    refused(
        &[
            created("c", &after),
            ended("c", "cancelled", Some("c.pay"), "x"),
        ],
        "names a payout",
    );
}

#[test]
fn an_expiry_before_its_time_or_without_its_refund_is_refused() {
    let refund = format!(
        r#"{{"condition":{{"kind":"after","at":{}}},"expires_at":{},"on_expiry":{{"kind":"refund","to":"0xabc"}}}}"#,
        LOG_START + 1000,
        LOG_START + 500
    );
    refused(
        &[
            created("e", &refund),
            ended("e", "expired", Some("e.refund"), "x"),
        ],
        "before its expiry",
    );
    let soon = refund.replace(&(LOG_START + 500).to_string(), &(LOG_START + 1).to_string());
    refused(
        &[created("f", &soon), ended("f", "expired", None, "x")],
        "its on_expiry says",
    );
}
