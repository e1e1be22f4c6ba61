//! A future policy version in shadow on the cluster, driven with the CLI:
//! refused with too few admin signatures or a document that does not
//! parse; installed, it is evaluated on every request beside the version
//! in force, which alone decides (the signers sign what it allows); its
//! report lists exactly the requests it would have decided otherwise;
//! promoting it ends it, and a later shadow is removed with the CLI. The
//! policy in force is put back for the other tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keyfold_audit::Event;
use keyfold_proto::api::{RequestState, RequestStatus};
use serde_json::Value;

use crate::fixture::*;

/// The cluster's policy at `version`, plus a rule the policy in force lacks:
/// ETH transfers of 1 001 to [`SMALL_MAX`] units, which the policy in force
/// allows as `small`, are denied.
fn capped_policy(c: &Cluster, version: u64) -> String {
    let doc = test_policy(&c.officers, version, SMALL_MAX).replace(
        "[[rules]]\nname = \"small\"",
        &format!(
            "[[rules]]\nname = \"shadow-cap\"\ntier = \"hot\"\nassets = [\"ETH\"]\namount = {{ min = 1001, max = {SMALL_MAX} }}\naction = {{ kind = \"deny\", reason = \"above the shadow cap\" }}\n\n[[rules]]\nname = \"small\""
        ),
    );
    assert!(doc.contains("shadow-cap"), "the test policy changed shape");
    doc
}

/// `keyfold policy sign` of the document at `doc` by each of `officers`.
pub(crate) fn sign_doc(c: &Cluster, doc: &Path, officers: &[&str]) -> Vec<PathBuf> {
    let stem = doc.file_stem().unwrap().to_string_lossy().to_string();
    officers
        .iter()
        .map(|officer| {
            let sig = keyfold(&[
                "policy",
                "sign",
                doc.to_str().unwrap(),
                "--key",
                c.dir.join(format!("{officer}.key")).to_str().unwrap(),
            ]);
            let f = c.dir.join(format!("{stem}-{officer}.sig.json"));
            std::fs::write(&f, sig.trim()).unwrap();
            f
        })
        .collect()
}

/// Admin signatures over the bytes at `doc`, made here: `keyfold policy
/// sign` refuses a document that does not parse, and the coordinator must
/// be shown to refuse one too.
fn sign_raw(c: &Cluster, doc: &Path, officers: &[&str]) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(doc).unwrap();
    officers
        .iter()
        .map(|officer| {
            let seed = std::fs::read_to_string(c.dir.join(format!("{officer}.key"))).unwrap();
            let seed: [u8; 32] = hex::decode(seed.trim()).unwrap().try_into().unwrap();
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let sig = keyfold_policy::AdminSignature::sign(&key, &text);
            let f = c.dir.join(format!("raw-{officer}.sig.json"));
            std::fs::write(&f, serde_json::to_string(&sig).unwrap()).unwrap();
            f
        })
        .collect()
}

/// `keyfold policy SUBCOMMAND [args] --coordinator URL --token-file F`.
fn policy_cmd(c: &Cluster, sub: &str, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(BIN)
        .args(["policy", sub])
        .args(args)
        .args(["--coordinator", &c.url(""), "--token-file"])
        .arg(c.dir.join("api-token"))
        .output()
        .unwrap()
}

