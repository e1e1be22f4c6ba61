//! Merchants' sandboxes: each live merchant may have one sandbox twin, a
//! merchant row of its own with the id `<merchant>.sandbox`, made when its
//! first sandbox API key is issued.
//!
//! The twin is an ordinary tenant, so every isolation between merchants
//! (keys, requests, payouts, orders, webhooks, ledger accounts) keeps
//! sandbox objects apart from live ones without a rule of its own: a
//! sandbox key sees nothing of its live merchant and the other way round.
//! Its API keys are `kfm_test_` and 64 hex digits (live keys stay `kfm_`
//! and 64 hex digits), so a sandbox key is recognisable at a glance.
//!
//! A live merchant id is `[a-z0-9_-]` only, so the `.sandbox` form can
//! never be taken by a live merchant; `merchant_sandboxes` links each twin
//! to its live merchant (disabling the live merchant stops its sandbox keys
//! too).

use rusqlite::{params, OptionalExtension};

use crate::coordinator::CoordinatorStore;
use crate::coordinator_merchants::{check_live_merchant_id, Merchant};
use crate::error::StoreError;

/// Suffix of a sandbox twin's merchant id.
pub const SANDBOX_SUFFIX: &str = ".sandbox";
/// Prefix of sandbox API keys (a live key is `kfm_` and 64 hex digits).
pub const SANDBOX_KEY_PREFIX: &str = "kfm_test_";

/// Migration 15 -> 16: the link of each sandbox twin to its live merchant.
/// Idempotent (`IF NOT EXISTS`), as the upgrade tests run it again over a
/// store that has it.
pub(crate) const MIGRATION_16: &str = "CREATE TABLE IF NOT EXISTS merchant_sandboxes (
        sandbox_id  TEXT PRIMARY KEY REFERENCES merchants (merchant_id),
        merchant_id TEXT NOT NULL UNIQUE REFERENCES merchants (merchant_id),
        created_at  INTEGER NOT NULL
    ) STRICT;";

/// The sandbox twin's id of live merchant `merchant_id`.
pub fn sandbox_id_of(merchant_id: &str) -> String {
    format!("{merchant_id}{SANDBOX_SUFFIX}")
}

/// The live merchant of a sandbox twin's id (`None`: not a sandbox id).
pub fn live_id_of(merchant_id: &str) -> Option<&str> {
    merchant_id
        .strip_suffix(SANDBOX_SUFFIX)
        .filter(|live| check_live_merchant_id(live).is_ok())
}

/// Whether `merchant_id` is a sandbox twin's.
pub fn is_sandbox_merchant(merchant_id: &str) -> bool {
    live_id_of(merchant_id).is_some()
}

impl CoordinatorStore {
    /// The sandbox twin of live merchant `merchant_id`, made now if it has
    /// none (with the live merchant's rate limit and no request signing;
    /// its own settings may change afterwards). The live merchant must exist
    /// and be enabled.
    pub fn sandbox_merchant(&self, merchant_id: &str, now: i64) -> Result<Merchant, StoreError> {
        if is_sandbox_merchant(merchant_id) {
            return Err(StoreError::InvalidInput {
                field: "merchant_id",
                reason: format!(
                    "{merchant_id} is a sandbox merchant already: issue sandbox keys for its live merchant"
                ),
            });
        }
        check_live_merchant_id(merchant_id)?;
        let twin = sandbox_id_of(merchant_id);
        self.db.durably("sandbox_merchant", |tx| {
            let err = self.db.err("sandbox_merchant");
            let live: Option<(String, i64, i64, Option<i64>)> = tx
                .query_row(
                    "SELECT name, rate_burst, rate_per_sec, disabled_at FROM merchants
                     WHERE merchant_id = ?1",
                    [merchant_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(&err)?;
            let Some((name, burst, per_sec, disabled)) = live else {
                return Err(StoreError::NotFound {
                    what: "merchant",
                    id: merchant_id.to_string(),
                });
            };
            if disabled.is_some() {
                return Err(StoreError::InvalidInput {
                    field: "merchant_id",
                    reason: format!("merchant {merchant_id} is disabled: enable it first"),
                });
            }
            tx.execute(
                "INSERT INTO merchants (merchant_id, name, rate_burst, rate_per_sec, signing,
                 created_at) VALUES (?1, ?2, ?3, ?4, 'none', ?5) ON CONFLICT DO NOTHING",
                params![twin, name, burst, per_sec, now],
            )
            .map_err(&err)?;
            tx.execute(
                "INSERT INTO merchant_sandboxes (sandbox_id, merchant_id, created_at)
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![twin, merchant_id, now],
            )
            .map_err(&err)?;
            Ok(())
        })?;
        let m = self
            .get_merchant(&twin)?
            .ok_or_else(|| StoreError::NotFound {
                what: "sandbox merchant",
                id: twin.clone(),
            })?;
        tracing::info!(merchant = %merchant_id, sandbox = %twin, "sandbox merchant ready");
        Ok(m)
    }

    /// The live merchant a sandbox twin is linked to (`None`: `merchant_id`
    /// is not a sandbox twin, or has not been made).
    pub fn sandbox_owner(&self, merchant_id: &str) -> Result<Option<String>, StoreError> {
        if !is_sandbox_merchant(merchant_id) {
            return Ok(None);
        }
        self.db
            .reader()
            .query_row(
                "SELECT merchant_id FROM merchant_sandboxes WHERE sandbox_id = ?1",
                [merchant_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db.err("sandbox_owner"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids_are_recognised_only_in_their_reserved_form() {
        assert_eq!(sandbox_id_of("acme"), "acme.sandbox");
        assert_eq!(live_id_of("acme.sandbox"), Some("acme"));
        assert!(is_sandbox_merchant("acme.sandbox"));
        assert!(!is_sandbox_merchant("acme"));
        assert!(!is_sandbox_merchant("acme_sandbox"));
        assert!(!is_sandbox_merchant(".sandbox"));
        assert!(!is_sandbox_merchant("acme.sandbox.sandbox"));
        assert!(!is_sandbox_merchant("Acme.sandbox"));
        // A live id never has the reserved form.
        assert!(check_live_merchant_id("acme.sandbox").is_err());
    }
}
