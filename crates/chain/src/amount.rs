//! Exact decimal amounts: parse what a person writes ("0.5", "12",
//! "0.000001") into integer base units of an asset, and format base units
//! back. Never floats: every value is a [`U256`] (or a checked `u128`).

use alloy_primitives::U256;

/// The longest amount text accepted, in bytes. `U256::MAX` has 78 digits, so
/// anything longer than this is a mistake (or an attack), not an amount.
pub const MAX_AMOUNT_TEXT_LEN: usize = 160;

/// Why an amount text or value was refused. Every variant names the field
/// (as the caller called it, e.g. `"amount"`) so the user knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// The text is empty.
    #[error("{field} is empty; write a decimal amount such as \"0.5\"")]
    Empty {
        /// The field that was empty.
        field: String,
    },
    /// The text is longer than [`MAX_AMOUNT_TEXT_LEN`].
    #[error("{field} is {len} characters long; an amount has at most {max}")]
    TooLong {
        /// The field.
        field: String,
        /// The text's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text has a `+` or `-` sign.
    #[error("{field} {text:?} has a sign; write the amount without '+' or '-'")]
    Sign {
        /// The field.
        field: String,
        /// The refused text.
        text: String,
    },
    /// The text uses exponent notation (`1e6`).
    #[error("{field} {text:?} uses an exponent; write all the digits (e.g. \"1000000\")")]
    Exponent {
        /// The field.
        field: String,
        /// The refused text.
        text: String,
    },
    /// The text is not a plain decimal number (spaces, several dots, a dot
    /// at either end, other characters).
    #[error("{field} {text:?} is not a plain decimal amount: {reason}")]
    Malformed {
        /// The field.
        field: String,
        /// The refused text.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// More fractional digits than the asset has decimals.
    #[error("{field} {text:?} has {found} decimals; {asset} allows {allowed}")]
    TooManyDecimals {
        /// The field.
        field: String,
        /// The refused text.
        text: String,
        /// How many fractional digits the text has.
        found: usize,
        /// How many the asset allows.
        allowed: u8,
        /// The asset's symbol, or "this asset".
        asset: String,
    },
    /// The value does not fit in 256 bits of base units.
    #[error("{field} {text:?} is too large: it overflows 256 bits of base units")]
    Overflow {
        /// The field.
        field: String,
        /// The refused text.
        text: String,
    },
    /// The value does not fit in a `u128`.
    #[error("{field} {value} base units is too large: at most {max} fits here", max = u128::MAX)]
    TooLargeForU128 {
        /// The field.
        field: String,
        /// The value in base units.
        value: U256,
    },
}

/// Parses a decimal amount in the asset's units ("0.5", "12", "0.000001")
/// into base units, for an asset with `decimals` decimals.
///
/// Refuses empty text, any sign, exponents, whitespace, more than one `.`, a
/// `.` at either end, non-digits, more fractional digits than `decimals`,
/// and values that overflow [`U256`]. Leading zeros are allowed.
pub fn parse_amount(field: &str, text: &str, decimals: u8) -> Result<U256, AmountError> {
    parse_inner(field, text, decimals, None)
}

/// Like [`parse_amount`], naming the asset's symbol (e.g. `"USDC"`) in the
/// too-many-decimals error.
pub fn parse_asset_amount(
    field: &str,
    text: &str,
    decimals: u8,
    symbol: &str,
) -> Result<U256, AmountError> {
    parse_inner(field, text, decimals, Some(symbol))
}

/// Parses a plain integer string of base units ("1000000"). Same refusals as
/// [`parse_amount`], and any `.` is refused.
pub fn parse_base_units(field: &str, text: &str) -> Result<U256, AmountError> {
    check_common(field, text)?;
    if text.contains('.') {
        return Err(malformed(
            field,
            text,
            "base units are a whole number, without '.'",
        ));
    }
    digits_to_u256(field, text, text.bytes())
}

/// Formats base units as an exact decimal in the asset's units: trailing
/// zeros of the fraction trimmed, no `.` for whole values, `"0"` for zero.
pub fn format_amount(value: U256, decimals: u8) -> String {
    let digits = value.to_string();
    let decimals = usize::from(decimals);
    if decimals == 0 {
        return digits;
    }
    // Left-pad so there is at least one integer digit.
    let padded = if digits.len() <= decimals {
        let mut s = "0".repeat(decimals + 1 - digits.len());
        s.push_str(&digits);
        s
    } else {
        digits
    };
    let split = padded.len() - decimals;
    let (int_part, frac_part) = padded.split_at(split);
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.is_empty() {
        int_part.to_string()
    } else {
        format!("{int_part}.{frac_trimmed}")
    }
}

/// Converts base units to `u128`, refusing values that do not fit.
pub fn to_u128(field: &str, value: U256) -> Result<u128, AmountError> {
    u128::try_from(value).map_err(|_| AmountError::TooLargeForU128 {
        field: field.to_string(),
        value,
    })
}

fn malformed(field: &str, text: &str, reason: &str) -> AmountError {
    AmountError::Malformed {
        field: field.to_string(),
        text: text.to_string(),
        reason: reason.to_string(),
    }
}

/// Checks shared by both parsers: length, emptiness, sign, exponent,
/// whitespace and foreign characters (everything but digits and '.').
fn check_common(field: &str, text: &str) -> Result<(), AmountError> {
    if text.len() > MAX_AMOUNT_TEXT_LEN {
        return Err(AmountError::TooLong {
            field: field.to_string(),
            len: text.len(),
            max: MAX_AMOUNT_TEXT_LEN,
        });
    }
    if text.is_empty() {
        return Err(AmountError::Empty {
            field: field.to_string(),
        });
    }
    if text.contains(['+', '-']) {
        return Err(AmountError::Sign {
            field: field.to_string(),
            text: text.to_string(),
        });
    }
    if text.contains(['e', 'E']) {
        return Err(AmountError::Exponent {
            field: field.to_string(),
            text: text.to_string(),
        });
    }
    if text.chars().any(char::is_whitespace) {
        return Err(malformed(field, text, "it contains whitespace"));
    }
    if let Some(c) = text.chars().find(|c| !c.is_ascii_digit() && *c != '.') {
        return Err(malformed(
            field,
            text,
            &format!("{c:?} is not a digit (use '.' as the decimal point, no separators)"),
        ));
    }
    Ok(())
}

fn parse_inner(
    field: &str,
    text: &str,
    decimals: u8,
    symbol: Option<&str>,
) -> Result<U256, AmountError> {
    check_common(field, text)?;
    let mut parts = text.split('.');
    let int_part = parts.next().unwrap_or_default();
    let frac_part = parts.next();
    if parts.next().is_some() {
        return Err(malformed(field, text, "it has more than one '.'"));
    }
    if int_part.is_empty() {
        return Err(malformed(
            field,
            text,
            "it starts with '.'; write a 0 before it",
        ));
    }
    let frac = match frac_part {
        None => "",
        Some("") => return Err(malformed(field, text, "it ends with '.'")),
        Some(f) => f,
    };
    if frac.len() > usize::from(decimals) {
        return Err(AmountError::TooManyDecimals {
            field: field.to_string(),
            text: text.to_string(),
            found: frac.len(),
            allowed: decimals,
            asset: symbol.unwrap_or("this asset").to_string(),
        });
    }
    let pad = usize::from(decimals) - frac.len();
    let digits = int_part
        .bytes()
        .chain(frac.bytes())
        .chain(std::iter::repeat_n(b'0', pad));
    digits_to_u256(field, text, digits)
}

/// Accumulates ASCII digits into a `U256` with checked arithmetic.
fn digits_to_u256(
    field: &str,
    text: &str,
    digits: impl Iterator<Item = u8>,
) -> Result<U256, AmountError> {
    let ten = U256::from(10u8);
    let mut acc = U256::ZERO;
    for d in digits {
        let digit = U256::from(d.wrapping_sub(b'0'));
        acc = acc
            .checked_mul(ten)
            .and_then(|v| v.checked_add(digit))
            .ok_or_else(|| AmountError::Overflow {
                field: field.to_string(),
                text: text.to_string(),
            })?;
    }
    Ok(acc)
}
