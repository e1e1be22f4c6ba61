//! `keyfold-load` as a command: its options parse, and a cluster that is not
//! there gives one clear error and a failing exit code, not a panic. (This
//! test also makes `cargo test --workspace` build the binary, which the
//! netns testnet test in `crates/cli/tests/netns.rs` runs.)

use std::process::Command;

const LOAD: &str = env!("CARGO_BIN_EXE_keyfold-load");

#[test]
fn help_lists_the_scripting_options() {
    let out = Command::new(LOAD).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for opt in ["--json", "--skip", "--wait-live", "--api-rtt", "--online"] {
        assert!(help.contains(opt), "{opt} missing from:\n{help}");
    }
}

#[test]
fn unknown_phase_is_refused() {
    let out = Command::new(LOAD)
        .args(["--token-file", "/nonexistent", "--skip", "everything"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
}

#[test]
fn unreachable_api_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "kf_test\n").unwrap();
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let out = Command::new(LOAD)
        .args(["--api", "http://127.0.0.1:1", "--token-file"])
        .arg(&token)
        .args(["--skip", "local", "--wait-live", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("keyfold-load: the cluster was not up within 1 s"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
