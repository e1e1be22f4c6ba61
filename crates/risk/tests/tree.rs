//! Tree parsing and validation: every refusal names what is wrong.
mod common;

use common::*;
use keyfold_risk::*;

fn parse(body: &str) -> Result<RiskTree, TreeError> {
    RiskTree::from_toml(&format!("version = 1\n{body}\n{THRESHOLDS}"))
}

#[test]
fn default_tree_is_valid_and_described() {
    let t = default();
    assert_eq!(t.version(), 1);
    let lines = describe(&t);
    assert_eq!(lines.len(), t.document().rules.len());
    assert!(
        lines[0].starts_with("1. listed-destination: if the destination is listed"),
        "{}",
        lines[0]
    );
    assert!(
        lines.iter().any(|l| l.contains("device-burst")
            && l.contains("more than 5 requests in 10m")
            && l.contains("freeze the device")),
        "{lines:#?}"
    );
    let rest = describe_thresholds(&t);
    assert!(
        rest.iter().any(|l| l == "score 80..=100: deny"),
        "{rest:#?}"
    );
}

#[test]
fn unknown_field_is_refused() {
    let e = parse("[[rules]]\nname = \"r\"\nwhen = { first_device = true, frist_destination = true }\nscore = 5");
    assert!(
        matches!(&e, Err(TreeError::Parse(m)) if m.contains("frist_destination")),
        "{e:?}"
    );
    let e = parse("colour = \"red\"");
    assert!(
        matches!(&e, Err(TreeError::Parse(m)) if m.contains("colour")),
        "{e:?}"
    );
    let e = parse("[[rules]]\nname = \"r\"\nwhen = { first_device = true }\nscore = 5\naction = { kind = \"freeze\", scope = \"device\", extra = 1 }");
    assert!(matches!(e, Err(TreeError::Parse(_))), "{e:?}");
}

#[test]
fn freeze_without_scope_is_refused() {
    let e = parse(
        "[[rules]]\nname = \"r\"\nwhen = { first_device = true }\naction = { kind = \"freeze\" }",
    );
    assert!(
        matches!(&e, Err(TreeError::Parse(m)) if m.contains("scope")),
        "{e:?}"
    );
}

fn thresholds(ranges: &[(u8, u8)]) -> Result<RiskTree, TreeError> {
    let mut text = String::from("version = 1\n");
    for (from, to) in ranges {
        text.push_str(&format!(
            "[[thresholds]]\nfrom = {from}\nto = {to}\naction = {{ kind = \"allow\" }}\n"
        ));
    }
    RiskTree::from_toml(&text)
}

#[test]
fn thresholds_must_cover_0_to_100_exactly_once() {
    assert!(thresholds(&[(0, 100)]).is_ok());
    assert!(
        thresholds(&[(51, 100), (0, 50)]).is_ok(),
        "order does not matter"
    );
    assert_eq!(
        thresholds(&[(0, 29), (40, 100)]).err(),
        Some(TreeError::Thresholds("gap: no range covers 30..=39".into()))
    );
    assert_eq!(
        thresholds(&[(0, 99)]).err(),
        Some(TreeError::Thresholds(
            "gap: no range covers 100..=100".into()
        ))
    );
    assert_eq!(
        thresholds(&[(1, 100)]).err(),
        Some(TreeError::Thresholds("gap: no range covers 0..=0".into()))
    );
    assert_eq!(
        thresholds(&[(0, 50), (45, 100)]).err(),
        Some(TreeError::Thresholds(
            "scores 45..=50 are covered twice".into()
        ))
    );
    assert!(
        matches!(thresholds(&[(0, 120)]), Err(TreeError::Thresholds(m)) if m.contains("past 100"))
    );
    assert!(
        matches!(thresholds(&[(0, 50), (60, 55), (51, 100)]), Err(TreeError::Thresholds(m)) if m.contains("empty"))
    );
    assert!(matches!(thresholds(&[]), Err(TreeError::Parse(m)) if m.contains("thresholds")));
    assert_eq!(
        RiskTree::from_toml("version = 1\nthresholds = []").err(),
        Some(TreeError::Thresholds("gap: no range covers 0..=100".into()))
    );
}

