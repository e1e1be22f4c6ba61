//! EVM transfers checked against independent code: eth-account's signed
//! transactions (vectors below), k256 for signing and recovery, and the
//! `sha3` crate for keccak, never alloy checking itself.

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Bytes, TxKind};
use k256::ecdsa::{RecoveryId, Signature as KSig, SigningKey, VerifyingKey};
use keyfold_chain::evm::{
    address_of_public_key, attach_signature, decode_signed, decode_uint256_return, decode_unsigned,
    erc20_balance_of_calldata, parse_address, signing_hash, unsigned_payload, Address, EvmError,
    Transfer, B256, MAX_TX_BYTES, U256,
};
use proptest::prelude::*;
use sha3::{Digest, Keccak256};

// Made once by tests/vectors/make_evm_vectors.py: Python eth-account 0.14
// signing the same fields with anvil's first dev key (RFC 6979, as k256).
const NATIVE_SIGNING_HASH: &str =
    "f857ab4ec5baba7f42310802f28be7e8a8a279355caaeb5764b5108010c34e80";
const NATIVE_RAW: &str = "02f87382210507830f424084773594008252089470997970c51812dc3a010c7d01b50e0d17dc79c888016345785d8a000080c001a02666056ee05a9d85cb40573a3d0c433f4b9fe54e80971bd284614802b69410d4a03aa7668cbcd79209945d8fc786feb69a0ef3add88f4e800b1467c1b63f71e820";
const NATIVE_TX_HASH: &str = "b838956f9764036c436eae7d2f974782d7edb94a3d10c53aa1dfc0f09049cf38";
const ERC20_SIGNING_HASH: &str = "cbab76e6aebcfce3dc00a35eb023bd84f59f9fc7d63e27bdfdc670e873479c31";
const ERC20_RAW: &str = "02f8b1012a843b9aca008506fc23ac00830186a094a0b86991c6218b36c1d19d4a2e9eb0ce3606eb4880b844a9059cbb0000000000000000000000003c44cdddb6a900fa2b585dd299e03d12fa4293bc000000000000000000000000000000000000000000000000000000000012d687c080a01b45ed3503e928f2b5da343ab79611d279c5129eca0e3334e284ee893e6ae9f1a05bbc28585dc7029df49b3f45a2b8e897425d5a04545663f4e654e16221526e20";
const ERC20_TX_HASH: &str = "5dd4870a7f45539212477acea3f436f948b26f34eb1484c1f722f72316d03edb";

const ANVIL_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const ANVIL_ADDR: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const OTHER_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

fn addr(s: &str) -> Address {
    parse_address("test", s).unwrap()
}

fn anvil_key() -> SigningKey {
    SigningKey::from_slice(&hex::decode(ANVIL_KEY).unwrap()).unwrap()
}

