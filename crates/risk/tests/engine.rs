//! The engine's numbered steps: refused device signatures share the
//! decisions' sequence, are validated before they count, and prune on the
//! same schedule.
mod common;

use common::*;
use keyfold_risk::*;

fn refusal(customer: Option<&str>, device: Option<&str>, code: &str, at: u64) -> RefusalInput {
    RefusalInput {
        customer_id: customer.map(str::to_string),
        device_id: device.map(str::to_string),
        code: code.to_string(),
        at,
    }
}

#[test]
fn three_refusals_make_the_next_decision_freeze_the_device() {
    let t = default();
    let mut s = RiskState::new();
    for (seq, code) in [
        (1, "wrong_device_key"),
        (2, "stale_timestamp"),
        (3, "unknown_device"),
    ] {
        let r = refusal(Some("c-1"), Some("d-1"), code, T0 + seq * 10);
        assert_eq!(refusal_step(&mut s, seq, &r), Ok(()));
    }
    let (features, decision) = match decide_step(&mut s, &t, 4, &request(T0 + 60)) {
        Ok(x) => x,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(features.device_signature_refusals, 3);
    assert_eq!(decision.action, Action::Freeze);
    assert!(
        decision
            .reasons
            .iter()
            .any(|r| r.rule == "device-signature-refusals"),
        "{decision:?}"
    );
}

#[test]
fn every_device_refusal_code_is_accepted_and_nothing_else() {
    let mut s = RiskState::new();
    for (i, code) in DEVICE_REFUSAL_CODES.iter().enumerate() {
        let seq = i as u64 + 1;
        let r = refusal(None, Some("d-1"), code, T0);
        assert_eq!(refusal_step(&mut s, seq, &r), Ok(()), "{code}");
    }
    for code in [
        "bad_totp",
        "kyc_tier_limit",
        "device_too_new",
        "",
        "WRONG_DEVICE_KEY",
    ] {
        let before = format!("{s:?}");
        let e = refusal_step(&mut s, 99, &refusal(None, Some("d-1"), code, T0));
        assert!(
            matches!(&e, Err(InputError::UnknownRefusalCode { code: c }) if c == code),
            "{code}: {e:?}"
        );
        assert_eq!(format!("{s:?}"), before, "a refused record changes nothing");
    }
    // A hostile code is quoted shortened in the error.
    let long = "x".repeat(10_000);
    match refusal_step(&mut s, 99, &refusal(None, Some("d-1"), &long, T0)) {
        Err(InputError::UnknownRefusalCode { code }) => assert_eq!(code.len(), 64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refusal_needs_a_subject_and_bounded_fields() {
    let mut s = RiskState::new();
    assert_eq!(
        refusal_step(&mut s, 1, &refusal(None, None, "wrong_device_key", T0)),
        Err(InputError::RefusalWithoutSubject)
    );
    assert!(matches!(
        refusal_step(&mut s, 1, &refusal(Some(""), None, "wrong_device_key", T0)),
        Err(InputError::Empty { .. })
    ));
    let long = "c".repeat(MAX_ID_BYTES + 1);
    assert!(matches!(
        refusal_step(
            &mut s,
            1,
            &refusal(Some(&long), None, "wrong_device_key", T0)
        ),
        Err(InputError::TooLong { .. })
    ));
    assert!(matches!(
        refusal_step(
            &mut s,
            1,
            &refusal(Some("c-1"), None, "wrong_device_key", MAX_TIME + 1)
        ),
        Err(InputError::TimeOutOfRange { .. })
    ));
    assert!(s.is_empty());
    // Either subject alone is enough.
    assert_eq!(
        refusal_step(
            &mut s,
            1,
            &refusal(Some("c-1"), None, "wrong_device_key", T0)
        ),
        Ok(())
    );
    assert_eq!(
        refusal_step(
            &mut s,
            2,
            &refusal(None, Some("d-1"), "wrong_device_key", T0)
        ),
        Ok(())
    );
}

#[test]
fn refusal_input_json_is_strict_and_omits_absent_ids() {
    let r = refusal(None, Some("dv_1"), "wrong_device_key", T0);
    let json = serde_json::to_string(&r).unwrap_or_default();
    assert_eq!(
        json,
        format!(r#"{{"device_id":"dv_1","code":"wrong_device_key","at":{T0}}}"#)
    );
    assert_eq!(serde_json::from_str::<RefusalInput>(&json).ok(), Some(r));
    let extra = r#"{"device_id":"dv_1","code":"wrong_device_key","at":1,"ip":"1.2.3.4"}"#;
    assert!(serde_json::from_str::<RefusalInput>(extra).is_err());
}

#[test]
fn refusal_steps_prune_on_the_decisions_schedule() {
    // A short retention so that a prune is visible: an idle wallet is gone
    // after a refusal step numbered PRUNE_EVERY_SEQ, not after another one.
    let mut s = RiskState::with_retention(3600);
    observe(&mut s, &request(T0));
    assert_eq!(s.len(EntityKind::Wallet), 1);
    let late = T0 + 7200;
    let r = refusal(None, Some("d-9"), "nonce_log_full", late);
    assert_eq!(refusal_step(&mut s, PRUNE_EVERY_SEQ - 1, &r), Ok(()));
    assert_eq!(s.len(EntityKind::Wallet), 1, "no prune off schedule");
    assert_eq!(refusal_step(&mut s, PRUNE_EVERY_SEQ, &r), Ok(()));
    assert_eq!(s.len(EntityKind::Wallet), 0, "pruned at the refusal's time");
    assert_eq!(s.len(EntityKind::Device), 1, "then counted");
}
