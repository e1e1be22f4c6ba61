//! Without SoftHSM2's tools the test helpers fail (never skip) and say to
//! run ./testnets/ensure-deps.sh. Simulated by re-running this test binary
//! with an empty PATH.

use std::process::Command;

const CHILD_ENV: &str = "KEYFOLD_HSM_MISSING_DEPS_CHILD";

/// In the child (empty PATH): the helper must refuse with the hint.
#[test]
fn child_helper_without_tools() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // only meaningful inside the child process below
    }
    let err = keyfold_hsm::testing::TestToken::create("missing").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("softhsm2-util"), "{msg}");
    assert!(msg.contains("run ./testnets/ensure-deps.sh"), "{msg}");
    println!("HINT: {msg}");
}

#[test]
fn missing_softhsm2_util_fails_with_the_ensure_deps_hint() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args(["--exact", "child_helper_without_tools", "--nocapture"])
        .env(CHILD_ENV, "1")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("softhsm2-util is missing: run ./testnets/ensure-deps.sh"),
        "{stdout}"
    );
}