/// `keyfold policy shadow DOC --sig SIG...`.
fn install(c: &Cluster, doc: &Path, sigs: &[PathBuf]) -> Output {
    let mut args = vec![doc.as_os_str(), "--sig".as_ref()];
    args.extend(sigs.iter().map(|s| s.as_os_str()));
    policy_cmd(c, "shadow", &args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The report as the CLI prints it with `--json`.
fn report(c: &Cluster) -> Value {
    let out = policy_cmd(c, "shadow-report", &["--json".as_ref()]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The coordinator's `policy_shadow` events from entry `from` on: the
/// devnet that made the cluster installed and removed a shadow of its own
/// before this test.
fn shadow_events(c: &Cluster, from: usize) -> Vec<(u64, String)> {
    c.coordinator_audit()
        .into_iter()
        .skip(from)
        .filter_map(|e| match e.event {
            Event::PolicyShadow {
                version, action, ..
            } => Some((version, action)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_version_is_reported_beside_the_policy_in_force_and_ends_when_promoted() {
    let mut c = cluster().await;
    let logged = c.coordinator_audit().len();
    let in_force = c.policy_version;
    let v = in_force + 1;
    let doc = c.dir.join(format!("shadow-v{v}.toml"));
    std::fs::write(&doc, capped_policy(&c, v)).unwrap();
    let sigs = sign_doc(&c, &doc, &["alice", "bob"]);

    // Refused: one admin signature, and a document that does not parse.
    let out = install(&c, &doc, &sigs[..1]);
    assert!(
        !out.status.success(),
        "one admin signature must not be enough"
    );
    let t = text(&out);
    assert!(
        t.contains("HTTP 400")
            && t.contains("only 1 valid admin signature(s), the current policy needs 2"),
        "{t}"
    );
    let broken = c.dir.join("shadow-broken.toml");
    std::fs::write(&broken, format!("version = {v}\n[[rules]]\nname = 1\n")).unwrap();
    let broken_sigs = sign_raw(&c, &broken, &["alice", "bob"]);
    let out = install(&c, &broken, &broken_sigs);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("HTTP 400") && t.contains("shadow policy document:") && t.contains("name"),
        "{t}"
    );
    let (code, _, body) = c.get::<Value>("/v1/policy/shadow").await;
    assert_eq!(code, 404, "nothing installed yet: {body}");

    let out = install(&c, &doc, &sigs);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!("policy version {v} is installed in shadow"))
            && t.contains(&format!("version {in_force} in force decides")),
        "{t}"
    );

    // Both sides of the difference: the version in force decides (the
    // signers sign what it allows); the shadow only reports.
    c.sign_ok(&transfer(
        "shadow-small",
        &c.ecdsa,
        100,
        "shadow-dest",
        None,
    ))
    .await;
    c.sign_ok(&transfer(
        "shadow-capped",
        &c.ecdsa,
        5_000,
        "shadow-dest",
        None,
    ))
    .await;
    let large = transfer("shadow-large", &c.ecdsa, SMALL_MAX + 1, "shadow-dest", None);
    let (code, body) = c.sign(&large).await;
    assert_eq!(code.as_u16(), 202, "{body}");
    let (code, st, body) = c.get::<RequestStatus>("/v1/requests/shadow-capped").await;
    assert_eq!(code, 200, "{body}");
    let st = st.unwrap();
    assert_eq!(st.state, RequestState::Completed);
    assert_eq!(
        st.decision.as_ref().map(|d| d.policy_version),
        Some(in_force),
        "decided by the version in force"
    );

    let r = report(&c);
    assert_eq!(
        (&r["version"], &r["in_force_version"]),
        (&Value::from(v), &Value::from(in_force))
    );
    assert!(r["evaluated"].as_u64().unwrap() >= 3, "{r}");
    assert_eq!(r["differed"], 1, "{r}");
    let diffs = r["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{r}");
    let d = &diffs[0];
    assert_eq!(d["request_id"], "shadow-capped");
    assert_eq!(
        (&d["in_force"]["outcome"], &d["in_force"]["rule"]),
        (&Value::from("allow"), &Value::from("small"))
    );
    assert_eq!(
        (
            &d["shadow"]["outcome"],
            &d["shadow"]["rule"],
            &d["shadow"]["reason"]
        ),
        (
            &Value::from("deny"),
            &Value::from("shadow-cap"),
            &Value::from("above the shadow cap")
        )
    );
    let out = policy_cmd(&c, "shadow-report", &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("1 differed")
            && t.lines().any(|l| l.starts_with("shadow-capped")
                && l.contains("allow (small)")
                && l.contains("deny (shadow-cap)")
                && l.contains("above the shadow cap")),
        "{t}"
    );

    // The waiting request is not left behind.
    let r = c
        .http
        .post(c.url("/v1/requests/shadow-large/cancel"))
        .bearer_auth(&c.token)
        .json(&serde_json::json!({"reason": "test over"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Promoted with the same files: the shadow ends, its cap now decides.
    let out = crate::push(&c, &doc, &sigs);
    assert!(out.status.success(), "{}", text(&out));
    c.policy_version = v;
    c.policy_push = Some((doc.clone(), sigs.clone()));
    let (code, _, body) = c.get::<Value>("/v1/policy/shadow").await;
    assert_eq!(code, 404, "promoting the shadow's version ends it: {body}");
    let (code, body) = c
        .sign(&transfer(
            "shadow-after",
            &c.ecdsa,
            5_000,
            "shadow-dest",
            None,
        ))
        .await;
    assert_eq!(code.as_u16(), 403, "{body}");
    assert!(body.contains("shadow-cap"), "{body}");
    assert_eq!(
        shadow_events(&c, logged),
        [(v, "installed".to_string()), (v, "ended".to_string())]
    );

    // The limit back where the other tests expect it.
    let restored = v + 1;
    let (rdoc, rsigs) = crate::signed_policy(&c, restored, SMALL_MAX, &["bob", "carol"]);
    let out = crate::push(&c, &rdoc, &rsigs);
    assert!(out.status.success(), "{}", text(&out));
    c.policy_version = restored;
    c.policy_push = Some((rdoc, rsigs));
    c.sign_ok(&transfer(
        "shadow-restored",
        &c.ecdsa,
        5_000,
        "shadow-dest",
        None,
    ))
    .await;

    // A later shadow is removed with the CLI, its last report printed.
    let next = restored + 1;
    let ndoc = c.dir.join(format!("shadow-v{next}.toml"));
    std::fs::write(&ndoc, capped_policy(&c, next)).unwrap();
    let nsigs = sign_doc(&c, &ndoc, &["alice", "carol"]);
    let out = install(&c, &ndoc, &nsigs);
    assert!(out.status.success(), "{}", text(&out));
    let out = policy_cmd(&c, "shadow-remove", &[]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("shadow version {next} removed")), "{t}");
    let (code, _, _) = c.get::<Value>("/v1/policy/shadow").await;
    assert_eq!(code, 404);
    assert_eq!(
        shadow_events(&c, logged)[2..],
        [
            (next, "installed".to_string()),
            (next, "removed".to_string())
        ]
    );
    assert_eq!(c.status().await.unwrap().policy_version, restored);

    // The shared coordinator log is not verified here: the audit test's
    // deliberate policy bypass may already be in it. The shadow events'
    // offline checks are `crates/audit/tests/shadow.rs` (both verifiers)
    // and `coordinator/tests/shadow.rs` (a replay of a real log).
}
