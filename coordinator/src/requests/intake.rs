//! What a client may send: one canonical form per field, refused otherwise
//! with a message that names the field (documented in `docs/api.md`,
//! "Field formats").
//!
//! | field | canonical form |
//! |---|---|
//! | `request_id`, `client_id` | 1 to 128 characters of `A-Z a-z 0-9 . _ : -`, starting with a letter or a digit |
//! | `key_id` | 32 lowercase hex digits |
//! | `transfer.amount` | decimal digits, no sign, no leading zero (`0` alone is zero), at most 2^128 - 1 |
//! | `transfer.asset` | 1 to 32 characters of `A-Z a-z 0-9 . _ -` |
//! | `transfer.destination` | an EVM address (stored in its EIP-55 spelling), a Solana address, or an identifier of `A-Z a-z 0-9 : . _ -` (see `keyfold_policy::canonical_destination`) |
//! | `derivation_path` | `m/` then non-hardened indices in decimal without leading zeros (`m/0/1`); `m` alone is refused: omit the path to sign with the root key |
//! | `message` | lowercase or uppercase hex, stored lowercase |

use keyfold_mpc::ecdsa::{DerivationPath, HashAlg};
use keyfold_mpc::KeyId;
use keyfold_policy::{Payload, Request as PolicyRequest, Tier};
use keyfold_proto::api::SignRequest;
use keyfold_proto::signer::wallet_name;
use keyfold_proto::{Curve, MAX_MESSAGE_BYTES};
use keyfold_store::KeyRecord;

use super::record::StoredRequest;
use crate::keys::{from_store, is_cold};
use crate::service::ServiceError;

/// Longest request or client id.
pub const MAX_ID: usize = 128;
/// Longest asset symbol.
pub const MAX_ASSET: usize = 32;

fn bad(msg: String) -> ServiceError {
    ServiceError::BadRequest(msg)
}

/// Checks the id of a request to look up or act on: a client's id (see
/// [`check_client_id`]), or the id the payments module gives a stuck
/// payout's replacement, `payout:{payout_id}+r{n}`.
pub fn check_request_ref(field: &str, id: &str) -> Result<(), ServiceError> {
    if let Some((base, attempt)) = id.split_once('+') {
        let numbered = attempt.strip_prefix('r').is_some_and(|n| {
            !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit())
        });
        let prefix = crate::payments::payout::REQUEST_PREFIX;
        if numbered && base.len() > prefix.len() && base.starts_with(prefix) {
            return check_client_id(field, base);
        }
    }
    check_client_id(field, id)
}

/// Checks a caller-chosen id (`request_id`, `client_id`).
pub fn check_client_id(field: &str, id: &str) -> Result<(), ServiceError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        return Ok(());
    }
    let shown: String = id.chars().take(40).flat_map(char::escape_default).collect();
    Err(bad(format!(
        "{field} must be 1 to {MAX_ID} characters of A-Z a-z 0-9 . _ : - starting with a letter or digit, got \"{shown}\""
    )))
}

/// Checks a key id: 32 lowercase hex digits.
pub fn check_key_id(id: &str) -> Result<(), ServiceError> {
    if id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(());
    }
    let shown: String = id.chars().take(40).flat_map(char::escape_default).collect();
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "key_id must be 32 lowercase hex digits, got \"{shown}\" (write it in lowercase)"
        )));
    }
    Err(bad(format!(
        "key_id must be 32 lowercase hex digits, got \"{shown}\""
    )))
}

/// Parses an amount in base units (see the module docs).
pub fn parse_amount(field: &str, s: &str) -> Result<u128, ServiceError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    let shown: String = s.chars().take(48).flat_map(char::escape_default).collect();
    if !canonical {
        return Err(bad(format!(
            "{field} \"{shown}\" is not a whole number of base units: decimal digits, no sign, no leading zero"
        )));
    }
    s.parse::<u128>()
        .map_err(|_| bad(format!("{field} \"{shown}\" is larger than 2^128 - 1")))
}

/// Checks an asset symbol.
pub fn check_asset(field: &str, s: &str) -> Result<(), ServiceError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_ASSET
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        return Ok(());
    }
    let shown: String = s.chars().take(40).flat_map(char::escape_default).collect();
    Err(bad(format!(
        "{field} must be 1 to {MAX_ASSET} characters of A-Z a-z 0-9 . _ -, got \"{shown}\""
    )))
}

/// A destination in its canonical spelling.
pub fn destination(field: &str, s: &str) -> Result<String, ServiceError> {
    keyfold_policy::canonical_destination(s).map_err(|e| bad(format!("{field}: {e}")))
}

/// Parses a derivation path; the root alone is refused.
pub fn parse_path(s: &str) -> Result<DerivationPath, ServiceError> {
    let p: DerivationPath = s
        .parse()
        .map_err(|e| bad(format!("derivation_path: {e}")))?;
    if p.is_root() {
        return Err(bad(
            "derivation_path \"m\" is the root key itself: leave derivation_path out to sign with the root key"
                .into(),
        ));
    }
    Ok(p)
}

