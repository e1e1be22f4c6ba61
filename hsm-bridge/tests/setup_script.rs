//! testnets/softhsm/setup.sh: creates a private SoftHSM2 configuration and
//! token, PIN files 0600, and is idempotent. Runs the script as a separate
//! process (its token directory is not this process's).

use std::path::PathBuf;
use std::process::Command;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testnets/softhsm/setup.sh")
}

fn run(dir: &std::path::Path, label: &str) -> std::process::Output {
    let out = Command::new("bash")
        .arg(script())
        .arg(dir)
        .arg(label)
        .output()
        .expect("run setup.sh");
    assert!(
        out.status.success(),
        "setup.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn token_labels(conf: &std::path::Path) -> Vec<String> {
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .arg("--show-slots")
        .output()
        .unwrap_or_else(|e| panic!("softhsm2-util: {e}: run ./testnets/ensure-deps.sh"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Label:"))
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn setup_creates_a_private_token_and_is_idempotent() {
    assert!(
        keyfold_hsm::testing::in_path("softhsm2-util"),
        "softhsm2-util is missing: run ./testnets/ensure-deps.sh"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hsm");
    let out = run(&dir, "node-1");
    let conf = dir.join("softhsm2.conf");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("export SOFTHSM2_CONF={}", conf.display())
    );
    let conf_text = std::fs::read_to_string(&conf).unwrap();
    assert!(conf_text.contains(&format!(
        "directories.tokendir = {}",
        dir.join("tokens").display()
    )));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["pin", "so-pin"] {
            let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
    let pin = std::fs::read_to_string(dir.join("pin")).unwrap();
    assert_eq!(pin.trim().len(), 32);
    assert_eq!(token_labels(&conf), ["node-1"]);

    // Re-running leaves token and PIN as they are.
    let tokens_before = std::fs::read_dir(dir.join("tokens")).unwrap().count();
    run(&dir, "node-1");
    assert_eq!(std::fs::read_to_string(dir.join("pin")).unwrap(), pin);
    assert_eq!(token_labels(&conf), ["node-1"]);
    assert_eq!(
        std::fs::read_dir(dir.join("tokens")).unwrap().count(),
        tokens_before
    );

    // The PIN file opens the token (checked from outside with pkcs11-tool).
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--module",
            keyfold_hsm::SOFTHSM2_MODULE,
            "--token-label",
            "node-1",
        ])
        .args(["--login", "--pin", pin.trim(), "--list-objects"])
        .output()
        .unwrap_or_else(|e| panic!("pkcs11-tool: {e}: run ./testnets/ensure-deps.sh"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A second label in the same directory.
    run(&dir, "node-2");
    let mut labels = token_labels(&conf);
    labels.sort();
    assert_eq!(labels, ["node-1", "node-2"]);
}

#[test]
fn setup_refuses_bad_labels() {
    let tmp = tempfile::tempdir().unwrap();
    for label in ["x".repeat(33), String::new(), "trailing ".into()] {
        let out = Command::new("bash")
            .arg(script())
            .arg(tmp.path())
            .arg(&label)
            .output()
            .unwrap();
        assert!(!out.status.success(), "label {label:?} accepted");
    }
}
