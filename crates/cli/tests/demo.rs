//! `keyfold demo` as a user runs it: the binary, a data directory, a JSON file
//! whose signatures are checked here with k256 and ed25519-dalek.

use std::process::Command;

use keyfold_mpc::test_fixtures;

fn hex32<const N: usize>(v: &serde_json::Value) -> [u8; N] {
    let bytes = hex::decode(v.as_str().expect("hex string")).expect("hex");
    bytes.try_into().expect("length")
}

fn run_demo(dir: &std::path::Path, out: &std::path::Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(["demo", "--data-dir"])
        .arg(dir)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run keyfold");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "keyfold demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn check(out: &std::path::Path) {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    use sha2::Digest;
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out).expect("output file")).expect("json");
    let e = &doc["ecdsa"];
    assert_eq!(e["hash"], "sha256");
    let msg = hex::decode(e["message"].as_str().unwrap()).unwrap();
    let pk: [u8; 33] = hex32(&e["public_key"]);
    let sig: [u8; 64] = hex32(&e["signature"]);
    let vk = k256::ecdsa::VerifyingKey::from_sec1_bytes(&pk).unwrap();
    let sig = k256::ecdsa::Signature::from_slice(&sig).unwrap();
    assert!(sig.normalize_s().is_none(), "high-S");
    vk.verify_prehash(&sha2::Sha256::digest(&msg), &sig)
        .expect("ECDSA signature verifies with k256");

    let d = &doc["eddsa"];
    let msg = hex::decode(d["message"].as_str().unwrap()).unwrap();
    let pk: [u8; 32] = hex32(&d["public_key"]);
    let sig: [u8; 64] = hex32(&d["signature"]);
    ed25519_dalek::VerifyingKey::from_bytes(&pk)
        .unwrap()
        .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
        .expect("Ed25519 signature verifies with dalek");
}

#[test]
fn demo_signs_with_both_curves_and_reuses_its_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    // Seed the prime pool with TEST-ONLY primes so the test skips a minute of
    // prime generation; aux info is still generated for real by the demo.
    let primes = dir.path().join("primes");
    std::fs::create_dir_all(&primes).unwrap();
    for i in 0..3 {
        let bytes = test_fixtures::safe_primes(i).to_bytes().unwrap();
        std::fs::write(primes.join(format!("seed{i}.kfprimes")), &*bytes).unwrap();
    }
    let out = dir.path().join("out.json");
    let first = run_demo(dir.path(), &out);
    assert!(first.contains("3 pairs ready"), "{first}");
    assert!(first.contains("verified with k256"), "{first}");
    assert!(first.contains("verified with ed25519-dalek"), "{first}");
    check(&out);
    assert_eq!(
        std::fs::read_dir(&primes).unwrap().count(),
        0,
        "primes used once"
    );

    // The second run reuses the aux info and needs no primes.
    let second = run_demo(dir.path(), &out);
    assert!(second.contains("reused"), "{second}");
    check(&out);
}

#[test]
fn demo_reports_an_unusable_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keyfold"))
        .args(["demo", "--data-dir"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("keyfold:") && stderr.contains("not-a-dir"),
        "{stderr}"
    );
}
