//! One canonical spelling per destination address, so that a rule that
//! names an address (a deny list, an allow list, the address book) cannot be
//! sidestepped by another spelling of the same address, and an approver is
//! never shown a misleading one.
//!
//! [`canonical_destination`] recognizes:
//!
//! * **EVM** (`0x` and 40 hex digits): checked and written in its EIP-55
//!   mixed-case checksum form. An all-lowercase or all-uppercase address
//!   carries no checksum and is accepted; a mixed-case one must carry the
//!   right checksum. `0x` followed by anything else is refused.
//! * **Solana** (base58 of a 32-byte public key): kept as written once it
//!   decodes to 32 bytes and re-encodes to the same text.
//! * anything else is an **opaque identifier** of 1 to 128 characters from
//!   `A-Z a-z 0-9 : . _ -`, compared exactly as written. Spaces, control,
//!   zero-width and bidirectional characters (everything outside ASCII) are
//!   refused.

use sha3::{Digest, Keccak256};

/// Longest destination accepted, in bytes.
pub const MAX_DESTINATION: usize = 128;

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Empty, or longer than [`MAX_DESTINATION`].
    #[error("must be 1 to {MAX_DESTINATION} characters, got {0}")]
    Length(usize),
    /// A character outside the allowed set (shown escaped).
    #[error("character {0} is not allowed in an address (letters, digits and : . _ - only; no spaces, no invisible or direction-changing characters)")]
    Character(String),
    /// `0x` but not 40 hex digits.
    #[error("starts with 0x but is not an EVM address (0x and 40 hex digits)")]
    NotEvm,
    /// A mixed-case EVM address whose EIP-55 checksum is wrong.
    #[error("EVM address with a wrong EIP-55 checksum (expected {expected}); check it, or write it all in lowercase")]
    BadChecksum {
        /// The correctly checksummed spelling.
        expected: String,
    },
}

/// The EIP-55 spelling of 20 address bytes given as 40 lowercase hex digits.
fn eip55(lower_hex: &str) -> String {
    let hash = Keccak256::digest(lower_hex.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower_hex.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        if c.is_ascii_alphabetic() && nibble >= 8 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The canonical spelling of a destination (see the module docs).
pub fn canonical_destination(s: &str) -> Result<String, AddressError> {
    if s.is_empty() || s.len() > MAX_DESTINATION {
        return Err(AddressError::Length(s.chars().count()));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-')))
    {
        return Err(AddressError::Character(c.escape_unicode().to_string()));
    }
    if let Some(hex_part) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AddressError::NotEvm);
        }
        let lower = hex_part.to_ascii_lowercase();
        let expected = eip55(&lower);
        let one_case = hex_part == lower || hex_part == hex_part.to_ascii_uppercase();
        if !one_case && &expected[2..] != hex_part {
            return Err(AddressError::BadChecksum { expected });
        }
        return Ok(expected);
    }
    // Solana keys are kept as written (base58 has one spelling per value).
    Ok(s.to_string())
}

/// Whether `s` is the base58 spelling of 32 bytes (a Solana address).
pub fn is_solana_address(s: &str) -> bool {
    matches!(bs58::decode(s).into_vec(), Ok(v) if v.len() == 32 && bs58::encode(&v).into_string() == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    // EIP-55's own test vectors.
    const VECTORS: [&str; 4] = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn evm_addresses_take_their_eip55_spelling() {
        for v in VECTORS {
            assert_eq!(canonical_destination(v).unwrap(), v);
            assert_eq!(canonical_destination(&v.to_ascii_lowercase()).unwrap(), v);
            let upper = format!("0x{}", v[2..].to_ascii_uppercase());
            assert_eq!(canonical_destination(&upper).unwrap(), v);
        }
    }

    #[test]
    fn a_wrong_checksum_or_length_is_refused() {
        let v = VECTORS[0];
        // Flip the case of one letter: a checksum error, not another address.
        let mut bad: Vec<char> = v.chars().collect();
        let i = bad.iter().position(|c| c.is_ascii_uppercase()).unwrap();
        bad[i] = bad[i].to_ascii_lowercase();
        let bad: String = bad.into_iter().collect();
        assert_eq!(
            canonical_destination(&bad),
            Err(AddressError::BadChecksum { expected: v.into() })
        );
        assert_eq!(canonical_destination("0xbad"), Err(AddressError::NotEvm));
        assert_eq!(
            canonical_destination(&format!("{v}00")),
            Err(AddressError::NotEvm)
        );
    }

    #[test]
    fn invisible_and_spacing_characters_are_refused() {
        for s in [
            "0xbad ",
            " dest",
            "dest\u{200b}",
            "dest\u{202e}",
            "de st",
            "dest\n",
            "",
            "caf\u{e9}",
        ] {
            assert!(canonical_destination(s).is_err(), "{s:?}");
        }
        assert!(canonical_destination(&"a".repeat(129)).is_err());
        assert_eq!(
            canonical_destination("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4").unwrap(),
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
        );
    }

    #[test]
    fn solana_addresses_are_recognized() {
        let key = bs58::encode([7u8; 32]).into_string();
        assert!(is_solana_address(&key));
        assert_eq!(canonical_destination(&key).unwrap(), key);
        assert!(!is_solana_address("abc"));
    }
}
