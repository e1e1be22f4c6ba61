//! `keyfold allocation check`: the example plan is described with its
//! figures and its chart is written; a broken plan exits non-zero with the
//! validation error.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_keyfold");
const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testnets/allocations/example.toml"
);
/// 2028-07-01T00:00:00Z.
const AT: &str = "1846022400";

fn keyfold(args: &[&str]) -> Output {
    match Command::new(BIN).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {BIN}: {e}"),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

fn read(p: &Path) -> String {
    match std::fs::read_to_string(p) {
        Ok(s) => s,
        Err(e) => panic!("{}: {e}", p.display()),
    }
}

/// The line of the table whose first cell is `first`.
fn line<'a>(stdout: &'a str, first: &str) -> &'a str {
    match stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(first))
    {
        Some(l) => l,
        None => panic!("no line for {first} in\n{stdout}"),
    }
}

#[test]
fn example_plan_is_described_and_charted() {
    let dir = tempdir();
    let svg_path = dir.path().join("chart.svg");
    let svg_arg = svg_path.to_string_lossy().to_string();
    let out = keyfold(&[
        "allocation",
        "check",
        EXAMPLE,
        "--at",
        AT,
        "--svg",
        &svg_arg,
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));

    assert!(
        stdout.contains("valid allocation plan \"kft-genesis\" version 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("total: 1000000000 KFT (1000000000000000000000000000 base units), unallocated 50000000 KFT"),
        "{stdout}"
    );
    // Groups: share, amount, allocated, unallocated (in KFT).
    let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        cells(line(&stdout, "team")),
        ["team", "20.00%", "200000000", "200000000", "0", "2"]
    );
    assert_eq!(
        cells(line(&stdout, "community")),
        ["community", "40.00%", "400000000", "400000000", "0", "1"]
    );
    assert_eq!(
        cells(line(&stdout, "ecosystem")),
        [
            "ecosystem",
            "20.00%",
            "200000000",
            "150000000",
            "50000000",
            "2"
        ]
    );
    // Beneficiaries at 2028-07-01: amount, dates, vested, claimable.
    // team-founder-1: 120M over 1461 days, 547 days elapsed, past the cliff.
    let founder = cells(line(&stdout, "team-founder-1"));
    assert_eq!(
        founder[..6],
        [
            "team-founder-1",
            "team",
            "120000000",
            "2027-01-01",
            "2028-01-01",
            "2031-01-01"
        ]
    );
    assert_eq!(founder[6], "44928131.416837782340862422");
    assert_eq!(founder[7], founder[6]);
    // The seed fund: 90M over 731 days, 547 elapsed.
    let seed = cells(line(&stdout, "seed-fund"));
    assert_eq!(seed[6], "67346101.231190150478796169");

    // Before any cliff, nothing of the team is vested.
    let out = keyfold(&["allocation", "check", EXAMPLE, "--at", "1829000000"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(cells(line(&stdout, "team-founder-2"))[6], "0");

    // The chart: one polyline per group, well-formed enough.
    let svg = read(&svg_path);
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<polyline").count(), 5, "{svg}");
    for g in ["team", "advisors", "investors", "community", "ecosystem"] {
        assert!(svg.contains(&format!("data-group=\"{g}\"")), "{g}");
    }
    assert_eq!(svg.matches("<svg").count(), 1);
    // Every element is closed: self-closing or with its closing tag.
    let opened = svg.matches('<').count();
    let closed = svg.matches("/>").count() + 2 * svg.matches("</").count();
    assert_eq!(opened, closed, "{svg}");
    assert!(svg.contains(">2027-01</text>") && svg.contains(">2032-01</text>"));
}

#[test]
fn broken_plan_exits_non_zero_naming_the_shares() {
    let dir = tempdir();
    let example = read(Path::new(EXAMPLE));
    // Community at 30% instead of 40%: the shares add up to 9000.
    let broken = example.replace("share_bps = 4000", "share_bps = 3000");
    assert_ne!(broken, example);
    let file = dir.path().join("broken.toml");
    if let Err(e) = std::fs::write(&file, broken) {
        panic!("{e}");
    }
    let svg = dir.path().join("never.svg");
    let out = keyfold(&[
        "allocation",
        "check",
        &file.to_string_lossy(),
        "--svg",
        &svg.to_string_lossy(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("plan \"kft-genesis\": the groups' share_bps add up to 9000, they must add up to exactly 10000"),
        "{err}"
    );
    assert!(!svg.exists());

    // An unknown field is refused with its name.
    let file = dir.path().join("unknown.toml");
    if let Err(e) = std::fs::write(
        &file,
        example.replace("decimals = 18", "decimals = 18\nsymbol = \"KFT\""),
    ) {
        panic!("{e}");
    }
    let out = keyfold(&["allocation", "check", &file.to_string_lossy()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("unknown field `symbol`"), "{err}");

    // A missing file.
    let out = keyfold(&["allocation", "check", "/nonexistent/plan.toml"]);
    assert!(!out.status.success());
}
