//! A policy version rolled out to a whitelist, then rolled back, on the
//! running cluster: `keyfold policy rollout` writes the version, the admins
//! sign and push it as any update, the coordinator and every signer apply
//! the same selection, and each step is a signed version in the audit log.

use keyfold_audit::Event;
use keyfold_proto::api::{RequestState, RequestStatus};

use crate::fixture::*;
use crate::payouts::unique;
use crate::push;
use crate::shadow::sign_doc;

/// Two of the cluster policy's three admins: its quorum.
const ADMINS: [&str; 2] = ["alice", "bob"];

/// `keyfold policy rollout` of `next` over the policy in force, for `who`
/// (`--wallet X` / `--merchant Y` arguments); the written document.
fn rollout(c: &Cluster, next: u64, who: &[&str], tag: &str) -> std::path::PathBuf {
    let base = c.dir.join(format!("rollout-{tag}-base.toml"));
    std::fs::write(&base, test_policy(&c.officers, c.policy_version, SMALL_MAX)).unwrap();
    // The next version: small transfers only up to 100.
    let next_doc = c.dir.join(format!("rollout-{tag}-next.toml"));
    std::fs::write(&next_doc, test_policy(&c.officers, next, 100)).unwrap();
    let out = c.dir.join(format!("rollout-{tag}.toml"));
    let mut args = vec![
        "policy",
        "rollout",
        "--base",
        base.to_str().unwrap(),
        "--next",
        next_doc.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(who);
    keyfold(&args);
    out
}

/// A 5 000 unit transfer: allowed at once under the cluster's policy,
/// waiting for approvals under the next version's cap of 100.
async fn five_thousand(c: &Cluster, key: &keyfold_proto::api::KeyInfo) -> (u16, String) {
    let id = unique("rollout");
    let (code, body) = c
        .sign(&transfer(&id, key, 5_000, "rollout-dest", None))
        .await;
    if code.as_u16() == 202 {
        // Not to be left waiting for officers: withdrawn by its initiator.
        let r = c
            .http
            .post(c.url(&format!("/v1/requests/{id}/cancel")))
            .bearer_auth(&c.token)
            .json(&serde_json::json!({"reason": "rollout test"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let st: RequestStatus = r.json().await.unwrap();
        assert_eq!(st.state, RequestState::Cancelled);
    }
    (code.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_rolled_out_to_one_wallet_decides_for_it_alone_and_rolls_back() {
    let mut c = cluster().await;
    let from = c.policy_version;

    // A whitelist naming a merchant the coordinator does not know is refused.
    let doc = rollout(&c, from + 1, &["--merchant", "no-such-merchant"], "unknown");
    let out = push(&c, &doc, &sign_doc(&c, &doc, &ADMINS));
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-merchant") && err.contains("no merchant of this coordinator"),
        "{err}"
    );

    // The next version for the ECDSA wallet only.
    let staged = from + 1;
    let doc = rollout(&c, staged, &["--wallet", &c.ecdsa.key_id], "wallet");
    let sigs = sign_doc(&c, &doc, &ADMINS);
    let out = push(&c, &doc, &sigs);
    assert!(out.status.success(), "{out:?}");
    c.policy_version = staged;
    c.policy_push = Some((doc.clone(), sigs));
    let status = c.status().await.unwrap();
    assert!(
        status
            .signers
            .iter()
            .all(|h| h.policy_version == Some(staged)),
        "{status:?}"
    );
    let (code, body) = five_thousand(&c, &c.ecdsa).await;
    assert_eq!(
        code, 202,
        "the selected wallet is under the cap of 100: {body}"
    );
    assert!(body.contains("pending_approval"), "{body}");
    let (code, body) = five_thousand(&c, &c.eddsa).await;
    assert_eq!(code, 200, "another wallet keeps the rules before: {body}");
    let signed: keyfold_proto::api::SignResult = serde_json::from_str(&body).unwrap();
    verify(&signed);

    // Rolled back: the version before, as a newer signed version.
    let back = staged + 1;
    let doc = c.dir.join(format!("rollout-back-v{back}.toml"));
    std::fs::write(&doc, test_policy(&c.officers, back, SMALL_MAX)).unwrap();
    let sigs = sign_doc(&c, &doc, &ADMINS);
    let out = push(&c, &doc, &sigs);
    assert!(out.status.success(), "{out:?}");
    c.policy_version = back;
    c.policy_push = Some((doc, sigs));
    let (code, body) = five_thousand(&c, &c.ecdsa).await;
    assert_eq!(code, 200, "after the rollback: {body}");

    // Each step is a signed version in the coordinator's audit log.
    let versions: Vec<(u64, bool)> = c
        .coordinator_audit()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::PolicyVersion {
                version, document, ..
            } if version > from => Some((version, document.contains("[rollout]"))),
            _ => None,
        })
        .collect();
    assert_eq!(versions, [(staged, true), (back, false)], "{versions:?}");
}
