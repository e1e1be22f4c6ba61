//! Sandbox mode at the coordinator: which chains a caller may pay and take
//! orders on.
//!
//! A merchant's sandbox API key (`kfm_test_...`) acts for its sandbox twin
//! (`<merchant>.sandbox`, a tenant of its own: see
//! `keyfold_store::coordinator_sandbox`), so it sees none of the live
//! merchant's objects. Here the chains are kept apart too: a sandbox
//! tenant pays, schedules and takes orders only on chains marked
//! `sandbox = true` in the chain registry, a live merchant only on the
//! others, so test tokens are never taken for money. Operators use every
//! chain. A refusal is `403 sandbox_chain_only` or `403 live_chain_only`.

use keyfold_chain::registry::ChainEntry;

use crate::payments::Payments;
use crate::service::{ServiceError, Tenant};

/// Refuses `entry` for `tenant` when their kinds differ (see the module
/// docs); `sandbox_chains` lists the registry's sandbox chains for the
/// message.
pub(crate) fn check_chain(
    tenant: &Tenant,
    entry: &ChainEntry,
    sandbox_chains: &[&str],
) -> Result<(), ServiceError> {
    let Some(merchant) = tenant.merchant() else {
        return Ok(());
    };
    let sandbox_key = keyfold_store::is_sandbox_merchant(merchant);
    if sandbox_key == entry.sandbox {
        return Ok(());
    }
    let message = if sandbox_key {
        let list = if sandbox_chains.is_empty() {
            "none is configured: the operator marks them `sandbox = true` in the chain registry"
                .to_string()
        } else {
            sandbox_chains.join(", ")
        };
        format!(
            "chain {} is a live chain and merchant {merchant} calls with a sandbox API key \
             (kfm_test_...): sandbox keys pay and take orders on sandbox chains only ({list}); \
             use a live key to move real funds",
            entry.id
        )
    } else {
        format!(
            "chain {} is a sandbox chain and merchant {merchant} calls with a live API key: \
             live keys pay and take orders on live chains only; use the merchant's sandbox key \
             (kfm_test_...) to test",
            entry.id
        )
    };
    Err(ServiceError::ChainEnvironment {
        sandbox_key,
        message,
    })
}

impl Payments {
    /// The registry entry of `chain` if `tenant` may pay or take orders on
    /// it (see the module docs).
    pub(crate) fn entry_for(
        &self,
        tenant: &Tenant,
        chain: &str,
    ) -> Result<&ChainEntry, ServiceError> {
        let entry = self.entry(chain)?;
        let sandbox_chains: Vec<&str> = self
            .registry()
            .entries()
            .iter()
            .filter(|e| e.sandbox)
            .map(|e| e.id.as_str())
            .collect();
        check_chain(tenant, entry, &sandbox_chains)?;
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyfold_chain::registry::ChainRegistry;

    fn entry(sandbox: bool) -> ChainEntry {
        let reg = ChainRegistry::builtin();
        let mut e = reg
            .get("devnet-l1")
            .cloned()
            .expect("the built-in devnet-l1");
        e.sandbox = sandbox;
        e
    }

    #[test]
    fn each_kind_of_caller_uses_its_own_kind_of_chain() {
        let live = Tenant::Merchant("acme".into());
        let sandbox = Tenant::Merchant("acme.sandbox".into());
        let list = ["devnet-l1"];
        assert!(check_chain(&live, &entry(false), &list).is_ok());
        assert!(check_chain(&sandbox, &entry(true), &list).is_ok());
        assert!(check_chain(&Tenant::Operator, &entry(true), &list).is_ok());
        assert!(check_chain(&Tenant::Operator, &entry(false), &list).is_ok());
        match check_chain(&sandbox, &entry(false), &list) {
            Err(ServiceError::ChainEnvironment {
                sandbox_key: true,
                message,
            }) => {
                assert!(message.contains("devnet-l1 is a live chain"), "{message}");
                assert!(message.contains("acme.sandbox"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        match check_chain(&live, &entry(true), &list) {
            Err(ServiceError::ChainEnvironment {
                sandbox_key: false,
                message,
            }) => assert!(
                message.contains("devnet-l1 is a sandbox chain"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        // A live id that merely looks similar is live.
        let lookalike = Tenant::Merchant("acme_sandbox".into());
        assert!(check_chain(&lookalike, &entry(true), &list).is_err());
    }
}
