//! The cluster as separate processes on loopback, driven from outside:
//! signatures on both curves verified independently, policy with approvals,
//! time locks and signed updates, cold keys in the HSM, signers and the
//! coordinator killed and restarted (one of them in the middle of a signing
//! session), a signer restored from a backup, and the audit logs verified
//! offline. Each test names one behaviour and runs on the shared cluster of
//! [`fixture`], which it finds healthy whatever the test before it did.

mod allocations;
mod chains;
mod customer_auth;
mod devnet_programmable;
mod devnet_risk;
mod escrow;
mod fixture;
mod merchants;
mod payouts;
mod risk;
mod rollout;
mod sandbox;
mod schedules;
mod shadow;
mod treasury;

use std::process::Command;
use std::time::{Duration, Instant};

use fixture::*;
use keyfold_audit::Event;
use keyfold_proto::api::{KeyInfo, RequestState, RequestStatus, SignMode, SignRequest, SignResult};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_keys_survive_its_shutdown_and_sign_on_both_curves_through_the_pool() {
    let c = cluster().await;
    // The pool refills in the background (slowly on a loaded machine, and
    // entries a restored signer no longer holds fall back to full signing
    // once): start from a warm one.
    let t0 = Instant::now();
    while c.status().await.map_or(0, |s| s.presignatures) < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(300),
            "the presignature pool did not refill in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut modes = Vec::new();
    for i in 0..20 {
        let msg = format!("payout #{i}");
        let r = c
            .sign_ok(&request(&format!("e-{i}"), &c.ecdsa, msg.as_bytes(), None))
            .await;
        modes.push(r.mode);
        c.sign_ok(&request(&format!("d-{i}"), &c.eddsa, msg.as_bytes(), None))
            .await;
    }
    assert!(
        modes.contains(&SignMode::Presignature),
        "the presignature pool never served: {modes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_id_returns_the_first_result_and_another_payload_conflicts() {
    let c = cluster().await;
    let first = c.sign_ok(&request("idem-1", &c.ecdsa, b"once", None)).await;
    let again = c.sign_ok(&request("idem-1", &c.ecdsa, b"once", None)).await;
    assert_eq!(first, again);
    let (status, body) = c.sign(&request("idem-1", &c.ecdsa, b"twice", None)).await;
    assert_eq!(status.as_u16(), 409, "{body}");
    assert!(body.contains("conflict"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_are_denied_by_the_catch_all_rule() {
    let c = cluster().await;
    let raw = SignRequest {
        request_id: "raw-1".into(),
        key_id: c.ecdsa.key_id.clone(),
        transfer: None,
        message: Some(hex::encode(b"blind bytes")),
        hash: None,
        derivation_path: None,
    };
    let (status, body) = c.sign(&raw).await;
    assert_eq!(status.as_u16(), 403, "{body}");
    assert!(
        body.contains("policy_denied") && body.contains("deny-all"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_withdrawal_waits_for_two_officers_approved_with_the_cli() {
    let c = cluster().await;
    let big = transfer("big-1", &c.ecdsa, 5_000_000, "treasury-payout", None);
    let (status, body) = c.sign(&big).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    let st: RequestStatus = serde_json::from_str(&body).unwrap();
    assert_eq!(st.state, RequestState::PendingApproval);
    let listed = keyfold(&[
        "approvals",
        "list",
        "--api",
        &c.url(""),
        "--token-file",
        c.dir.join("api-token").to_str().unwrap(),
    ]);
    assert!(
        listed.contains("big-1") && listed.contains("treasury 0/2"),
        "{listed}"
    );
    let out = c.decide("approve", "big-1", "alice");
    assert!(out.contains("now pending_approval"), "{out}");
    // The same officer twice still counts once.
    let out = c.decide("approve", "big-1", "alice");
    assert!(out.contains("now pending_approval"), "{out}");
    let out = c.decide("approve", "big-1", "bob");
    assert!(out.contains("now completed"), "{out}");
    let (code, res, body) = c.get::<SignResult>("/v1/signatures/big-1").await;
    assert_eq!(code, 200, "{body}");
    let res = res.unwrap();
    verify(&res);
    assert_eq!(hex::decode(&res.message).unwrap(), expected_message(&big));
    // Retrying the request returns the signature.
    assert_eq!(c.sign_ok(&big).await, res);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_rejection_closes_a_waiting_request() {
    let c = cluster().await;
    let vetoed = transfer("big-2", &c.ecdsa, 7_000_000, "suspicious", None);
    let (status, body) = c.sign(&vetoed).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    let out = c.decide("reject", "big-2", "carol");
    assert!(out.contains("now rejected"), "{out}");
    let (status, body) = c.sign(&vetoed).await;
    assert_eq!(status.as_u16(), 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_locked_transfer_is_released_by_the_coordinator_after_its_delay() {
    let c = cluster().await;
    let slow = transfer("slow-1", &c.eddsa, 10, "slow", None);
    let (status, body) = c.sign(&slow).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["state"], "time_locked", "{body}");
    // The lock is in Unix seconds from the request's time (whole seconds):
    // 3 s after it, which is 2 to 3 s of wall time from here.
    let until = st["decision"]["outcome"]["until"]
        .as_u64()
        .unwrap_or_else(|| panic!("no lock end in {body}"));
    let res = c.wait_signed("slow-1").await;
    verify(&res);
    // Signing started only once the lock had passed, by the coordinator's
    // own record of the request.
    let (code, st, body) = c.get::<RequestStatus>("/v1/requests/slow-1").await;
    assert_eq!(code, 200, "{body}");
    let signing = st
        .unwrap()
        .history
        .into_iter()
        .find(|t| t.to == RequestState::Signing)
        .unwrap_or_else(|| panic!("never signing: {body}"));
    assert!(
        signing.at_ms >= i64::try_from(until).unwrap() * 1000,
        "signing started at {} ms, the lock ends at {until} s",
        signing.at_ms
    );
}

/// `keyfold policy sign` of `version` (small transfers up to `small_max`)
/// by `officers`; returns the document and signature files.
fn signed_policy(
    c: &Cluster,
    version: u64,
    small_max: u128,
    officers: &[&str],
) -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let doc = c.dir.join(format!("policy-v{version}.toml"));
    std::fs::write(&doc, test_policy(&c.officers, version, small_max)).unwrap();
    let sigs = officers
        .iter()
        .map(|officer| {
            let sig = keyfold(&[
                "policy",
                "sign",
                doc.to_str().unwrap(),
                "--key",
                c.dir.join(format!("{officer}.key")).to_str().unwrap(),
            ]);
            let f = c.dir.join(format!("v{version}-{officer}.sig.json"));
            std::fs::write(&f, sig.trim()).unwrap();
            f
        })
        .collect();
    (doc, sigs)
}

/// `keyfold policy push` (the process's output, success or not).
fn push(c: &Cluster, doc: &std::path::Path, sigs: &[std::path::PathBuf]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["policy", "push"]).arg(doc);
    for s in sigs {
        cmd.arg("--signature").arg(s);
    }
    cmd.args(["--api", &c.url(""), "--token-file"])
        .arg(c.dir.join("api-token"))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_update_needs_two_admin_signatures_and_reaches_every_signer() {
    let mut c = cluster().await;
    let tighter = c.policy_version + 1;
    // Small transfers only up to 100 from now on.
    let (doc, sigs) = signed_policy(&c, tighter, 100, &["alice", "bob"]);
    let out = push(&c, &doc, &sigs[..1]);
    assert!(
        !out.status.success(),
        "one admin signature must not be enough"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only 1 valid admin signature"), "{err}");
    let out = push(&c, &doc, &sigs);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("policy version {tighter} is in force")),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.policy_version = tighter;
    c.policy_push = Some((doc, sigs));
    let status = c.status().await.unwrap();
    assert_eq!(status.policy_version, tighter);
    assert!(
        status
            .signers
            .iter()
            .all(|h| h.policy_version == Some(tighter)),
        "{status:?}"
    );
    // 5 000 units now needs approvals; 100 still signs at once.
    let (code, body) = c
        .sign(&transfer("v2-1", &c.ecdsa, 5_000, "under-v2", None))
        .await;
    assert_eq!(code.as_u16(), 202, "{body}");
    c.sign_ok(&transfer("v2-2", &c.ecdsa, 100, "under-v2", None))
        .await;
    // The waiting request is cancelled by its initiator.
    let r = c
        .http
        .post(c.url("/v1/requests/v2-1/cancel"))
        .bearer_auth(&c.token)
        .json(&serde_json::json!({"reason": "superseded"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let st: RequestStatus = r.json().await.unwrap();
    assert_eq!(st.state, RequestState::Cancelled);

    // The limit back where the other tests expect it, by the same process.
    let restored = tighter + 1;
    let (doc, sigs) = signed_policy(&c, restored, SMALL_MAX, &["bob", "carol"]);
    let out = push(&c, &doc, &sigs);
    assert!(out.status.success(), "{out:?}");
    c.policy_version = restored;
    c.policy_push = Some((doc, sigs));
    c.sign_ok(&transfer("v3-1", &c.ecdsa, 5_000, "under-v3", None))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_keys_sign_in_the_hsm_after_two_approvals_and_a_time_lock() {
    let c = cluster().await;
    for curve in ["secp256k1", "ed25519"] {
        let r = c
            .http
            .post(c.url("/v1/keys"))
            .bearer_auth(&c.token)
            .json(&serde_json::json!({"curve": curve, "tier": "cold"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let cold: KeyInfo = r.json().await.unwrap();
        assert_eq!(cold.tier, keyfold_policy::Tier::Cold);
        assert_eq!(cold.participants, vec!["hsm".to_string()]);
        let id = format!("cold-{curve}");
        let req = transfer(&id, &cold, 42, "cold-sweep", None);
        let (status, body) = c.sign(&req).await;
        assert_eq!(status.as_u16(), 202, "{body}");
        assert!(body.contains("pending_approval"), "{body}");
        c.decide("approve", &id, "alice");
        let out = c.decide("approve", &id, "carol");
        assert!(
            out.contains("now time_locked") || out.contains("now completed"),
            "{out}"
        );
        let res = c.wait_signed(&id).await;
        verify(&res);
        assert_eq!(res.mode, SignMode::Hsm);
        assert_eq!(hex::decode(&res.message).unwrap(), expected_message(&req));
        assert_eq!(res.public_key, cold.public_key);
        // No HD derivation for cold keys.
        let (status, body) = c
            .sign(&transfer("cold-path", &cold, 1, "dest-1", Some("m/0")))
            .await;
        assert_eq!(status.as_u16(), 400, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_key_in_the_coordinators_hsm_is_made_once_and_stays() {
    let c = cluster().await;
    let coord_conf = c.dir.join("config").join("coordinator.toml");
    let softhsm_env = c.dir.join("softhsm").join("softhsm2.conf");
    let audit_args = ["hsm", "audit-key", "--config", coord_conf.to_str().unwrap()];
    let k1 = keyfold_env(&audit_args, &[("SOFTHSM2_CONF", softhsm_env.as_path())]);
    let k2 = keyfold_env(&audit_args, &[("SOFTHSM2_CONF", softhsm_env.as_path())]);
    assert_eq!(k1.trim().len(), 64, "{k1}");
    assert_eq!(k1, k2);
    ed25519_dalek::VerifyingKey::from_bytes(&hex::decode(k1.trim()).unwrap().try_into().unwrap())
        .expect("an Ed25519 public key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_down_before_the_session_is_routed_around_and_signs_again_after_restart() {
    let mut c = cluster().await;
    c.kill("signer-1");
    let r = c
        .sign_ok(&request(
            "down-1",
            &c.ecdsa,
            b"signer-1 is down",
            Some("m/0/5"),
        ))
        .await;
    assert!(!r.signers.contains(&"signer-1".to_string()), "{r:?}");
    let r = c
        .sign_ok(&request("down-2", &c.eddsa, b"signer-1 is down", None))
        .await;
    assert!(!r.signers.contains(&"signer-1".to_string()), "{r:?}");

    // Restarted with its shares, it signs again: with signer-2 down, the
    // only quorum is {signer-1, signer-3}.
    c.start("signer-1");
    c.wait_live(&["signer-1"]).await;
    c.kill("signer-2");
    for (id, key, path) in [
        ("back-1", &c.ecdsa, Some("m/1")),
        ("back-2", &c.eddsa, None),
    ] {
        let r = c
            .sign_ok(&request(id, key, b"signer-1 is back", path))
            .await;
        assert_eq!(
            r.signers,
            vec!["signer-1".to_string(), "signer-3".to_string()]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_signing_fails_fast_and_the_same_id_signs_once_signers_are_back() {
    let mut c = cluster().await;
    c.kill("signer-2");
    c.kill("signer-3");
    let t0 = Instant::now();
    let (status, body) = c
        .sign(&request("alone-1", &c.eddsa, b"no quorum", None))
        .await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert!(body.contains("quorum_unavailable"), "{body}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    c.start("signer-2");
    c.start("signer-3");
    c.wait_live(&SIGNERS).await;
    let r = c
        .sign_ok(&request("alone-1", &c.eddsa, b"no quorum", None))
        .await;
    assert_eq!(r.request_id, "alone-1");
}

/// The coordinator's audit entries of `request_id`.
fn audit_of(c: &Cluster, request_id: &str) -> Vec<Event> {
    c.coordinator_audit()
        .into_iter()
        .map(|e| e.event)
        .filter(|e| e.request_id() == Some(request_id))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_killed_mid_session_aborts_it_is_blamed_and_another_quorum_signs() {
    let mut c = cluster().await;
    // An HD path: full signing (presignatures are never combined with HD
    // derivation), whose first quorum is the first two live signers.
    let path = Some("m/7");
    let mut last = String::new();
    for attempt in 0..3 {
        let id = format!("during-{attempt}");
        // A status request just before refreshes the coordinator's liveness
        // cache (kept 1 s), so the request right after still counts signer-1
        // live once frozen.
        let status = c.status().await.expect("status");
        assert!(status.signers.iter().all(|h| h.live), "{status:?}");
        // Frozen, signer-1 cannot finish a session it is part of.
        c.signal("signer-1", "STOP");
        let pending = {
            let http = c.http.clone();
            let url = c.url("/v1/signatures");
            let token = c.token.clone();
            let req = request(&id, &c.ecdsa, b"killed mid-session", path);
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&req)
                    .send()
                    .await
                    .unwrap();
                (r.status(), r.text().await.unwrap())
            })
        };
        // The request is provably mid-session: state `signing`, no
        // signature, and (checked below) its first session names signer-1.
        let t0 = Instant::now();
        loop {
            let (code, st, body) = c.get::<RequestStatus>(&format!("/v1/requests/{id}")).await;
            if code == 200 {
                let st = st.unwrap_or_else(|| panic!("{body}"));
                assert!(
                    !matches!(st.state, RequestState::Completed | RequestState::Signed),
                    "{id} signed while signer-1 was frozen: {body}"
                );
                if st.state == RequestState::Signing {
                    break;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "{id}: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Give the session a moment to reach the frozen signer, then kill it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (code, _, _) = c.get::<SignResult>(&format!("/v1/signatures/{id}")).await;
        assert_ne!(code, 200, "{id} signed while signer-1 was frozen");
        c.kill("signer-1");

        let (status, body) = pending.await.unwrap();
        assert!(status.is_success(), "{status} {body}");
        let r: SignResult = serde_json::from_str(&body).unwrap();
        verify(&r);
        assert!(!r.signers.contains(&"signer-1".to_string()), "{r:?}");

        // The audit log: a session with signer-1, aborted with signer-1
        // blamed, then a session of the two others that signed.
        let events = audit_of(&c, &id);
        let sessions: Vec<(&str, &Vec<String>)> = events
            .iter()
            .filter_map(|e| match e {
                Event::SigningSession {
                    session_id,
                    signers,
                    ..
                } => Some((session_id.as_str(), signers)),
                _ => None,
            })
            .collect();
        let Some((first, members)) = sessions.first() else {
            panic!("{id}: no signing session in the audit log: {events:?}");
        };
        if !members.contains(&"signer-1".to_string()) {
            // The liveness cache expired between the freeze and the
            // request: signer-1 was never asked. Try again.
            last = format!("{id}: first session {members:?}");
            eprintln!("{last}: signer-1 was not asked; trying again");
            c.start("signer-1");
            c.wait_live(&SIGNERS).await;
            continue;
        }
        let aborted = events.iter().find_map(|e| match e {
            Event::Aborted {
                session_id, blamed, ..
            } if session_id == first => Some(blamed.clone()),
            _ => None,
        });
        assert_eq!(
            aborted,
            Some(Some("signer-1".to_string())),
            "{id}: the session with the killed signer must abort blaming it: {events:?}"
        );
        assert!(
            matches!(events.last(), Some(Event::Signature { .. })),
            "{events:?}"
        );
        return;
    }
    panic!("signer-1 was never part of a session in 3 attempts ({last})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_coordinator_keeps_keys_and_results() {
    let mut c = cluster().await;
    let first = c
        .sign_ok(&request("restart-1", &c.ecdsa, b"before the restart", None))
        .await;
    c.kill("coordinator");
    c.start("coordinator");
    c.wait_live(&SIGNERS).await;
    let (code, keys, body) = c.get::<serde_json::Value>("/v1/keys").await;
    assert_eq!(code, 200, "{body}");
    let keys: Vec<KeyInfo> = serde_json::from_value(keys.unwrap()["keys"].clone()).unwrap();
    assert!(keys.contains(&c.ecdsa) && keys.contains(&c.eddsa), "{body}");
    let again = c
        .sign_ok(&request("restart-1", &c.ecdsa, b"before the restart", None))
        .await;
    assert_eq!(first, again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signer_restored_from_a_backup_signs_under_the_same_group_keys() {
    let mut c = cluster().await;
    // signer-1's shares exported to an offline recovery key, its data
    // directory and HSM token wiped, a fresh token made, the backup restored.
    let dir = c.dir.clone();
    let softhsm_conf = dir.join("softhsm").join("softhsm2.conf");
    let env = [("SOFTHSM2_CONF", softhsm_conf.as_path())];
    let recovery_key = dir.join("recovery.key");
    let _ = std::fs::remove_file(&recovery_key);
    let recipient = keyfold(&["backup", "keygen", "--out", recovery_key.to_str().unwrap()]);
    let signer1_conf = dir.join("config").join("signer-1.toml");
    let backup = dir.join("signer-1.backup");
    let _ = std::fs::remove_file(&backup);
    keyfold_env(
        &[
            "backup",
            "export",
            "--config",
            signer1_conf.to_str().unwrap(),
            "--recipient",
            recipient.trim(),
            "--out",
            backup.to_str().unwrap(),
        ],
        &env,
    );
    c.kill("signer-1");
    std::fs::remove_dir_all(dir.join("signer-1")).unwrap();
    let softhsm = |args: &[&str]| {
        let out = Command::new("softhsm2-util")
            .args(args)
            .env("SOFTHSM2_CONF", &softhsm_conf)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    softhsm(&["--delete-token", "--token", "keyfold-signer-1"]);
    let new_pin = "fresh-token-pin-4821";
    softhsm(&[
        "--init-token",
        "--free",
        "--label",
        "keyfold-signer-1",
        "--so-pin",
        "fresh-so-pin-7730",
        "--pin",
        new_pin,
    ]);
    let pin_file = dir.join("softhsm").join("keyfold-signer-1.pin");
    std::fs::write(&pin_file, new_pin).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let restored = keyfold_env(
        &[
            "backup",
            "restore",
            "--config",
            signer1_conf.to_str().unwrap(),
            "--identity",
            recovery_key.to_str().unwrap(),
            "--in",
            backup.to_str().unwrap(),
        ],
        &env,
    );
    assert!(
        restored.contains(&c.ecdsa.key_id) && restored.contains(&c.eddsa.key_id),
        "{restored}"
    );
    c.start("signer-1");
    c.wait_live(&SIGNERS).await;
    // The restored node starts from the genesis policy file: the policy in
    // force is pushed again (the same signed update), as the runbook says.
    c.push_policy_in_force();
    let status = c.status().await.unwrap();
    assert!(
        status
            .signers
            .iter()
            .all(|h| h.policy_version == Some(c.policy_version)),
        "{status:?}"
    );
    c.kill("signer-2");
    for key in [c.ecdsa.clone(), c.eddsa.clone()] {
        let r = c
            .sign_ok(&request(
                &format!("restored-{}", key.curve),
                &key,
                b"after recovery",
                None,
            ))
            .await;
        assert_eq!(
            r.signers,
            vec!["signer-1".to_string(), "signer-3".to_string()]
        );
        assert_eq!(r.public_key, key.public_key, "same group key after restore");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_whose_audit_log_refuses_writes_fails_closed() {
    let mut c = cluster().await;
    // The operator's size guard, here 1 byte: 503 audit_unavailable, and
    // the request does not exist afterwards.
    c.restart_coordinator(Some("audit_max_bytes = 1\n"));
    c.wait_live(&SIGNERS).await;
    let unlogged = transfer("unlogged-1", &c.ecdsa, 10, "abc", None);
    let (status, body) = c.sign(&unlogged).await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert!(body.contains("audit_unavailable"), "{body}");
    let (code, _, body) = c.get::<RequestStatus>("/v1/requests/unlogged-1").await;
    assert_eq!(code, 404, "{body}");
    c.restart_coordinator(None);
    c.wait_live(&SIGNERS).await;
    verify(&c.sign_ok(&unlogged).await);
}

/// The number before `what` in a `keyfold audit verify` summary line.
fn count(line: &str, what: &str) -> u64 {
    let before = line.split(what).next().unwrap_or_default();
    before
        .rsplit(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs `keyfold audit verify DIR EXTRA..`, expecting a refusal; returns
/// its output.
fn refused(dir: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["audit", "verify", dir])
        .args(extra)
        .output()
        .unwrap();
    assert!(!out.status.success(), "tampered bundle {dir} verified");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn export(c: &Cluster, name: &str) -> std::path::PathBuf {
    let bundle = c.dir.join(name);
    let _ = std::fs::remove_dir_all(&bundle);
    let out = keyfold(&[
        "audit",
        "export",
        "--data-dir",
        c.dir.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
    ]);
    assert!(out.contains("exported 4 logs"), "{out}");
    bundle
}

/// Every node's log exported and verified offline (chain, tree, checkpoint
/// signatures, inclusion, approvals, policy re-evaluation, signatures),
/// cross-checked, then tampered with; last, a coordinator that skips its
/// own policy check is refused by the signers and named by the audit. (One
/// test: the bypass leaves the coordinator's log failing for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_logs_verify_offline_and_name_tampering_and_a_policy_bypass() {
    let mut c = cluster().await;
    // What the counts below need, made here: an approved withdrawal, a
    // denial, signatures on both curves.
    let big = transfer("audit-big", &c.ecdsa, 5_000_000, "audited-payout", None);
    let (status, body) = c.sign(&big).await;
    assert_eq!(status.as_u16(), 202, "{body}");
    c.decide("approve", "audit-big", "alice");
    c.decide("approve", "audit-big", "bob");
    verify(&c.wait_signed("audit-big").await);
    let raw = SignRequest {
        request_id: "audit-raw".into(),
        key_id: c.ecdsa.key_id.clone(),
        transfer: None,
        message: Some(hex::encode(b"blind bytes")),
        hash: None,
        derivation_path: None,
    };
    assert_eq!(c.sign(&raw).await.0.as_u16(), 403);
    c.sign_ok(&request("audit-1", &c.eddsa, b"audited", None))
        .await;
    // A payout, sent and confirmed: its signed bytes and its confirmation
    // are in the log.
    let paid = c
        .payout_ok(&payouts::payout(
            &payouts::unique("audit-payout"),
            &c,
            "devnet-l1",
            "ETH",
            "0.01",
        ))
        .await;
    let paid = c.wait_completed(&paid.payout_id).await;
    // Nodes checkpoint every 5 s: the prefix a hiding coordinator would keep.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let cps_path = c
        .dir
        .join("coordinator")
        .join("audit")
        .join("checkpoints.jsonl");
    let hiding_at = std::fs::read_to_string(&cps_path)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    // Requests after it, which the signers' logs record.
    c.sign_ok(&request("audit-2", &c.ecdsa, b"after the prefix", None))
        .await;
    c.sign_ok(&request("audit-3", &c.eddsa, b"after the prefix", None))
        .await;
    // A customer payout: a risk decision the auditor recomputes.
    let mut judged = payouts::payout(
        &payouts::unique("audit-risk"),
        &c,
        "devnet-l1",
        "ETH",
        "0.0001",
    );
    judged.client = Some(keyfold_proto::api::PaymentClient {
        customer_id: payouts::unique("audited-customer"),
        device_id: None,
        ip: None,
        country: Some("NL".into()),
        kyc_tier: None,
        device_signature: None,
        totp: None,
        password: None,
    });
    assert!(c.payout_ok(&judged).await.risk.is_some());
    tokio::time::sleep(Duration::from_secs(6)).await;

    let bundle = export(&c, "audit-bundle");
    let out = keyfold(&["audit", "verify", bundle.to_str().unwrap()]);
    assert!(out.contains("all 4 logs verified"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("coordinator: OK"))
        .unwrap_or_default()
        .to_string();
    assert!(count(&line, " keys") >= 2, "{line}");
    assert!(count(&line, " approvals verified") >= 2, "{line}");
    assert!(count(&line, " denials") >= 1, "{line}");
    assert!(count(&line, " signatures verified") >= 4, "{line}");
    assert!(count(&line, " policy versions") >= 1, "{line}");
    assert!(count(&line, " risk trees") >= 1, "{line}");
    assert!(count(&line, " risk decisions recomputed") >= 1, "{line}");
    for s in ["signer-1: OK", "signer-2: OK", "signer-3: OK"] {
        assert!(out.contains(s), "{out}");
    }
    let chain_events: Vec<String> = c
        .coordinator_audit()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::ChainTransaction {
                request_id,
                action,
                raw_tx,
                tx_hash,
                ..
            } if request_id == paid.request_id => {
                assert_eq!(Some(&tx_hash), paid.tx_hash.as_ref());
                Some(format!(
                    "{action}{}",
                    if raw_tx.is_some() { "+raw" } else { "" }
                ))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        chain_events,
        ["broadcast+raw", "confirmed"],
        "{chain_events:?}"
    );
    // The independent verifier (Python, docs/audit-log.md alone) agrees.
    let py = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../audit/tools/independent_verify.py"
        ))
        .arg(&bundle)
        .output()
        .expect("python3 (testnets/ensure-deps.sh installs it)");
    let py_out = String::from_utf8_lossy(&py.stdout);
    assert!(py.status.success() && py_out.contains("ALL OK"), "{py_out}");
    let out = keyfold(&["audit", "cross-check", bundle.to_str().unwrap()]);
    assert!(out.contains("cross-check OK"), "{out}");

    // An auditor who kept the first checkpoint proves the log only grew.
    let coord_dir = bundle.join("coordinator");
    let cps = std::fs::read_to_string(coord_dir.join("checkpoints.jsonl")).unwrap();
    let kept = c.dir.join("kept-checkpoint.json");
    std::fs::write(&kept, cps.lines().next().unwrap()).unwrap();
    let out = keyfold(&[
        "audit",
        "verify",
        bundle.to_str().unwrap(),
        "--kept",
        kept.to_str().unwrap(),
    ]);
    assert!(out.contains("was only appended to"), "{out}");

    // Tampering: each copy of the bundle is refused, naming the entry.
    let entries = std::fs::read_to_string(coord_dir.join("entries.jsonl")).unwrap();
    let lines: Vec<&str> = entries.lines().collect();
    let dir = c.dir.clone();
    let tampered = |name: &str, entries: String, checkpoints: Option<String>| -> String {
        let copy = dir.join(format!("audit-{name}"));
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(&copy).unwrap();
        for log in ["coordinator", "signer-1", "signer-2", "signer-3"] {
            let to = copy.join(log);
            std::fs::create_dir_all(&to).unwrap();
            for f in ["entries.jsonl", "checkpoints.jsonl"] {
                std::fs::copy(bundle.join(log).join(f), to.join(f)).unwrap();
            }
        }
        std::fs::copy(bundle.join("keys.json"), copy.join("keys.json")).unwrap();
        std::fs::write(copy.join("coordinator").join("entries.jsonl"), entries).unwrap();
        if let Some(cp) = checkpoints {
            std::fs::write(copy.join("coordinator").join("checkpoints.jsonl"), cp).unwrap();
        }
        copy.to_str().unwrap().to_string()
    };
    // The approved withdrawal's amount lowered after the fact.
    let victim = lines
        .iter()
        .position(|l| l.contains("audit-big") && l.contains("\\\"amount\\\":5000000"))
        .expect("the approved withdrawal is in the log");
    let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    edited[victim] = edited[victim].replace("\\\"amount\\\":5000000", "\\\"amount\\\":5000");
    let out = refused(&tampered("edit", edited.join("\n") + "\n", None), &[]);
    assert!(
        out.contains(&format!("FAILED: log coordinator: entry {victim}:")),
        "{out}"
    );
    // An entry deleted.
    let mut deleted: Vec<&str> = lines.clone();
    deleted.remove(victim);
    let out = refused(&tampered("delete", deleted.join("\n") + "\n", None), &[]);
    assert!(out.contains("FAILED: log coordinator: entry"), "{out}");
    // The tail cut off below the newest checkpoint.
    let cut = lines[..lines.len() - 3].join("\n") + "\n";
    let out = refused(&tampered("truncate", cut, None), &[]);
    assert!(out.contains("truncated"), "{out}");
    // A checkpoint signature replaced.
    let mut cp_lines: Vec<String> = cps.lines().map(str::to_string).collect();
    let last = cp_lines.len() - 1;
    let sig_at = cp_lines[last].find("\"signature\":\"").unwrap() + 13;
    let flipped = if &cp_lines[last][sig_at..sig_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    cp_lines[last].replace_range(sig_at..sig_at + 1, flipped);
    let out = refused(
        &tampered(
            "checkpoint",
            entries.clone(),
            Some(cp_lines.join("\n") + "\n"),
        ),
        &[],
    );
    assert!(out.contains("checkpoint"), "{out}");
    // A coordinator that hides requests from its log (a consistent,
    // re-signed prefix): the signers' logs still show what they signed.
    let mid: keyfold_audit::SignedCheckpoint = serde_json::from_str(&hiding_at).unwrap();
    let keep = mid.checkpoint.tree_size as usize;
    assert!(keep > 0 && keep < lines.len(), "{keep} of {}", lines.len());
    let hidden = tampered(
        "hidden",
        lines[..keep].join("\n") + "\n",
        Some(hiding_at.clone() + "\n"),
    );
    let out = Command::new(BIN)
        .args(["audit", "cross-check", &hidden])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("MISSING: signer-") && text.contains("has no such request"),
        "{text}"
    );
    // The hidden tail is also caught by an auditor who kept a later checkpoint.
    let newest = c.dir.join("newest-checkpoint.json");
    std::fs::write(&newest, cps.lines().last().unwrap()).unwrap();
    let out = refused(&hidden, &["--kept", newest.to_str().unwrap()]);
    assert!(out.contains("truncated"), "{out}");

    // A coordinator that skips its own policy check (TEST-ONLY switch):
    // every signer re-evaluates and refuses a large withdrawal without
    // approvals, so no signature comes out.
    c.restart_coordinator(Some("[policy]\nskip_for_tests = true\n"));
    c.wait_live(&SIGNERS).await;
    let sneaky = transfer("sneaky-1", &c.ecdsa, 9_000_000, "attacker", None);
    let (status, body) = c.sign(&sneaky).await;
    assert_eq!(status.as_u16(), 403, "{body}");
    assert!(
        body.contains("policy refused") && body.contains("needs approvals"),
        "{body}"
    );
    let sneaky_ed = transfer("sneaky-2", &c.eddsa, 9_000_000, "attacker", None);
    let (status, body) = c.sign(&sneaky_ed).await;
    assert_eq!(status.as_u16(), 403, "{body}");
    c.restart_coordinator(None);
    c.wait_live(&SIGNERS).await;
    // The auditor catches the bypass from the coordinator's own log: it
    // recorded "needs approvals" and still opened a signing session.
    let bundle2 = export(&c, "audit-bundle-2");
    let out = refused(bundle2.to_str().unwrap(), &[]);
    assert!(
        out.contains("FAILED: log coordinator: entry")
            && out.contains("request sneaky-1, which no decision allowed"),
        "{out}"
    );
}

/// The chains are new, so the treasury's cycle, whose ledger is the first
/// run's, is skipped with a line saying why. (Without officer keys: with
/// them the run would put new policy versions in force behind the tests'
/// back, for its allocation claim.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_devnet_run_on_the_same_directory_reuses_certificates_and_keys() {
    let mut c = cluster().await;
    c.kill_all();
    let run = Command::new(BIN)
        .args([
            "devnet",
            "--once",
            "--base-port",
            &c.port.to_string(),
            "--data-dir",
        ])
        .arg(&c.dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "second devnet run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for key in [&c.ecdsa, &c.eddsa] {
        assert!(
            stdout.contains(&format!("key {} (reused)", key.key_id)),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains(
            "the treasury's cycle is skipped: the ledger holds an earlier run's balances"
        ),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_devnet_stops_all_its_nodes_on_sigterm() {
    let mut c = cluster().await;
    c.kill_all();
    let log = c.dir.join("logs").join("devnet-serving.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut devnet = Command::new(BIN)
        .args(["devnet", "--base-port", &c.port.to_string(), "--data-dir"])
        .arg(&c.dir)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("serving: API")
    {
        assert!(
            devnet.try_wait().unwrap().is_none(),
            "devnet exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "devnet never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Its nodes run with configuration files under the data directory.
    let nodes = || {
        let out = Command::new("pgrep")
            .args(["-f", &format!("{}/config/", c.dir.display())])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(nodes(), 4, "the devnet's four nodes run");
    let ok = Command::new("kill")
        .args(["-TERM", &devnet.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let status = devnet.wait().unwrap();
    assert!(status.success(), "devnet exit on SIGTERM: {status}");
    let t0 = Instant::now();
    while nodes() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "nodes still running after the devnet stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
