//! The auditor's replay of scheduled payouts: a well-formed schedule's
//! events verify, and each way a coordinator could misreport one (paid
//! early, paid twice or out of order, paid by another payout, skipped
//! though it was not missed, paid after a cancel, finished early) fails.
mod common;

use common::audit;
use keyfold_audit::Event;

/// Entries of `common::build` are a second apart from this time.
const LOG_START: u64 = 1_700_000_000;

fn created(id: &str, timing: &str) -> Event {
    Event::Schedule {
        schedule_id: id.into(),
        action: "created".into(),
        occurrence: None,
        detail: format!(
            r#"{{"merchant_id":null,"client":"ops","fingerprint":"00","spec":{{"payout":{{"wallet":"k","chain":"devnet-l1","asset":"ETH","to":"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","amount":"0.01"}},"timing":{timing}}}}}"#
        ),
    }
}

fn interval(start: u64, every: u64, count: u32, missed: &str) -> String {
    format!(
        r#"{{"rule":{{"kind":"interval","every_secs":{every}}},"start":{start},"count":{count},"missed":"{missed}","grace_secs":1}}"#
    )
}

fn handled(id: &str, action: &str, n: u64, due_at: u64, payout: Option<&str>) -> Event {
    let payout = payout.map_or(String::new(), |p| format!(r#","payout_id":"{p}""#));
    Event::Schedule {
        schedule_id: id.into(),
        action: action.into(),
        occurrence: Some(n),
        detail: format!(r#"{{"due_at":{due_at}{payout}}}"#),
    }
}

fn changed(id: &str, action: &str, from: &str, to: &str) -> Event {
    Event::Schedule {
        schedule_id: id.into(),
        action: action.into(),
        occurrence: None,
        detail: format!(r#"{{"from":"{from}","to":"{to}","by":"ops"}}"#),
    }
}

fn paid(id: &str, n: u64, due_at: u64) -> Event {
    handled(id, "paid", n, due_at, Some(&format!("{id}.{n}")))
}

fn refused(events: &[Event], needle: &str) {
    let e = audit(events).expect_err("the auditor must refuse this log");
    assert!(e.to_string().contains(needle), "{e}");
}

#[test]
fn a_schedule_paid_on_time_and_finished_verifies() {
    let s = LOG_START;
    let events = vec![
        created("rent", &interval(s, 1, 3, "pay")),
        paid("rent", 0, s),
        paid("rent", 1, s + 1),
        paid("rent", 2, s + 2),
        changed("rent", "finished", "active", "finished"),
    ];
    assert_eq!(audit(&events).unwrap().schedule_events, 5);
}

#[test]
fn a_paused_schedule_skips_and_a_missed_occurrence_is_skipped_when_the_timing_says_so() {
    let s = LOG_START;
    let events = vec![
        created("p", &interval(s, 1, 10, "pay")),
        changed("p", "paused", "active", "paused"),
        handled("p", "skipped", 0, s, None),
        changed("p", "resumed", "paused", "active"),
        paid("p", 1, s + 1),
        created("m", &interval(s, 1, 10, "skip")),
        // Logged at LOG_START + 7: more than the 1 s grace after s.
        handled("m", "skipped", 0, s, None),
        changed("m", "cancelled", "active", "cancelled"),
    ];
    audit(&events).unwrap();
}

#[test]
fn an_occurrence_paid_before_it_was_due_is_refused() {
    let s = LOG_START + 100;
    refused(
        &[
            created("early", &interval(s, 60, 3, "pay")),
            paid("early", 0, s),
        ],
        "before it was due",
    );
}

#[test]
fn an_occurrence_with_another_due_time_than_its_timing_is_refused() {
    let s = LOG_START;
    refused(
        &[created("d", &interval(s, 1, 3, "pay")), paid("d", 0, s + 1)],
        "its timing says",
    );
}

#[test]
fn an_occurrence_paid_twice_or_out_of_order_is_refused() {
    let s = LOG_START;
    let c = created("o", &interval(s, 1, 5, "pay"));
    refused(
        &[c.clone(), paid("o", 0, s), paid("o", 0, s)],
        "where occurrence 1 was next",
    );
    refused(&[c, paid("o", 1, s + 1)], "where occurrence 0 was next");
}

#[test]
fn an_occurrence_paid_by_another_payout_id_is_refused() {
    let s = LOG_START;
    refused(
        &[
            created("w", &interval(s, 1, 3, "pay")),
            handled("w", "paid", 0, s, Some("someone-else")),
        ],
        "not by the payout w.0",
    );
}

#[test]
fn a_skip_of_an_occurrence_that_was_not_missed_is_refused() {
    let s = LOG_START;
    // The timing pays missed occurrences late: a skip while active is a lie.
    refused(
        &[
            created("k", &interval(s, 1, 3, "pay")),
            handled("k", "skipped", 0, s, None),
        ],
        "was not missed",
    );
}

#[test]
fn an_occurrence_after_a_cancel_or_a_finish_too_early_is_refused() {
    let s = LOG_START;
    refused(
        &[
            created("c", &interval(s, 1, 3, "pay")),
            changed("c", "cancelled", "active", "cancelled"),
            paid("c", 0, s),
        ],
        "after it was cancelled",
    );
    refused(
        &[
            created("f", &interval(s, 1, 3, "pay")),
            paid("f", 0, s),
            changed("f", "finished", "active", "finished"),
        ],
        "still to come",
    );
}

#[test]
fn a_schedule_created_twice_or_with_an_impossible_timing_is_refused() {
    let s = LOG_START;
    let c = created("t", &interval(s, 1, 3, "pay"));
    refused(&[c.clone(), c], "created twice");
    let day32 =
        format!(r#"{{"rule":{{"kind":"monthly","day":32,"hour":9,"minute":0}},"start":{s}}}"#);
    refused(&[created("bad", &day32)], "rule.day");
    refused(&[paid("ghost", 0, s)], "before the schedule was created");
}

/// Rust's schedule arithmetic (`keyfold_programmable`, chrono) and the
/// independent verifier's (Python's `calendar`) agree on the occurrences
/// of every kind of rule, over month ends, leap days and year ends. Skipped
/// with a message where `python3` is missing (the test script installs it).
#[test]
fn the_independent_verifier_computes_the_same_occurrences() {
    use keyfold_programmable::schedule::Timing;
    let rules = [
        r#"{"kind":"monthly","day":31,"hour":9,"minute":0}"#,
        r#"{"kind":"monthly","day":29,"hour":23,"minute":59}"#,
        r#"{"kind":"monthly","day":1,"hour":0,"minute":0}"#,
        r#"{"kind":"weekly","weekday":"monday","hour":9,"minute":30}"#,
        r#"{"kind":"weekly","weekday":"sunday","hour":0,"minute":0}"#,
        r#"{"kind":"daily","every_days":3,"hour":12,"minute":0}"#,
        r#"{"kind":"daily","every_days":1,"hour":0,"minute":1}"#,
        r#"{"kind":"interval","every_secs":3600}"#,
    ];
    // 2027-01-15, 2028-02-29 12:00, 2099-12-31 23:59:59, the log's start.
    let starts = [1_799_971_200u64, 1_835_438_400, 4_102_444_799, LOG_START];
    let mut cases = Vec::new();
    for rule in rules {
        for start in starts {
            let json = format!(
                r#"{{"rule":{rule},"start":{start},"until":{}}}"#,
                start + 400 * 86_400
            );
            let timing: Timing = serde_json::from_str(&json).unwrap();
            let want: Vec<Option<u64>> = (0..40).map(|n| timing.occurrence_at(n)).collect();
            cases.push(serde_json::json!({"timing": serde_json::from_str::<serde_json::Value>(&json).unwrap(), "want": want}));
        }
    }
    let program = "import json\nfrom independent_verify import occurrence_at\n\
         bad = [(c['timing'], n, w, occurrence_at(c['timing'], n)) for c in json.load(sys.stdin)\n\
                for n, w in enumerate(c['want']) if occurrence_at(c['timing'], n) != w]\n\
         print(json.dumps(bad[:5])); sys.exit(1 if bad else 0)\n";
    let Some(out) = common::run_python(program, &serde_json::json!(cases)) else {
        eprintln!("python3 is missing: the independent verifier's calendar was not compared");
        return;
    };
    assert!(
        out.status.success(),
        "the verifier disagrees: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
