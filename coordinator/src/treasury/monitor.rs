//! Ledger against chain: each round, the balances the chain shows for the
//! treasury's wallets and the deposit addresses the ledger holds money at
//! are compared with the ledger's. An address with money in flight
//! (a payout not final, a deposit still gathering confirmations) is left
//! for a later round; any other difference is an alert (a log line with
//! `alert = "settlement.ledger_difference"`, `GET /v1/treasury`, and
//! `keyfold treasury`): money arrived that no order or transfer explains, or
//! left by a transaction Keyfold did not send.

use std::collections::BTreeSet;

use keyfold_ledger::{Account, AssetKey, WalletRole};
use serde::{Deserialize, Serialize};

use super::{account, chain_balance, Resolved};
use crate::service::ServiceError;
use crate::Coordinator;

/// Most deposit addresses compared per round.
const MAX_DEPOSITS_PER_ROUND: usize = 50;

/// A difference between the ledger and the chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Difference {
    /// The account (`wallet:hot:0x…`).
    pub account: String,
    /// Chain registry id.
    pub chain: String,
    /// Asset symbol.
    pub asset: String,
    /// The ledger's balance (base units, decimal).
    pub ledger_balance: String,
    /// The chain's (base units, decimal).
    pub chain_balance: String,
}

impl Difference {
    /// In words, for the alert.
    pub fn describe(&self) -> String {
        format!(
            "{} holds {} {} base units on chain, the ledger says {}: money moved that Keyfold did not book (an outside transfer in or out); book it with a correction once explained",
            self.account, self.chain_balance, self.asset, self.ledger_balance
        )
    }
}

impl Coordinator {
    /// Compares the tier's wallets and deposit addresses with the chain.
    pub(super) async fn compare_with_chain(
        &self,
        r: &Resolved,
        deposits: &[String],
    ) -> Result<Vec<Difference>, ServiceError> {
        let chain = r.entry.id.clone();
        let c = chain.clone();
        let busy: BTreeSet<String> = self
            .read(move |s| s.addresses_in_flight(&c))
            .await?
            .into_iter()
            .map(|a| a.to_ascii_lowercase())
            .collect();
        let native = r.entry.native_symbol.clone();
        let mut checks: Vec<(Account, String, Option<String>)> = Vec::new();
        for w in [Some(&r.hot), Some(&r.cold)].into_iter().flatten() {
            checks.push((account(w), r.asset.clone(), r.token.clone()));
            if r.token.is_some() {
                checks.push((account(w), native.clone(), None));
            }
        }
        if let Some(g) = &r.gas {
            checks.push((account(g), native.clone(), None));
        }
        for d in deposits.iter().take(MAX_DEPOSITS_PER_ROUND) {
            checks.push((
                Account::Wallet {
                    role: WalletRole::Deposit,
                    address: d.clone(),
                },
                r.asset.clone(),
                r.token.clone(),
            ));
        }
        let mut out = Vec::new();
        for (acc, symbol, token) in checks {
            let Account::Wallet { address, .. } = &acc else {
                continue;
            };
            if busy.contains(&address.to_ascii_lowercase()) {
                continue;
            }
            let key = AssetKey {
                chain: chain.clone(),
                asset: symbol.clone(),
            };
            let a = acc.clone();
            let booked = self.read(move |s| s.ledger_balance(&a, &key)).await?;
            let on_chain = chain_balance(self, &chain, token.as_deref(), address).await?;
            if i128::try_from(on_chain).ok() != Some(booked) {
                out.push(Difference {
                    account: acc.to_string(),
                    chain: chain.clone(),
                    asset: symbol,
                    ledger_balance: booked.to_string(),
                    chain_balance: on_chain.to_string(),
                });
            }
        }
        Ok(out)
    }
}
