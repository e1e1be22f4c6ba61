//! The auditor's rules for payouts' chain transactions: each request's
//! transaction is the one it carries, signed by the wallet; a replacement
//! of a stuck transaction sits at the same nonce, pays exactly the same
//! and offers higher fees (one nonce per payout). Transactions are built
//! with `keyfold_chain` and signed with `k256` over keccak-256, as the
//! signers sign them.

mod common;

use common::*;
use keyfold_audit::{Event, HexBytes};
use keyfold_chain::evm::{self, Address, Transfer, U256};
use keyfold_policy::{Payload, Request, Tier};

const GWEI: u128 = 1_000_000_000;
const CHAIN_ID: u64 = 31337;

fn policy() -> String {
    format!(
        r#"version = 1
name = "chain-fixture"

[admins]
keys = ["{a1}", "{a2}", "{a3}"]
quorum = 2

[[rules]]
name = "devnet-payouts"
chains = ["devnet-l1"]
max_fee = "10000000000000000"
action = {{ kind = "allow" }}

[[rules]]
name = "deny-all"
action = {{ kind = "deny" }}
"#,
        a1 = ed_hex(ADMINS[0]),
        a2 = ed_hex(ADMINS[1]),
        a3 = ed_hex(ADMINS[2]),
    )
}

fn wallet() -> Address {
    address_at(&[])
}

/// The address of `hot-btc`'s key at `path` (the root for `[]`).
fn address_at(path: &[u32]) -> Address {
    evm::address_of_public_key(&sec1(&btc_key(path))).unwrap()
}

fn recipient(byte: u8) -> Address {
    Address::repeat_byte(byte)
}

fn transfer(nonce: u64, to: Address, wei: u64, max_fee: u128, tip: u128) -> Transfer {
    Transfer {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to,
        amount: U256::from(wei),
        token: None,
    }
}

/// The payout request carrying `t`.
fn payout(id: &str, t: &Transfer, time: u64) -> Request {
    Request {
        id: id.into(),
        wallet: HOT_BTC.into(),
        tier: Tier::Hot,
        asset: "ETH".into(),
        amount: t.amount.to::<u128>(),
        destination: t.to.to_checksum(None),
        initiator: "payments".into(),
        risk: None,
        origin: None,
        time,
        payload: Payload::ChainTransaction {
            chain: "devnet-l1".into(),
            chain_id: Some(CHAIN_ID),
            token_contract: None,
            source: wallet().to_checksum(None),
            fee_cap: t.fee_cap(),
            tx: evm::unsigned_payload(t),
        },
    }
}

fn sim() -> Sim {
    let mut s = Sim::empty(&policy());
    s.key(HOT_BTC);
    s.genesis();
    s
}

/// Records request `id` for `t`, allowed and signed, and returns its
/// signed transaction.
fn signed(s: &mut Sim, id: &str, t: &Transfer, time: u64) -> evm::SignedTransaction {
    signed_as(s, payout(id, t, time), &[], t)
}

/// Records `request` (for `t`, from the key at `path`), allowed and
/// signed, and returns its signed transaction.
fn signed_as(s: &mut Sim, request: Request, path: &[u32], t: &Transfer) -> evm::SignedTransaction {
    let time = request.time;
    s.allowed_transfer(HOT_BTC, request, time + 1);
    let Some(Event::Signature { signature, .. }) = s.events.last() else {
        panic!("the last event is the signature");
    };
    let (r, sig_s) = signature.0.split_at(32);
    evm::attach_signature(
        &evm::unsigned_payload(t),
        r.try_into().unwrap(),
        sig_s.try_into().unwrap(),
        address_at(path),
    )
    .unwrap()
}

fn chain_event(id: &str, action: &str, tx: &evm::SignedTransaction, raw: bool) -> Event {
    Event::ChainTransaction {
        request_id: id.into(),
        chain: "devnet-l1".into(),
        action: action.into(),
        tx_hash: format!("{:#x}", tx.hash),
        raw_tx: raw.then(|| HexBytes(tx.raw.clone())),
        block_number: (action == "confirmed").then_some(12),
        confirmations: u64::from(action == "confirmed") * 2,
    }
}

/// A payout broadcast at nonce 7, and a second request at the same nonce
/// built by `replace` from the first transaction, signed.
fn stuck_and(
    replace: impl FnOnce(&Transfer) -> Transfer,
) -> (Sim, evm::SignedTransaction, evm::SignedTransaction) {
    let mut s = sim();
    let first = transfer(7, recipient(0x11), 5_000, 40 * GWEI, 2 * GWEI);
    let tx1 = signed(&mut s, "payout:p1", &first, T0);
    s.push(chain_event("payout:p1", "broadcast", &tx1, true));
    let tx2 = signed(&mut s, "payout:p1+r1", &replace(&first), T0 + 130);
    (s, tx1, tx2)
}