#[test]
fn bad_window_names_the_rule_and_field() {
    let e = parse("[[rules]]\nname = \"burst\"\nwhen = { count = { entity = \"device\", window = \"5m\", above = 3 } }\nscore = 5");
    assert_eq!(
        e.err(),
        Some(TreeError::BadWindow {
            rule: "burst".into(),
            field: "when.count.window",
            value: "5m".into()
        })
    );
    let e = parse("[[rules]]\nname = \"drain\"\nwhen = { assets = [\"ETH\"], sum = { entity = \"customer\", window = \"2d\", above = 3 } }\nscore = 5");
    assert!(
        matches!(
            e,
            Err(TreeError::BadWindow {
                field: "when.sum.window",
                ..
            })
        ),
        "{e:?}"
    );
}

#[test]
fn bad_cidr_is_refused() {
    for bad in [
        "10.0.0.0",
        "10.0.0.0/33",
        "not-an-ip/8",
        "10.0.0.0/8/1",
        "10.1.0.0/8",
    ] {
        let e = parse(&format!("[lists]\nip_ranges = [\"{bad}\"]"));
        assert!(
            matches!(&e, Err(TreeError::BadCidr { value, .. }) if value == bad),
            "{bad}: {e:?}"
        );
    }
    assert!(parse("[lists]\nip_ranges = [\"10.0.0.0/8\", \"2001:db8::/32\"]").is_ok());
}

#[test]
fn bad_country_and_destination_lists_are_refused() {
    let e = parse("[lists]\ncountries = [\"fr\"]");
    assert_eq!(e.err(), Some(TreeError::BadCountry { value: "fr".into() }));
    let e = parse("[lists]\ndestinations = [\"0xa\", \"0xa\"]");
    assert!(matches!(e, Err(TreeError::BadDestination { .. })), "{e:?}");
}

#[test]
fn duplicate_names_bad_version_and_scores_are_refused() {
    let rule = "[[rules]]\nname = \"r\"\nwhen = { first_device = true }\nscore = 5\n";
    assert_eq!(
        parse(&format!("{rule}{rule}")).err(),
        Some(TreeError::DuplicateRuleName("r".into()))
    );
    let e = RiskTree::from_toml(&format!("version = 0\n{THRESHOLDS}"));
    assert_eq!(e.err(), Some(TreeError::BadVersion));
    let e = parse("[[rules]]\nname = \"r\"\nwhen = { first_device = true }\nscore = 150");
    assert!(
        matches!(e, Err(TreeError::BadField { field: "score", .. })),
        "{e:?}"
    );
    let e = parse("[[rules]]\nname = \"r\"\nwhen = { amount_z_above = nan }\nscore = 5");
    assert!(
        matches!(
            e,
            Err(TreeError::BadField {
                field: "when.amount_z_above",
                ..
            })
        ),
        "{e:?}"
    );
    let e = parse("[[rules]]\nname = \"r\"\nwhen = { score_above = 100 }\nscore = 5");
    assert!(
        matches!(
            e,
            Err(TreeError::BadField {
                field: "when.score_above",
                ..
            })
        ),
        "{e:?}"
    );
}

#[test]
fn oversized_tree_is_refused_before_parsing() {
    let big = "#".repeat(MAX_TREE_BYTES + 1);
    assert!(matches!(
        RiskTree::from_toml(&big),
        Err(TreeError::TooLarge { .. })
    ));
}

#[test]
fn negative_and_float_amounts_are_refused() {
    for bad in ["-5", "5.5", "\"12a\"", "\"\""] {
        let e = parse(&format!(
            "[[rules]]\nname = \"r\"\nwhen = {{ assets = [\"ETH\"], amount_above = {bad} }}\nscore = 5"
        ));
        assert!(matches!(e, Err(TreeError::Parse(_))), "{bad}: {e:?}");
    }
}