/// The request as the coordinator keeps it, from what the client sent,
/// every field in its canonical form. `time` is the request's time.
pub fn accept(
    client: &str,
    req: &SignRequest,
    key: &KeyRecord,
    time: u64,
) -> Result<StoredRequest, ServiceError> {
    check_client_id("request_id", &req.request_id)?;
    let key_id: KeyId = key
        .key_id
        .parse()
        .map_err(|e| ServiceError::Internal(format!("stored key id: {e}")))?;
    let curve = from_store(key.curve);
    let path = req.derivation_path.as_deref().map(parse_path).transpose()?;
    let tier = if is_cold(key) {
        if path.is_some() {
            return Err(bad("cold (HSM) keys do not support derivation paths".into()));
        }
        Tier::Cold
    } else {
        Tier::Hot
    };
    let hash = match curve {
        Curve::Secp256k1 => Some(req.hash.unwrap_or(HashAlg::Sha256)),
        _ => {
            if req.hash.is_some() || path.is_some() {
                return Err(bad(
                    "hash and derivation_path apply to secp256k1 keys only".into()
                ));
            }
            None
        }
    };
    let (payload, asset, amount, destination) =
        match (&req.transfer, &req.message) {
            (Some(t), None) => {
                check_asset("transfer.asset", &t.asset)?;
                (
                    Payload::TypedTransfer,
                    t.asset.clone(),
                    parse_amount("transfer.amount", &t.amount)?,
                    destination("transfer.destination", &t.destination)?,
                )
            }
            (None, Some(m)) => {
                let bytes = hex::decode(m)
                    .map_err(|e| bad(format!("message must be hex (two digits per byte): {e}")))?;
                if bytes.len() > MAX_MESSAGE_BYTES {
                    return Err(bad(format!(
                        "message of {} bytes exceeds {MAX_MESSAGE_BYTES}",
                        bytes.len()
                    )));
                }
                (Payload::RawBytes { bytes }, String::new(), 0, String::new())
            }
            _ => return Err(bad(
                "give exactly one of `transfer` (a typed transfer) and `message` (raw bytes, hex)"
                    .into(),
            )),
        };
    Ok(StoredRequest {
        key_id: key.key_id.clone(),
        request: PolicyRequest {
            id: req.request_id.clone(),
            wallet: wallet_name(&key_id, path.as_ref()),
            tier,
            asset,
            amount,
            destination,
            initiator: client.to_string(),
            risk: None,
            origin: None,
            time,
            payload,
        },
        hash,
        path: path.map(|p| p.to_string()),
        modules: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_one_form() {
        for ok in [
            "a",
            "payout-2024-11-26-000041",
            "A1.b_c:d-e",
            &"x".repeat(128),
        ] {
            assert!(check_client_id("request_id", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-a",
            "a b",
            "a/b",
            "a%2f",
            "é",
            "a\u{200b}",
            &"x".repeat(129),
        ] {
            let e = check_client_id("request_id", bad).unwrap_err().to_string();
            assert!(e.starts_with("request_id must be"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_payout_replacement_is_the_only_reference_beyond_client_ids() {
        for ok in ["payout:p-1+r1", "payout:p-1+r12", "plain-id"] {
            assert!(check_request_ref("request_id", ok).is_ok(), "{ok}");
        }
        for bad in [
            "payout:p-1+r",
            "payout:p-1+x1",
            "payout:p-1+r1x",
            "payout:p-1+r1234",
            "other:p-1+r1",
            "payout:+r1",
            "payout:p 1+r1",
        ] {
            assert!(check_request_ref("request_id", bad).is_err(), "{bad}");
        }
        // A client's own request never takes that form.
        assert!(check_client_id("request_id", "payout:p-1+r1").is_err());
    }

    #[test]
    fn key_ids_are_lowercase_hex() {
        assert!(check_key_id("00112233445566778899aabbccddeeff").is_ok());
        let e = check_key_id("00112233445566778899AABBCCDDEEFF")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lowercase"), "{e}");
        assert!(check_key_id("0011").is_err());
    }

    #[test]
    fn amounts_have_one_form() {
        assert_eq!(parse_amount("a", "0").unwrap(), 0);
        assert_eq!(parse_amount("a", "10").unwrap(), 10);
        assert_eq!(
            parse_amount("a", "340282366920938463463374607431768211455").unwrap(),
            u128::MAX
        );
        for bad in [
            "", "+5", "-5", "0005", "010", "1.5", "1e3", " 1", "1 ", "0x10",
        ] {
            let e = parse_amount("transfer.amount", bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("transfer.amount"), "{bad}: {e}");
        }
        assert!(parse_amount("a", "340282366920938463463374607431768211456").is_err());
    }

    #[test]
    fn the_root_path_is_refused_and_paths_have_one_form() {
        assert!(parse_path("m").is_err());
        assert_eq!(parse_path("m/0/1").unwrap().to_string(), "m/0/1");
        for bad in ["m/", "m/01", "m/+1", "M/1", "m/1'", "m/1/"] {
            assert!(parse_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn assets_are_bounded() {
        assert!(check_asset("transfer.asset", "ETH").is_ok());
        assert!(check_asset("transfer.asset", "stETH").is_ok());
        for bad in ["", "E TH", "ETH\u{200b}", &"A".repeat(33)] {
            assert!(check_asset("transfer.asset", bad).is_err(), "{bad}");
        }
    }
}
