//! Fixed test vectors for the canonical request hash and approval bytes, so
//! other implementations (CLI, auditors) can check their encoders. The request
//! hash was cross-checked with an independent Python encoder of docs/policy.md.
mod common;

use keyfold_policy::*;

fn vector_request() -> Request {
    Request {
        id: "req-1".into(),
        wallet: "hot-1".into(),
        tier: Tier::Hot,
        asset: "ETH".into(),
        amount: 1_000_000_000_000_000_000,
        destination: "0x00000000000000000000000000000000000000aa".into(),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time: 1_700_000_000,
        payload: Payload::TypedTransfer,
    }
}

const HASH: &str = "64fc1139064cb8673f9cda48133f9f5b1919adf81ea4343107f9544cb50b9997";
const BYTES: &str = "6b6579666f6c642d706f6c6963792f617070726f76616c2f76310064fc1139064cb8673f9cda48133f9f5b1919adf81ea4343107f9544cb50b9997000000000000000701000000006553ff1011111111111111111111111111111111";
const SIG: &str = "118ab3f3702d185141c16021bd637142571a7ee4397854d4cdd3ad1bfa9bb7f1bba1494353a416b27933b224a12a92d3cdc8aa6da80618b394997fd5af5e7804";
const JSON: &str = r#"{"request_hash":"64fc1139064cb8673f9cda48133f9f5b1919adf81ea4343107f9544cb50b9997","policy_version":7,"decision":"approve","expires_at":1700003600,"nonce":"11111111111111111111111111111111","approver":"8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c","signature":"118ab3f3702d185141c16021bd637142571a7ee4397854d4cdd3ad1bfa9bb7f1bba1494353a416b27933b224a12a92d3cdc8aa6da80618b394997fd5af5e7804"}"#;

#[test]
fn request_hash_vector() {
    assert_eq!(hex::encode(vector_request().canonical_hash()), HASH);
}

#[test]
fn approval_vector() {
    let h = vector_request().canonical_hash();
    let a = Approval::sign(
        &common::key(1),
        h,
        7,
        ApprovalDecision::Approve,
        1_700_003_600,
        [0x11; 16],
    );
    assert_eq!(hex::encode(a.signed_bytes()), BYTES);
    assert_eq!(hex::encode(a.signature), SIG);
    let Ok(json) = serde_json::to_string(&a) else {
        panic!()
    };
    assert_eq!(json, JSON);
    let Ok(back) = serde_json::from_str::<Approval>(JSON) else {
        panic!()
    };
    assert_eq!(back, a);
}
