//! Exact decimal amounts: parsing refusals, formatting, and a round trip.

use alloy_primitives::U256;
use keyfold_chain::amount::{
    format_amount, parse_amount, parse_asset_amount, parse_base_units, to_u128, AmountError,
};
use proptest::prelude::*;

fn u(v: u128) -> U256 {
    U256::from(v)
}

#[test]
fn parses_plain_decimals() {
    assert_eq!(
        parse_amount("amount", "0.5", 18).unwrap(),
        u(500_000_000_000_000_000)
    );
    assert_eq!(parse_amount("amount", "12", 6).unwrap(), u(12_000_000));
    assert_eq!(parse_amount("amount", "0.000001", 6).unwrap(), u(1));
    assert_eq!(parse_amount("amount", "1.234567", 6).unwrap(), u(1_234_567));
    assert_eq!(parse_amount("amount", "007.10", 2).unwrap(), u(710));
    assert_eq!(parse_amount("amount", "0", 0).unwrap(), U256::ZERO);
    assert_eq!(parse_amount("amount", "42", 0).unwrap(), u(42));
    assert_eq!(parse_amount("amount", "0.0", 255).unwrap(), U256::ZERO);
    // U256::MAX in base units is accepted exactly, one more is not.
    let max = U256::MAX.to_string();
    assert_eq!(parse_amount("amount", &max, 0).unwrap(), U256::MAX);
    let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
    assert!(matches!(
        parse_amount("amount", over, 0),
        Err(AmountError::Overflow { .. })
    ));
    assert!(matches!(
        parse_amount("amount", "1", 78),
        Err(AmountError::Overflow { .. })
    ));
}

#[test]
fn refuses_with_the_field_named() {
    let cases: &[(&str, u8)] = &[
        ("", 6),
        ("-1", 6),
        ("+1", 6),
        ("1e6", 6),
        ("1E6", 6),
        (" 1", 6),
        ("1 ", 6),
        ("1 000", 6),
        ("1.2.3", 6),
        (".5", 6),
        ("5.", 6),
        (".", 6),
        ("1,5", 6),
        ("0x10", 6),
        ("½", 6),
        ("١", 6), // Arabic-Indic digit one
        ("NaN", 6),
        ("inf", 6),
        ("0.1234567", 6),
        ("0.1", 0),
    ];
    for (text, decimals) in cases {
        let err = parse_amount("payment.amount", text, *decimals).unwrap_err();
        assert!(
            err.to_string().contains("payment.amount"),
            "{text:?}: {err}"
        );
    }
    assert!(matches!(
        parse_amount("a", "", 6),
        Err(AmountError::Empty { .. })
    ));
    assert!(matches!(
        parse_amount("a", "-1", 6),
        Err(AmountError::Sign { .. })
    ));
    assert!(matches!(
        parse_amount("a", "1e6", 6),
        Err(AmountError::Exponent { .. })
    ));
    assert!(matches!(
        parse_amount("a", "1.2.3", 6),
        Err(AmountError::Malformed { .. })
    ));
    let long = "1".repeat(200);
    assert!(matches!(
        parse_amount("a", &long, 6),
        Err(AmountError::TooLong { len: 200, .. })
    ));
}

#[test]
fn too_many_decimals_names_the_asset() {
    let err = parse_asset_amount("amount", "0.1234567", 6, "USDC").unwrap_err();
    assert_eq!(
        err,
        AmountError::TooManyDecimals {
            field: "amount".into(),
            text: "0.1234567".into(),
            found: 7,
            allowed: 6,
            asset: "USDC".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "amount \"0.1234567\" has 7 decimals; USDC allows 6"
    );
}

#[test]
fn base_units() {
    assert_eq!(parse_base_units("wei", "1000000").unwrap(), u(1_000_000));
    assert_eq!(parse_base_units("wei", "0").unwrap(), U256::ZERO);
    for bad in ["", "1.0", "-5", "1e3", " 1", "abc"] {
        assert!(parse_base_units("wei", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn formats_exactly() {
    assert_eq!(format_amount(U256::ZERO, 18), "0");
    assert_eq!(format_amount(U256::ZERO, 0), "0");
    assert_eq!(format_amount(u(1), 6), "0.000001");
    assert_eq!(format_amount(u(1_500_000), 6), "1.5");
    assert_eq!(format_amount(u(12_000_000), 6), "12");
    assert_eq!(format_amount(u(710), 2), "7.1");
    assert_eq!(format_amount(u(42), 0), "42");
    assert_eq!(format_amount(u(100_000_000_000_000_000), 18), "0.1");
    assert_eq!(
        format_amount(U256::MAX, 18),
        "115792089237316195423570985008687907853269984665640564039457.584007913129639935"
    );
    assert_eq!(format_amount(u(5), 255).len(), 257);
}

#[test]
fn u128_conversion() {
    assert_eq!(to_u128("fee", u(u128::MAX)).unwrap(), u128::MAX);
    let err = to_u128("fee", u(u128::MAX) + U256::from(1)).unwrap_err();
    assert!(matches!(err, AmountError::TooLargeForU128 { ref field, .. } if field == "fee"));
}

proptest! {
    #[test]
    fn format_then_parse_round_trips(bytes in any::<[u8; 32]>(), decimals in 0u8..=36) {
        let v = U256::from_be_bytes(bytes);
        let text = format_amount(v, decimals);
        prop_assert_eq!(parse_amount("amount", &text, decimals).unwrap(), v);
    }

    #[test]
    fn parse_then_format_is_canonical(int in 0u64.., frac in proptest::collection::vec(0u8..10, 0..=18)) {
        let frac: String = frac.iter().map(|d| char::from(b'0' + d)).collect();
        let text = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
        let v = parse_amount("amount", &text, 18).unwrap();
        let canonical = text.trim_end_matches('0').trim_end_matches('.');
        let canonical = if text.contains('.') { canonical } else { text.as_str() };
        let canonical = if canonical.is_empty() { "0" } else { canonical };
        prop_assert_eq!(format_amount(v, 18), canonical);
    }

    #[test]
    fn never_panics(text in "\\PC{0,100}", decimals in any::<u8>()) {
        let _ = parse_amount("amount", &text, decimals);
        let _ = parse_base_units("amount", &text);
    }
}