fn bumped(t: &Transfer) -> Transfer {
    Transfer {
        max_fee_per_gas: t.max_fee_per_gas * 9 / 8,
        max_priority_fee_per_gas: t.max_priority_fee_per_gas * 9 / 8,
        ..t.clone()
    }
}

#[test]
fn a_replacement_at_the_same_nonce_paying_the_same_for_more_fees_passes() {
    let (mut s, _, tx2) = stuck_and(bumped);
    s.push(chain_event("payout:p1+r1", "replacement", &tx2, true));
    s.push(chain_event("payout:p1+r1", "confirmed", &tx2, false));
    audit(&s.events).unwrap();
}

#[test]
fn a_replacement_that_pays_someone_else_is_refused() {
    let (mut s, _, tx2) = stuck_and(|t| Transfer {
        to: recipient(0x66),
        ..bumped(t)
    });
    let at = s.push(chain_event("payout:p1+r1", "replacement", &tx2, true));
    rejected(&s.events, at, "pays something else");
}

#[test]
fn a_replacement_that_pays_more_is_refused() {
    let (mut s, _, tx2) = stuck_and(|t| Transfer {
        amount: t.amount + U256::from(1u8),
        ..bumped(t)
    });
    let at = s.push(chain_event("payout:p1+r1", "replacement", &tx2, true));
    rejected(&s.events, at, "pays something else");
}

#[test]
fn a_replacement_without_higher_fees_is_refused() {
    let (mut s, _, tx2) = stuck_and(|t| Transfer {
        max_fee_per_gas: t.max_fee_per_gas * 2,
        ..t.clone()
    });
    let at = s.push(chain_event("payout:p1+r1", "replacement", &tx2, true));
    rejected(&s.events, at, "without raising its fees");
}

#[test]
fn a_replacement_at_a_nonce_never_used_is_refused() {
    let (mut s, _, tx2) = stuck_and(|t| Transfer {
        nonce: 8,
        ..bumped(t)
    });
    let at = s.push(chain_event("payout:p1+r1", "replacement", &tx2, true));
    rejected(&s.events, at, "never sent");
}

#[test]
fn a_second_transaction_for_one_request_is_refused() {
    let (mut s, tx1, tx2) = stuck_and(bumped);
    s.push(chain_event("payout:p1+r1", "replacement", &tx2, true));
    // The first request now names the replacement's hash as its own.
    let mut lie = chain_event("payout:p1", "confirmed", &tx1, false);
    if let Event::ChainTransaction { tx_hash, .. } = &mut lie {
        *tx_hash = format!("{:#x}", tx2.hash);
    }
    let at = s.push(lie);
    rejected(&s.events, at, "the log now names");
}

#[test]
fn a_payout_from_an_hd_child_is_checked_against_the_child_address() {
    let mut s = sim();
    let t = transfer(0, recipient(0x22), 9_000, 40 * GWEI, 2 * GWEI);
    let mut request = payout("payout:child", &t, T0);
    request.wallet = format!("{HOT_BTC}/m/0/7");
    if let Payload::ChainTransaction { source, .. } = &mut request.payload {
        *source = address_at(&[0, 7]).to_checksum(None);
    }
    let tx = signed_as(&mut s, request, &[0, 7], &t);
    assert_eq!(tx.from, address_at(&[0, 7]));
    s.push(chain_event("payout:child", "broadcast", &tx, true));
    audit(&s.events).unwrap();
}

#[test]
fn a_root_payout_whose_transaction_the_child_signed_is_refused() {
    let mut s = sim();
    let t = transfer(0, recipient(0x22), 9_000, 40 * GWEI, 2 * GWEI);
    let tx = signed(&mut s, "payout:root", &t, T0);
    // The same transaction signed by another key (the child), filed under
    // the root key's request.
    let (r, sig_s) = {
        let sig = ecdsa_sig_keccak(&btc_key(&[0, 7]), &evm::unsigned_payload(&t));
        let (r, x) = sig.split_at(32);
        (r.to_vec(), x.to_vec())
    };
    let forged = evm::attach_signature(
        &evm::unsigned_payload(&t),
        r.try_into().unwrap(),
        sig_s.try_into().unwrap(),
        address_at(&[0, 7]),
    )
    .unwrap();
    assert_ne!(forged.hash, tx.hash);
    let at = s.push(chain_event("payout:root", "broadcast", &forged, true));
    rejected(&s.events, at, "not the wallet");
}

// `rejected` lives in the auditor tests; the same check here.
#[track_caller]
fn rejected(events: &[Event], index: usize, why: &str) {
    use keyfold_audit::{EntryError, VerifyError};
    match audit(events) {
        Err(VerifyError::BadEntry {
            index: i,
            reason: EntryError::Rejected(msg),
        }) => {
            assert_eq!(i, index as u64, "entry {i} was refused ({msg})");
            assert!(msg.contains(why), "refused for {msg:?}, expected {why:?}");
        }
        other => panic!("expected entry {index} to be refused ({why}), got {other:?}"),
    }
}
