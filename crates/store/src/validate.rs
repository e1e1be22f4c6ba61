//! Input validation shared by both stores: ids, sizes, signer sets.
//!
//! Everything that reaches the database is bounded and checked here first, so
//! that bad input gets a clear [`StoreError::InvalidInput`] and never reaches
//! SQL or the sealer.

use crate::error::StoreError;

/// Longest id accepted (key, group, presignature, node, request ids, token
/// names), in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Largest secret (share, aux info, presignature, primes) that can be sealed,
/// in bytes.
pub const MAX_SECRET_LEN: usize = 16 * 1024 * 1024;

/// Most parties in a signer set or group.
pub const MAX_SIGNER_SET: usize = 256;

/// Largest public key accepted, in bytes.
pub(crate) const MAX_PUBLIC_KEY_LEN: usize = 256;

/// Largest JSON document (request, result, error) accepted, in bytes.
pub(crate) const MAX_JSON_LEN: usize = 1024 * 1024;

/// Most ids `ready_ids` returns in one call.
pub(crate) const MAX_LIST_LIMIT: usize = 10_000;

/// Checks a record id: 1..=128 bytes of ASCII letters, digits and `-_.:,@/+=`.
///
/// `|` is not allowed: it separates fields in composite sealing ids.
pub(crate) fn id(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!("must be 1 to {MAX_ID_LEN} bytes, got {}", value.len()),
        });
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.:,@/+=".contains(*c)))
    {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!(
                "character {c:?} not allowed (use ASCII letters, digits and -_.:,@/+=)"
            ),
        });
    }
    Ok(())
}

/// Checks a client-chosen id (request ids): 1..=128 printable ASCII bytes, no
/// spaces.
pub(crate) fn client_id(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!("must be 1 to {MAX_ID_LEN} bytes, got {}", value.len()),
        });
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::InvalidInput {
            field,
            reason: "only printable ASCII without spaces is allowed".into(),
        });
    }
    Ok(())
}

/// Checks a byte string's length is within `1..=max`.
pub(crate) fn bytes(field: &'static str, value: &[u8], max: usize) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > max {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!("must be 1 to {max} bytes, got {}", value.len()),
        });
    }
    Ok(())
}

/// Checks a JSON document: bounded and well formed.
pub(crate) fn json(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.len() > MAX_JSON_LEN {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!("{} bytes, more than {MAX_JSON_LEN}", value.len()),
        });
    }
    serde_json::from_str::<serde::de::IgnoredAny>(value).map_err(|e| StoreError::InvalidInput {
        field,
        reason: format!("not valid JSON: {e}"),
    })?;
    Ok(())
}

/// Canonical text form of a signer set: the party indices sorted ascending,
/// comma separated (`"0,2,5"`). Order of the input does not matter;
/// duplicates and empty sets are refused.
pub(crate) fn signer_set(set: &[u16]) -> Result<String, StoreError> {
    if set.is_empty() || set.len() > MAX_SIGNER_SET {
        return Err(StoreError::InvalidInput {
            field: "signer_set",
            reason: format!("must have 1 to {MAX_SIGNER_SET} parties, got {}", set.len()),
        });
    }
    let mut sorted = set.to_vec();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(StoreError::InvalidInput {
            field: "signer_set",
            reason: format!("party index {} appears twice", w[0]),
        });
    }
    Ok(sorted
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(","))
}

/// Checks a list of node ids (group members, key participants): 1..=256
/// valid ids without duplicates.
pub(crate) fn members(field: &'static str, members: &[String]) -> Result<(), StoreError> {
    if members.is_empty() || members.len() > MAX_SIGNER_SET {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!(
                "must have 1 to {MAX_SIGNER_SET} entries, got {}",
                members.len()
            ),
        });
    }
    for m in members {
        id(field, m)?;
    }
    let mut sorted: Vec<&String> = members.iter().collect();
    sorted.sort();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!("`{}` appears twice", w[0]),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_set_is_canonical() {
        assert_eq!(signer_set(&[5, 0, 2]).unwrap(), "0,2,5");
        assert!(signer_set(&[]).is_err());
        assert!(signer_set(&[1, 1]).is_err());
    }

    #[test]
    fn ids() {
        assert!(id("key_id", "btc:hot-1/a.b_c").is_ok());
        assert!(id("key_id", "").is_err());
        assert!(id("key_id", "a|b").is_err());
        assert!(id("key_id", "a b").is_err());
        assert!(id("key_id", &"x".repeat(129)).is_err());
        assert!(client_id("request_id", "req#1?x").is_ok());
        assert!(client_id("request_id", "req 1").is_err());
    }
}
