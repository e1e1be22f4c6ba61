//! `keyfold risk check`: a valid tree is described, an invalid one exits
//! non-zero with the typed error, `--default` prints a tree that checks.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_keyfold");

fn keyfold(args: &[&str]) -> Output {
    match Command::new(BIN).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {BIN}: {e}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    if let Err(e) = std::fs::write(&p, body) {
        panic!("{e}");
    }
    p.to_string_lossy().to_string()
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn default_tree_prints_and_checks() {
    let out = keyfold(&["risk", "check", "--default"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let toml = text(&out.stdout);
    assert!(toml.contains("[[thresholds]]"), "{toml}");
    let dir = tempdir();
    let file = write(dir.path(), "tree.toml", &toml);
    let out = keyfold(&["risk", "check", &file]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("valid risk tree version 1 (keyfold default)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("device-burst: if the device made more than 5 requests in 10m"),
        "{stdout}"
    );
    assert!(stdout.contains("score 80..=100: deny"), "{stdout}");
}

#[test]
fn invalid_tree_exits_non_zero_with_the_error() {
    let dir = tempdir();
    let file = write(
        dir.path(),
        "gap.toml",
        "version = 1\n[[thresholds]]\nfrom = 0\nto = 40\naction = { kind = \"allow\" }\n[[thresholds]]\nfrom = 50\nto = 100\naction = { kind = \"deny\" }\n",
    );
    let out = keyfold(&["risk", "check", &file]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("thresholds: gap: no range covers 41..=49"),
        "{err}"
    );

    let file = write(
        dir.path(),
        "window.toml",
        &format!(
            "version = 1\n[[rules]]\nname = \"burst\"\nwhen = {{ count = {{ entity = \"device\", window = \"5m\", above = 3 }} }}\nscore = 50\n{}",
            "[[thresholds]]\nfrom = 0\nto = 100\naction = { kind = \"allow\" }\n"
        ),
    );
    let out = keyfold(&["risk", "check", &file]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("rule \"burst\": when.count.window = \"5m\""),
        "{err}"
    );
}

#[test]
fn missing_file_and_missing_argument_fail() {
    let out = keyfold(&["risk", "check", "/nonexistent/tree.toml"]);
    assert!(!out.status.success());
    let out = keyfold(&["risk", "check"]);
    assert!(!out.status.success());
}