fn keccak(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// keccak(uncompressed pubkey without 0x04)[12..], by sha3 and k256 only.
fn independent_address(key: &VerifyingKey) -> Address {
    let point = key.to_encoded_point(false);
    Address::from_slice(&keccak(&point.as_bytes()[1..])[12..])
}

fn native_transfer() -> Transfer {
    Transfer {
        chain_id: 8453,
        nonce: 7,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000,
        to: addr("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),
        amount: U256::from(100_000_000_000_000_000u128),
        token: None,
    }
}

fn erc20_transfer() -> Transfer {
    Transfer {
        chain_id: 1,
        nonce: 42,
        gas_limit: 100_000,
        max_fee_per_gas: 30_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: addr("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
        amount: U256::from(1_234_567u64),
        token: Some(addr("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48")),
    }
}

/// Signs keccak(payload) (computed with sha3) with k256 directly.
fn k256_sign(key: &SigningKey, payload: &[u8]) -> (KSig, RecoveryId) {
    key.sign_prehash_recoverable(&keccak(payload)).unwrap()
}

fn rs(sig: &KSig) -> ([u8; 32], [u8; 32]) {
    (sig.r().to_bytes().into(), sig.s().to_bytes().into())
}

fn check_against_eth_account(t: &Transfer, signing_hash_hex: &str, raw_hex: &str, hash_hex: &str) {
    let payload = unsigned_payload(t);
    assert_eq!(hex::encode(keccak(&payload)), signing_hash_hex);
    assert_eq!(signing_hash(&payload).0, keccak(&payload));

    let (sig, _) = k256_sign(&anvil_key(), &payload);
    let (r, s) = rs(&sig);
    let signed = attach_signature(&payload, r, s, addr(ANVIL_ADDR)).unwrap();
    assert_eq!(hex::encode(&signed.raw), raw_hex);
    assert_eq!(hex::encode(signed.hash), hash_hex);
    assert_eq!(hex::encode(keccak(&signed.raw)), hash_hex);
    assert_eq!(signed.from, addr(ANVIL_ADDR));

    let (decoded, from, hash) = decode_signed(&hex::decode(raw_hex).unwrap()).unwrap();
    assert_eq!(&decoded, t);
    assert_eq!(from, addr(ANVIL_ADDR));
    assert_eq!(hex::encode(hash), hash_hex);
}

#[test]
fn native_transfer_matches_eth_account() {
    check_against_eth_account(
        &native_transfer(),
        NATIVE_SIGNING_HASH,
        NATIVE_RAW,
        NATIVE_TX_HASH,
    );
}

#[test]
fn erc20_transfer_matches_eth_account() {
    check_against_eth_account(
        &erc20_transfer(),
        ERC20_SIGNING_HASH,
        ERC20_RAW,
        ERC20_TX_HASH,
    );
}

#[test]
fn k256_recovery_with_reported_parity_gives_the_wallet() {
    let key = anvil_key();
    assert_eq!(independent_address(key.verifying_key()), addr(ANVIL_ADDR));
    for t in [native_transfer(), erc20_transfer()] {
        let payload = unsigned_payload(&t);
        let (sig, _) = k256_sign(&key, &payload);
        let (r, s) = rs(&sig);
        let signed = attach_signature(&payload, r, s, addr(ANVIL_ADDR)).unwrap();
        let recid = RecoveryId::new(signed.y_parity, false);
        let recovered = VerifyingKey::recover_from_prehash(&keccak(&payload), &sig, recid).unwrap();
        assert_eq!(independent_address(&recovered), addr(ANVIL_ADDR));
        // The opposite parity recovers someone else.
        let wrong = RecoveryId::new(!signed.y_parity, false);
        let other = VerifyingKey::recover_from_prehash(&keccak(&payload), &sig, wrong).unwrap();
        assert_ne!(independent_address(&other), addr(ANVIL_ADDR));
    }
}

#[test]
fn high_s_is_normalized_and_still_recovers() {
    let payload = unsigned_payload(&native_transfer());
    let (sig, _) = k256_sign(&anvil_key(), &payload);
    assert!(sig.normalize_s().is_none(), "k256 signs low-s");
    let (r, s) = rs(&sig);
    let high_s: k256::Scalar = -*sig.s().as_ref();
    let high_s: [u8; 32] = high_s.to_bytes().into();
    assert_ne!(high_s, s);
    let low = attach_signature(&payload, r, s, addr(ANVIL_ADDR)).unwrap();
    let high = attach_signature(&payload, r, high_s, addr(ANVIL_ADDR)).unwrap();
    assert_eq!(low, high);
    assert_eq!(hex::encode(&high.raw), NATIVE_RAW);
}

#[test]
fn signature_by_another_key_is_refused() {
    let other = SigningKey::from_slice(&hex::decode(OTHER_KEY).unwrap()).unwrap();
    let payload = unsigned_payload(&native_transfer());
    let (sig, _) = k256_sign(&other, &payload);
    let (r, s) = rs(&sig);
    let err = attach_signature(&payload, r, s, addr(ANVIL_ADDR)).unwrap_err();
    match err {
        EvmError::SignatureDoesNotMatchWallet {
            expected,
            recovered,
        } => {
            assert_eq!(expected, addr(ANVIL_ADDR));
            assert!(recovered.contains(&independent_address(other.verifying_key())));
        }
        e => panic!("unexpected {e:?}"),
    }
    // A signature over a different payload is refused too.
    let (sig, _) = k256_sign(&anvil_key(), &unsigned_payload(&erc20_transfer()));
    let (r, s) = rs(&sig);
    assert!(matches!(
        attach_signature(&payload, r, s, addr(ANVIL_ADDR)),
        Err(EvmError::SignatureDoesNotMatchWallet { .. })
    ));
    // Zero or out-of-range scalars.
    assert!(matches!(
        attach_signature(&payload, [0; 32], s, addr(ANVIL_ADDR)),
        Err(EvmError::BadSignature { .. })
    ));
    assert!(matches!(
        attach_signature(&payload, r, [0xff; 32], addr(ANVIL_ADDR)),
        Err(EvmError::BadSignature { .. })
    ));
}

fn payload_of(tx: TxEip1559) -> Vec<u8> {
    tx.encoded_for_signing()
}

fn base_tx() -> TxEip1559 {
    TxEip1559 {
        chain_id: 1,
        nonce: 1,
        gas_limit: 100_000,
        max_fee_per_gas: 10,
        max_priority_fee_per_gas: 1,
        to: TxKind::Call(addr("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48")),
        value: U256::ZERO,
        access_list: Default::default(),
        input: Bytes::new(),
    }
}

fn not_a_transfer(payload: &[u8]) -> String {
    match decode_unsigned(payload) {
        Err(EvmError::NotATransfer { reason }) => reason,
        other => panic!("expected NotATransfer, got {other:?}"),
    }
}

#[test]
fn decode_unsigned_refuses_what_is_not_a_plain_transfer() {
    let good = unsigned_payload(&erc20_transfer());
    assert_eq!(decode_unsigned(&good).unwrap(), erc20_transfer());

    // Wrong type byte (0x01 = EIP-2930, 0xf8 = legacy list).
    for ty in [0x01u8, 0x03, 0xf8] {
        let mut p = good.clone();
        p[0] = ty;
        assert_eq!(
            decode_unsigned(&p),
            Err(EvmError::WrongTxType { found: ty })
        );
    }
    // Trailing bytes.
    let mut p = good.clone();
    p.push(0);
    assert!(matches!(
        decode_unsigned(&p),
        Err(EvmError::TrailingBytes { extra: 1, .. })
    ));
    // Truncated at every length.
    for len in 0..good.len() {
        assert!(
            decode_unsigned(&good[..len]).is_err(),
            "truncated to {len} bytes was accepted"
        );
    }
    // Oversize.
    let mut p = good.clone();
    p.resize(MAX_TX_BYTES + 1, 0);
    assert!(matches!(
        decode_unsigned(&p),
        Err(EvmError::BadLength { len, .. }) if len == MAX_TX_BYTES + 1
    ));
    // approve(spender, amount): selector 0x095ea7b3.
    let mut approve = hex::decode("095ea7b3").unwrap();
    approve.extend_from_slice(&[0u8; 12]);
    approve.extend_from_slice(addr(ANVIL_ADDR).as_slice());
    approve.extend_from_slice(&[0xffu8; 32]);
    let reason = not_a_transfer(&payload_of(TxEip1559 {
        input: approve.into(),
        ..base_tx()
    }));
    assert!(reason.contains("approve"), "{reason}");
    // Contract creation.
    let reason = not_a_transfer(&payload_of(TxEip1559 {
        to: TxKind::Create,
        input: vec![0x60, 0x00].into(),
        ..base_tx()
    }));
    assert!(reason.contains("creates a contract"), "{reason}");
    // Value and calldata together.
    let tx = TxEip1559 {
        value: U256::from(1),
        ..base_tx()
    };
    let mut calldata = hex::decode("a9059cbb").unwrap();
    calldata.extend_from_slice(&[0u8; 12]);
    calldata.extend_from_slice(addr(ANVIL_ADDR).as_slice());
    calldata.extend_from_slice(&U256::from(5).to_be_bytes::<32>());
    let reason = not_a_transfer(&payload_of(TxEip1559 {
        input: calldata.clone().into(),
        ..tx
    }));
    assert!(reason.contains("both value"), "{reason}");
    // transfer calldata with an extra word.
    let mut long = calldata.clone();
    long.extend_from_slice(&[0u8; 32]);
    let reason = not_a_transfer(&payload_of(TxEip1559 {
        input: long.into(),
        ..base_tx()
    }));
    assert!(reason.contains("not 68"), "{reason}");
    // Dirty address padding in transfer calldata.
    let mut dirty = calldata.clone();
    dirty[4] = 1;
    not_a_transfer(&payload_of(TxEip1559 {
        input: dirty.into(),
        ..base_tx()
    }));
    // A non-empty access list.
    let mut with_list = base_tx();
    with_list.input = calldata.into();
    with_list.access_list =
        alloy_eips::eip2930::AccessList(vec![alloy_eips::eip2930::AccessListItem {
            address: addr(ANVIL_ADDR),
            storage_keys: vec![B256::ZERO],
        }]);
    let reason = not_a_transfer(&payload_of(with_list));
    assert!(reason.contains("access list"), "{reason}");
    // Empty.
    assert!(matches!(
        decode_unsigned(&[]),
        Err(EvmError::BadLength { len: 0, .. })
    ));
}

#[test]
fn decode_signed_refuses_other_types_and_garbage() {
    let raw = hex::decode(NATIVE_RAW).unwrap();
    let mut legacy = raw.clone();
    legacy[0] = 0xf8;
    assert!(matches!(
        decode_signed(&legacy),
        Err(EvmError::WrongTxType { found: 0xf8 })
    ));
    let mut trailing = raw.clone();
    trailing.push(1);
    assert!(matches!(
        decode_signed(&trailing),
        Err(EvmError::TrailingBytes { .. })
    ));
    assert!(decode_signed(&raw[..raw.len() - 1]).is_err());
    // An unsigned payload is not a signed transaction.
    assert!(decode_signed(&unsigned_payload(&native_transfer())).is_err());
}

#[test]
fn parse_address_accepts_and_refuses() {
    let lower = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
    let upper = "0xF39FD6E51AAD88F6F4CE6AB8827279CFFFB92266";
    let a = parse_address("to", ANVIL_ADDR).unwrap();
    assert_eq!(parse_address("to", lower).unwrap(), a);
    assert_eq!(parse_address("to", upper).unwrap(), a);
    assert_eq!(
        a.as_slice(),
        &hex::decode("f39fd6e51aad88f6f4ce6ab8827279cfffb92266").unwrap()[..]
    );
    // One letter's case flipped.
    let bad = "0xf39fd6e51aad88F6F4ce6aB8827279cffFb92266";
    let err = parse_address("to", bad).unwrap_err();
    assert!(
        matches!(&err, EvmError::BadChecksum { field, .. } if field == "to"),
        "{err:?}"
    );
    assert!(err.to_string().contains("to"));
    // A Solana address (the System Program's and a wallet).
    for sol in [
        "11111111111111111111111111111111",
        "9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM",
    ] {
        assert!(matches!(
            parse_address("to", sol),
            Err(EvmError::WrongFamily { .. })
        ));
    }
    for bad in [
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb9226", // 39 digits
        "0xf39fd6e51aad88f6f4ce6ab8827279cfffb922660", // 41 digits
        "f39fd6e51aad88f6f4ce6ab8827279cfffb92266",  // no 0x
        "0xg39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        " 0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "",
        "0x",
    ] {
        assert!(
            matches!(parse_address("to", bad), Err(EvmError::Malformed { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn address_of_public_key_compressed_and_uncompressed() {
    let key = anvil_key();
    let vk = key.verifying_key();
    let compressed = vk.to_encoded_point(true);
    let uncompressed = vk.to_encoded_point(false);
    assert_eq!(
        address_of_public_key(compressed.as_bytes()).unwrap(),
        addr(ANVIL_ADDR)
    );
    assert_eq!(
        address_of_public_key(uncompressed.as_bytes()).unwrap(),
        addr(ANVIL_ADDR)
    );
    assert!(address_of_public_key(&[2u8; 32]).is_err());
    assert!(address_of_public_key(&[5u8; 33]).is_err());
    assert!(address_of_public_key(&[]).is_err());
}

#[test]
fn balance_of_calldata_and_return() {
    let owner = addr(ANVIL_ADDR);
    let data = erc20_balance_of_calldata(owner);
    assert_eq!(&data[..4], &keccak(b"balanceOf(address)")[..4]);
    assert_eq!(data.len(), 36);
    assert_eq!(&data[4..16], &[0u8; 12]);
    assert_eq!(&data[16..], owner.as_slice());
    let mut ret = [0u8; 32];
    ret[31] = 0x2a;
    ret[30] = 0x01;
    assert_eq!(decode_uint256_return(&ret).unwrap(), U256::from(0x12a));
    assert!(decode_uint256_return(&ret[..31]).is_err());
    assert!(decode_uint256_return(&[0u8; 64]).is_err());
}

#[test]
fn fee_cap_saturates() {
    let mut t = native_transfer();
    assert_eq!(t.fee_cap(), 2_000_000_000 * 21_000);
    t.max_fee_per_gas = u128::MAX / 2;
    assert_eq!(t.fee_cap(), u128::MAX);
}

#[test]
fn transfer_serde_round_trip() {
    let t = erc20_transfer();
    let json = serde_json::to_string(&t).unwrap();
    assert_eq!(serde_json::from_str::<Transfer>(&json).unwrap(), t);
}

fn nonzero_address() -> impl Strategy<Value = Address> {
    any::<[u8; 20]>()
        .prop_filter("nonzero", |b| b != &[0u8; 20])
        .prop_map(Address::from)
}

fn any_transfer() -> impl Strategy<Value = Transfer> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u128>(),
        any::<u128>(),
        nonzero_address(),
        any::<[u8; 32]>(),
        proptest::option::of(nonzero_address()),
    )
        .prop_map(
            |(chain_id, nonce, gas_limit, fee, prio, to, amount, token)| Transfer {
                chain_id,
                nonce,
                gas_limit,
                max_fee_per_gas: fee,
                max_priority_fee_per_gas: prio,
                to,
                amount: U256::from_be_bytes(amount),
                token,
            },
        )
}

proptest! {
    #[test]
    fn unsigned_round_trip(t in any_transfer()) {
        let payload = unsigned_payload(&t);
        prop_assert_eq!(payload[0], 0x02);
        prop_assert_eq!(decode_unsigned(&payload).unwrap(), t);
    }

    #[test]
    fn sign_attach_decode_round_trip(t in any_transfer(), seed in any::<[u8; 32]>()) {
        let Ok(key) = SigningKey::from_slice(&seed) else { return Ok(()); };
        let from = independent_address(key.verifying_key());
        let payload = unsigned_payload(&t);
        let (sig, _) = k256_sign(&key, &payload);
        let (r, s) = rs(&sig);
        let signed = attach_signature(&payload, r, s, from).unwrap();
        prop_assert_eq!(signed.hash.0, keccak(&signed.raw));
        let (back, back_from, hash) = decode_signed(&signed.raw).unwrap();
        prop_assert_eq!(back, t);
        prop_assert_eq!(back_from, from);
        prop_assert_eq!(hash, signed.hash);
    }
}
