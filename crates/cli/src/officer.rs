//! Commands of treasury officers and policy admins: approver keys, listing
//! requests that wait, approving or rejecting one, checking, signing and
//! pushing policy documents.
//!
//! An approval is signed here, on the officer's machine, over the request's
//! canonical hash computed from the request's fields as shown; the hash the
//! coordinator sends along is only compared, never signed blindly.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use keyfold_policy::{AdminSignature, Approval, ApprovalDecision, Policy, SignedPolicy};
use keyfold_proto::api::{PolicyInfo, RequestList, RequestStatus};
use zeroize::Zeroizing;

use crate::http::Api;

/// Where the API is and how to authenticate.
pub struct ApiTarget {
    /// Base URL, e.g. `http://127.0.0.1:7100`.
    pub url: String,
    /// A file holding the API token (default: the `KEYFOLD_TOKEN` variable).
    pub token_file: Option<PathBuf>,
}

impl ApiTarget {
    fn token(&self) -> Result<Zeroizing<String>, String> {
        if let Some(f) = &self.token_file {
            let t = std::fs::read_to_string(f)
                .map_err(|e| format!("API token file {}: {e}", f.display()))?;
            return Ok(Zeroizing::new(t.trim().to_string()));
        }
        std::env::var("KEYFOLD_TOKEN")
            .map(|t| Zeroizing::new(t.trim().to_string()))
            .map_err(|_| "no API token: pass --token-file FILE or set KEYFOLD_TOKEN".to_string())
    }

    pub(crate) fn connect(&self) -> Result<Api, String> {
        Api::new(
            &self.url,
            self.token()?,
            std::time::Duration::from_secs(120),
        )
    }
}

/// `keyfold approver keygen --out FILE`: a new Ed25519 approver key, stored
/// as its 32-byte seed in hex (mode 0600); prints the public key to put in
/// the policy.
pub fn keygen(out: &Path) -> Result<String, String> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, seed.as_mut());
    let key = SigningKey::from_bytes(&seed);
    let hex_seed = Zeroizing::new(format!("{}\n", hex::encode(&seed[..])));
    crate::write_private_new(out, hex_seed.as_bytes())?;
    Ok(hex::encode(key.verifying_key().to_bytes()))
}

