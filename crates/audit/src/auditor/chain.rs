//! The auditor's checks of payouts' chain transactions (`chain_transaction`
//! events): each request's signed transaction is the one it carries, signed
//! by its wallet (or the wallet's HD child), named by one hash in every
//! later event; a replacement of a stuck transaction sits at the same
//! nonce, pays the same, and offers higher fees.

use super::{derive_child, Auditor, Check};

impl Auditor {
    /// A signed payout's transaction: its bytes must be the request's
    /// unsigned transaction signed by the wallet, and every later event
    /// must name the same hash (one transaction per request). A
    /// `replacement` (a stuck payout's transaction replaced by another
    /// request's) must sit at the nonce of a transaction sent before, pay
    /// exactly what that one paid, and offer higher fees: one nonce per
    /// payout, so at most one of them can ever be mined.
    pub(super) fn chain_transaction(
        &mut self,
        request_id: &str,
        action: &str,
        tx_hash: &str,
        raw_tx: Option<&[u8]>,
    ) -> Check {
        use keyfold_chain::evm;
        if !matches!(
            action,
            "broadcast" | "replacement" | "rebroadcast" | "confirmed" | "failed"
        ) {
            return Err(format!("chain transaction action {action:?} is unknown"));
        }
        let req = self.request(request_id)?.clone();
        if !req.signed {
            return Err(format!(
                "request {request_id} has a chain transaction but no signature"
            ));
        }
        let keyfold_policy::Payload::ChainTransaction {
            tx,
            chain_id: Some(_),
            ..
        } = &req.request.payload
        else {
            return Err(format!(
                "request {request_id} is not an EVM chain transaction"
            ));
        };
        match raw_tx {
            Some(raw) => {
                let (signed, from, hash) =
                    evm::decode_signed(raw).map_err(|e| format!("raw_tx: {e}"))?;
                let unsigned = evm::decode_unsigned(tx).map_err(|e| format!("request tx: {e}"))?;
                if signed != unsigned {
                    return Err(format!(
                        "the signed transaction of {request_id} is not the one the request carries"
                    ));
                }
                let key = self
                    .keys
                    .get(&req.key_id)
                    .ok_or_else(|| format!("key {} was never created", req.key_id))?;
                // The paying key: the wallet's root, or its HD child.
                let public_key = match (&req.path, key.chain_code) {
                    (Some(path), Some(cc)) => derive_child(&key.public_key, cc, path)?,
                    (Some(_), None) => return Err(format!("key {} has no chain code", req.key_id)),
                    (None, _) => key.public_key.clone(),
                };
                let wallet = evm::address_of_public_key(&public_key)
                    .map_err(|e| format!("key {}: {e}", req.key_id))?;
                if from != wallet {
                    return Err(format!(
                        "the transaction of {request_id} is signed by {from}, not the wallet {wallet}"
                    ));
                }
                if format!("{hash:#x}") != tx_hash {
                    return Err(format!(
                        "tx_hash {tx_hash} is not the hash of raw_tx ({hash:#x})"
                    ));
                }
                let slot = (signed.chain_id, from, signed.nonce);
                match (action, self.nonce_txs.get(&slot)) {
                    ("replacement", None) => {
                        return Err(format!(
                            "{request_id} replaces a transaction at nonce {} of {from} that was never sent",
                            signed.nonce
                        ))
                    }
                    ("replacement", Some((earlier, old))) => {
                        let same_payment = old.to == signed.to
                            && old.amount == signed.amount
                            && old.token == signed.token
                            && old.gas_limit == signed.gas_limit;
                        if !same_payment {
                            return Err(format!(
                                "{request_id} replaces {earlier}'s transaction at nonce {} with one that pays something else",
                                signed.nonce
                            ));
                        }
                        if signed.max_fee_per_gas <= old.max_fee_per_gas
                            || signed.max_priority_fee_per_gas <= old.max_priority_fee_per_gas
                        {
                            return Err(format!(
                                "{request_id} replaces {earlier}'s transaction at nonce {} without raising its fees",
                                signed.nonce
                            ));
                        }
                    }
                    _ => {}
                }
                self.nonce_txs
                    .insert(slot, (request_id.to_string(), signed));
                match self.chain_txs.get(request_id) {
                    Some(h) if h != tx_hash => {
                        return Err(format!(
                            "request {request_id} was sent as {h} before, now as {tx_hash}: two transactions for one payout"
                        ))
                    }
                    _ => {
                        self.chain_txs
                            .insert(request_id.to_string(), tx_hash.to_string());
                    }
                }
                Ok(())
            }
            None => match self.chain_txs.get(request_id) {
                Some(h) if h == tx_hash => Ok(()),
                Some(h) => Err(format!(
                    "request {request_id} was sent as {h}, the log now names {tx_hash}"
                )),
                None => Err(format!(
                    "chain transaction {tx_hash} of {request_id} appears before its signed bytes"
                )),
            },
        }
    }
}
