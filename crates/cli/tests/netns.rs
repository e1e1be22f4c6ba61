//! The multi-host testnet (`testnets/netns/run.sh`) as a test: coordinator,
//! three signers and the load client each in its own network namespace, every
//! link delayed by 25 ms each way, a short bounded load (a handful of
//! signatures per phase) from the load namespace.
//!
//! What it proves: the cluster works when every address is another host's
//! (the coordinator's API and QUIC endpoint, the signers' listeners), every
//! signature `keyfold-load` gets verifies with `k256` / `ed25519-dalek` /
//! `bip32` (the load tool stops at the first one that does not), and no
//! signature came back faster than the delayed links allow (at least
//! 4 x 25 ms: the API's round trip plus the coordinator's round trip to the
//! signers), so the traffic really crossed them.
//!
//! The script skips (one line, exit 0) where network namespaces are not
//! allowed (not root, no `ip netns`); this test then passes and prints that
//! line. It uses the binaries of this test build (`keyfold`, and
//! `keyfold-load` from the same target directory, built if missing) and the
//! TEST-ONLY prime fixtures, so the first ECDSA key costs aux info only.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keyfold_mpc::test_fixtures;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const BIN: &str = env!("CARGO_BIN_EXE_keyfold");
const DELAY_MS: u64 = 25;
const ONLINE: usize = 4;
const FULL: usize = 2;
const EDDSA: usize = 4;

/// Writes to the real stdout, past the test harness's capture, so CI logs
/// show the run (and why it skipped) as it happens.
fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `keyfold-load` from the target directory of this build: `cargo test
/// --workspace` builds it (the benches package has a test that runs it); a
/// narrower `cargo test` gets it built here.
fn load_tool(bin_dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let load = bin_dir.join(format!("keyfold-load{}", std::env::consts::EXE_SUFFIX));
    if load.exists() {
        return Ok(load);
    }
    let profile = bin_dir.file_name().and_then(|p| p.to_str()).unwrap_or("");
    let target_dir = bin_dir
        .parent()
        .ok_or("the keyfold binary has no target directory")?;
    say("netns: building keyfold-load for the netns test");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--locked",
        "-p",
        "keyfold-benches",
        "--bin",
        "keyfold-load",
    ])
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile == "release" {
        cmd.arg("--release");
    }
    let status = cmd.status()?;
    if !status.success() || !load.exists() {
        return Err(format!("building keyfold-load failed ({status})").into());
    }
    Ok(load)
}

/// TEST-ONLY prime fixtures, one file per signer, for `run.sh --primes-dir`.
fn prime_files(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let primes = dir.join("test-primes");
    std::fs::create_dir_all(&primes)?;
    for i in 1..=3usize {
        let bytes = test_fixtures::safe_primes(i - 1).to_bytes()?;
        std::fs::write(primes.join(format!("signer-{i}.primes")), &*bytes)?;
    }
    Ok(primes)
}

#[test]
fn netns_testnet_signs_across_delayed_links() -> TestResult {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testnets/netns/run.sh");
    let bin_dir = Path::new(BIN)
        .parent()
        .ok_or("the keyfold binary has no directory")?;
    let dir = tempfile::tempdir()?;
    let json = dir.path().join("results.json");
    let primes = prime_files(dir.path())?;

    // A user without root gets the script's skip line without building
    // anything; only a machine that can run it builds keyfold-load.
    let can_run = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if can_run {
        load_tool(bin_dir)?;
    }

    let mut child = Command::new("bash")
        .arg(&script)
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--primes-dir")
        .arg(&primes)
        .arg("--json")
        .arg(&json)
        .args(["--delay-ms", &DELAY_MS.to_string()])
        .args(["--online", &ONLINE.to_string()])
        .args(["--full", &FULL.to_string()])
        .args(["--eddsa", &EDDSA.to_string()])
        .args(["--skip", "refill,local"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut skipped = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            if line.starts_with("netns testnet skipped:") {
                skipped = Some(line.clone());
            }
            say(&line);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("testnets/netns/run.sh failed ({status}); its output is above").into());
    }
    if skipped.is_some() {
        return Ok(());
    }

    // The script checked the same; this keeps the test honest if it changes.
    let results: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
    let verified = results["signatures_verified"].as_u64().unwrap_or(0);
    let expected = (ONLINE + FULL + EDDSA) as u64;
    if verified < expected {
        return Err(format!("{verified} signatures verified, expected at least {expected}").into());
    }
    let phases = results["phases"]
        .as_array()
        .ok_or("no phases in the results")?;
    for (phase, n) in [("online", ONLINE), ("full", FULL), ("eddsa", EDDSA)] {
        let p = phases
            .iter()
            .find(|p| p["phase"] == phase)
            .ok_or_else(|| format!("no {phase} phase in the results"))?;
        let got = p["n"].as_u64().unwrap_or(0);
        let min = p["min_ms"].as_f64().unwrap_or(0.0);
        if got < n as u64 {
            return Err(format!("{phase}: {got} signatures, expected {n}").into());
        }
        let floor = 4.0 * DELAY_MS as f64;
        if min < floor {
            return Err(format!(
                "{phase}: fastest signature {min:.1} ms, below the {floor} ms the delayed links allow"
            )
            .into());
        }
    }
    Ok(())
}