/// Reads an approver or admin key written by [`keygen`].
pub fn load_key(path: &Path) -> Result<SigningKey, String> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).map_err(|e| format!("key file {}: {e}", path.display()))?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), seed.as_mut()).map_err(|_| {
        format!(
            "key file {}: expected 64 hex digits (an Ed25519 seed from `keyfold approver keygen`)",
            path.display()
        )
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

fn describe_request(s: &RequestStatus) -> String {
    let r = &s.request;
    let what = match &r.payload {
        keyfold_policy::Payload::TypedTransfer => {
            format!("{} {} to {}", r.amount, r.asset, r.destination)
        }
        keyfold_policy::Payload::RawBytes { bytes } => format!("raw bytes ({} bytes)", bytes.len()),
        keyfold_policy::Payload::ChainTransaction {
            chain,
            chain_id,
            token_contract,
            fee_cap,
            tx,
            source,
        } => {
            // The officer's tool decodes the transaction itself: what is
            // approved is what the bytes pay, not what the coordinator says.
            let check = keyfold_chain::check::check_transaction(
                &keyfold_chain::check::Expected {
                    chain_id: *chain_id,
                    token_contract: token_contract.as_deref(),
                    destination: &r.destination,
                    amount: r.amount,
                    fee_cap: *fee_cap,
                },
                tx,
            );
            let verdict = match check {
                Ok(()) => "transaction checked".to_string(),
                Err(m) => format!("TRANSACTION DOES NOT MATCH: {m}"),
            };
            format!(
                "payout of {} {} base units from {source} to {} on {chain} (fee cap {fee_cap}; {verdict})",
                r.amount, r.asset, r.destination
            )
        }
    };
    let waiting = match s.decision.as_ref().map(|d| &d.outcome) {
        Some(keyfold_policy::Outcome::NeedApprovals { missing, .. }) => missing
            .iter()
            .map(|m| format!("{} {}/{}", m.group, m.have, m.need))
            .collect::<Vec<_>>()
            .join(", "),
        Some(keyfold_policy::Outcome::TimeLocked { until }) => format!("time lock until {until}"),
        _ => String::new(),
    };
    let rule = s
        .decision
        .as_ref()
        .and_then(|d| d.rule.as_ref())
        .map(|r| r.name.as_str())
        .unwrap_or("-");
    format!(
        "{id}  {state}  wallet {wallet}  {what}  initiator {init}  rule {rule}{w}",
        id = s.request_id,
        state = s.state,
        wallet = r.wallet,
        init = r.initiator,
        w = if waiting.is_empty() {
            String::new()
        } else {
            format!("  waiting: {waiting}")
        }
    )
}

/// `keyfold approvals list`.
pub async fn list(api: &ApiTarget, states: Option<&str>) -> Result<Vec<String>, String> {
    let path = match states {
        Some(s) => format!("/v1/requests?state={s}"),
        None => "/v1/requests".to_string(),
    };
    let list: RequestList = api.connect()?.get(&path).await?;
    Ok(list.requests.iter().map(describe_request).collect())
}

/// `keyfold approve` / `keyfold reject`: fetches the request, checks the
/// coordinator's hash against one computed here, signs and submits.
pub async fn decide(
    api: &ApiTarget,
    request_id: &str,
    key_file: &Path,
    decision: ApprovalDecision,
    valid_secs: u64,
) -> Result<String, String> {
    let key = load_key(key_file)?;
    let api = api.connect()?;
    let status: RequestStatus = api.get(&format!("/v1/requests/{request_id}")).await?;
    if status.request.id != request_id {
        return Err(format!(
            "the coordinator answered with request {} when asked for {request_id}",
            status.request.id
        ));
    }
    let hash = status.request.canonical_hash();
    if hex::encode(hash) != status.request_hash {
        return Err(format!(
            "the coordinator's hash of request {request_id} ({}) differs from the one computed here ({}): not signing",
            status.request_hash,
            hex::encode(hash)
        ));
    }
    let policy: PolicyInfo = api.get("/v1/policy").await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let approval = Approval::sign(
        &key,
        hash,
        policy.version,
        decision,
        now.saturating_add(valid_secs),
        nonce,
    );
    let after: RequestStatus = api
        .post(&format!("/v1/requests/{request_id}/approvals"), &approval)
        .await?;
    Ok(format!(
        "{:?} of {} recorded (policy version {}); request is now {}",
        decision,
        describe_request(&status),
        policy.version,
        after.state
    ))
}

/// `keyfold policy check FILE`: validates a document and describes each rule.
pub fn check(file: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let policy = Policy::from_toml(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut out = vec![format!(
        "{}: valid policy version {}{}",
        file.display(),
        policy.version(),
        policy
            .document()
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    )];
    out.extend(keyfold_policy::describe(&policy));
    out.extend(keyfold_policy::describe_limits(&policy));
    Ok(out)
}

/// `keyfold policy sign FILE --key ADMIN_KEY`: an admin's signature over
/// the document's exact bytes, as JSON.
pub fn sign_policy(file: &Path, key_file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    Policy::from_toml(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let key = load_key(key_file)?;
    serde_json::to_string(&AdminSignature::sign(&key, &text)).map_err(|e| e.to_string())
}

/// `keyfold policy push FILE --signature S.json ...`: submits a signed update.
pub async fn push_policy(
    api: &ApiTarget,
    file: &Path,
    signatures: &[PathBuf],
) -> Result<String, String> {
    let document_toml =
        std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut sigs = Vec::new();
    for s in signatures {
        let text = std::fs::read_to_string(s).map_err(|e| format!("{}: {e}", s.display()))?;
        let sig: AdminSignature =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", s.display()))?;
        sigs.push(sig);
    }
    let update = SignedPolicy {
        document_toml,
        signatures: sigs,
    };
    let info: PolicyInfo = api.connect()?.post("/v1/policy", &update).await?;
    Ok(format!(
        "policy version {} is in force at the coordinator and every signer",
        info.version
    ))
}
