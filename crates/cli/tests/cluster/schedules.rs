//! Scheduled payouts on the cluster's local chain: each occurrence becomes
//! an ordinary payout, paid once and checked independently on chain (k256
//! recovery, anvil's receipts), across a coordinator stopped over an
//! occurrence (paid once, or skipped when the schedule skips missed ones),
//! paused and resumed, cancelled, and bad input refused naming the field.

use std::time::{Duration, Instant};

use keyfold_proto::api::ScheduleInfo;
use serde_json::{json, Value};

use crate::fixture::*;
use crate::payouts::{check_on_chain, unique};

const TO: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A schedule paying 0.001 ETH on devnet-l1 every `every` seconds from
/// `start`, `count` times.
fn body(c: &Cluster, id: &str, start: u64, every: u64, count: u32) -> Value {
    json!({
        "schedule_id": id,
        "payout": {"wallet": c.ecdsa.key_id, "chain": "devnet-l1", "asset": "ETH",
                   "to": TO, "amount": "0.001", "reference": "subscription"},
        "timing": {"rule": {"kind": "interval", "every_secs": every},
                   "start": start, "count": count},
    })
}

impl Cluster {
    async fn post_json(&self, path: &str, body: &Value) -> (u16, String) {
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

    async fn create_schedule(&self, body: &Value) -> ScheduleInfo {
        let (code, text) = self.post_json("/v1/schedules", body).await;
        assert_eq!(code, 201, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn schedule(&self, id: &str) -> ScheduleInfo {
        let (code, s, body) = self
            .get::<ScheduleInfo>(&format!("/v1/schedules/{id}"))
            .await;
        assert_eq!(code, 200, "{body}");
        s.unwrap()
    }

    /// Polls until `done(schedule)` (at most `secs`).
    async fn wait_schedule(
        &self,
        id: &str,
        secs: u64,
        done: impl Fn(&ScheduleInfo) -> bool,
    ) -> ScheduleInfo {
        let t0 = Instant::now();
        loop {
            let s = self.schedule(id).await;
            if done(&s) {
                return s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(secs),
                "schedule {id} did not get there in {secs} s: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The coordinator's `schedule` audit events of `id`: (action, occurrence).
fn logged(c: &Cluster, id: &str) -> Vec<(String, Option<u64>)> {
    c.coordinator_audit()
        .into_iter()
        .filter_map(|e| match e.event {
            keyfold_audit::Event::Schedule {
                schedule_id,
                action,
                occurrence,
                ..
            } if schedule_id == id => Some((action, occurrence)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_pays_each_occurrence_once_as_an_ordinary_payout() {
    let c = cluster().await;
    let rpc = c.chains.l1_rpc();
    let id = unique("sub");
    let created = c.create_schedule(&body(&c, &id, now() + 2, 4, 2)).await;
    assert_eq!(created.state, "active");
    assert_eq!(created.next_occurrence, 0);
    let s = c.wait_schedule(&id, 120, |s| s.state == "finished").await;
    assert_eq!(s.occurrences.len(), 2, "{s:?}");
    let mut due = Vec::new();
    for o in s.occurrences.iter().rev() {
        assert_eq!(o.outcome, "paid", "{o:?}");
        let payout_id = format!("{id}.{}", o.occurrence);
        assert_eq!(o.payout_id.as_deref(), Some(payout_id.as_str()));
        assert!(o.at >= o.due_at, "never handled before it is due: {o:?}");
        let p = c.wait_completed(&payout_id).await;
        assert_eq!((p.amount.as_str(), p.to.as_str()), ("0.001", TO));
        assert_eq!(p.reference.as_deref(), Some("subscription"));
        check_on_chain(&c, &rpc, &p).await;
        due.push(o.due_at);
    }
    assert_eq!(due[1] - due[0], 4, "occurrences every 4 s: {due:?}");
    let actions: Vec<_> = logged(&c, &id);
    assert_eq!(
        actions,
        vec![
            ("created".into(), None),
            ("paid".into(), Some(0)),
            ("paid".into(), Some(1)),
            ("finished".into(), None),
        ]
    );
    // A retried creation answers the same schedule; another body conflicts.
    let (code, text) = c
        .post_json("/v1/schedules", &body(&c, &id, created.timing.start, 4, 2))
        .await;
    assert_eq!(code, 201, "{text}");
    let again: ScheduleInfo = serde_json::from_str(&text).unwrap();
    assert_eq!(again.state, "finished");
    let (code, text) = c
        .post_json("/v1/schedules", &body(&c, &id, created.timing.start, 4, 3))
        .await;
    assert_eq!(code, 409, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_stopped_across_an_occurrence_pays_it_once_after_restart() {
    let mut c = cluster().await;
    let rpc = c.chains.l1_rpc();
    let id = unique("restart");
    let start = now() + 4;
    c.create_schedule(&body(&c, &id, start, 60, 1)).await;
    c.kill("coordinator");
    while now() < start + 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.start("coordinator");
    c.wait_live(&SIGNERS).await;
    let s = c.wait_schedule(&id, 120, |s| s.state == "finished").await;
    assert_eq!(s.occurrences.len(), 1, "{s:?}");
    let o = &s.occurrences[0];
    assert_eq!(o.outcome, "paid", "paid late, once: {o:?}");
    assert!(o.at >= o.due_at + 3, "handled after the restart: {o:?}");
    let p = c.wait_completed(&format!("{id}.0")).await;
    check_on_chain(&c, &rpc, &p).await;
    assert_eq!(
        logged(&c, &id),
        vec![
            ("created".into(), None),
            ("paid".into(), Some(0)),
            ("finished".into(), None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_occurrence_is_skipped_when_the_schedule_says_so() {
    let mut c = cluster().await;
    let id = unique("skip");
    let start = now() + 3;
    let mut b = body(&c, &id, start, 60, 1);
    b["timing"]["missed"] = json!("skip");
    b["timing"]["grace_secs"] = json!(1);
    c.create_schedule(&b).await;
    c.kill("coordinator");
    while now() < start + 3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.start("coordinator");
    c.wait_live(&SIGNERS).await;
    let s = c.wait_schedule(&id, 60, |s| s.state == "finished").await;
    let o = &s.occurrences[0];
    assert_eq!(o.outcome, "skipped", "{o:?}");
    assert!(o.reason.as_deref().unwrap().contains("missed"), "{o:?}");
    assert_eq!(o.payout_id, None);
    let (code, _, _) = c.get::<Value>(&format!("/v1/payouts/{id}.0")).await;
    assert_eq!(code, 404, "no payout was made for a skipped occurrence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_schedule_skips_what_falls_due_and_pays_again_once_resumed() {
    let c = cluster().await;
    let id = unique("pause");
    c.create_schedule(&body(&c, &id, now() + 2, 6, 2)).await;
    let (code, text) = c
        .post_json(&format!("/v1/schedules/{id}/pause"), &json!({}))
        .await;
    assert_eq!(code, 200, "{text}");
    let s = c.wait_schedule(&id, 30, |s| s.next_occurrence >= 1).await;
    assert_eq!(s.state, "paused");
    assert_eq!(s.occurrences[0].outcome, "skipped");
    assert!(s.occurrences[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("paused"));
    let (code, text) = c
        .post_json(&format!("/v1/schedules/{id}/resume"), &json!({}))
        .await;
    assert_eq!(code, 200, "{text}");
    let s = c.wait_schedule(&id, 60, |s| s.state == "finished").await;
    assert_eq!(s.occurrences[0].occurrence, 1);
    assert_eq!(s.occurrences[0].outcome, "paid", "{s:?}");
    c.wait_completed(&format!("{id}.1")).await;
    assert_eq!(
        logged(&c, &id)
            .into_iter()
            .map(|(a, _)| a)
            .collect::<Vec<_>>(),
        ["created", "paused", "skipped", "resumed", "paid", "finished"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_schedule_pays_nothing_more_and_cannot_be_resumed() {
    let c = cluster().await;
    let id = unique("cancel");
    c.create_schedule(&body(&c, &id, now() + 3, 60, 5)).await;
    let (code, text) = c
        .post_json(&format!("/v1/schedules/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(code, 200, "{text}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = c.schedule(&id).await;
    assert_eq!(s.state, "cancelled");
    assert!(s.occurrences.is_empty(), "{s:?}");
    assert_eq!(s.next_due_at, None);
    let (code, text) = c
        .post_json(&format!("/v1/schedules/{id}/resume"), &json!({}))
        .await;
    assert_eq!(code, 409, "{text}");
    assert!(text.contains("cancelled"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_with_bad_input_are_refused_naming_what_is_wrong() {
    let c = cluster().await;
    let t = now() + 60;
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"kind": "monthly", "day": 32, "hour": 9, "minute": 0}),
            400,
            "rule.day",
        ),
        (
            json!({"kind": "weekly", "weekday": "funday", "hour": 9, "minute": 0}),
            400,
            "funday",
        ),
        (
            json!({"kind": "interval", "every_secs": 1}),
            400,
            "rule.every_secs",
        ),
        (
            json!({"kind": "daily", "every_days": 1, "hour": 24, "minute": 0}),
            400,
            "rule.hour",
        ),
    ];
    for (rule, code, needle) in cases {
        let mut b = body(&c, &unique("bad"), t, 60, 1);
        b["timing"]["rule"] = rule;
        let (got, text) = c.post_json("/v1/schedules", &b).await;
        assert_eq!(
            (got, text.contains(needle)),
            (code, true),
            "{needle}: {text}"
        );
    }
    let mut past = body(&c, &unique("bad"), now() - 3600, 60, 1);
    let (code, text) = c.post_json("/v1/schedules", &past).await;
    assert_eq!((code, text.contains("timing.start")), (400, true), "{text}");
    past["timing"]["start"] = json!(t);
    past["timing"]["count"] = json!(0);
    let (code, text) = c.post_json("/v1/schedules", &past).await;
    assert_eq!((code, text.contains("count")), (400, true), "{text}");
    let mut b = body(&c, &unique("bad"), t, 60, 1);
    b["timing"]["until"] = json!(t - 1);
    let (code, text) = c.post_json("/v1/schedules", &b).await;
    assert_eq!((code, text.contains("until")), (400, true), "{text}");
    let mut b = body(&c, &unique("bad"), t, 60, 1);
    b["payout"]["amount"] = json!("0.1234567890123456789");
    let (code, text) = c.post_json("/v1/schedules", &b).await;
    assert_eq!((code, text.contains("payout")), (400, true), "{text}");
    let mut b = body(&c, &unique("bad"), t, 60, 1);
    b["payout"]["wallet"] = json!("0123456789abcdef0123456789abcdef");
    let (code, text) = c.post_json("/v1/schedules", &b).await;
    assert_eq!(code, 404, "{text}");
    let mut b = body(&c, &unique("bad"), t, 60, 1);
    b["payout"]["chain"] = json!("solana-devnet");
    let (code, text) = c.post_json("/v1/schedules", &b).await;
    assert_eq!((code, text.contains("blockhash")), (400, true), "{text}");
    let (code, _, _) = c.get::<Value>("/v1/schedules/never-made").await;
    assert_eq!(code, 404);
}
