//! `chain_rpc` against a real anvil (found by `find_anvil`: `$KEYFOLD_ANVIL`
//! or the one `testnets/ensure-deps.sh` installs) and against tiny local
//! HTTP servers for what a real node does not do (huge bodies, hangs).
//!
//! Tests that leave global chain state alone share one anvil; each that
//! switches automine off or reorgs gets its own. Every test builds its own
//! `EvmRpc`: a client's connection pool belongs to one tokio runtime, and
//! each `#[tokio::test]` has its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{hex, Address, Bytes, Signature, TxKind, B256, U256};
use k256::ecdsa::SigningKey;
use keyfold_coordinator::chain_rpc::{
    find_anvil, Anvil, AnvilError, EvmRpc, RpcError, TxSeen, MAX_RESPONSE_BYTES,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;

const CHAIN_ID: u64 = 31337;
/// anvil's first dev account's well-known key (public test key).
const DEV_KEY_0: [u8; 32] =
    hex!("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80");
const TIMEOUT: Duration = Duration::from_secs(10);
const ONE_ETHER: u128 = 1_000_000_000_000_000_000;

/// The JSON-RPC code anvil 1.7.1 answers `eth_sendRawTransaction` with for
/// every rejection measured here, whatever the cause: the same bytes again
/// while pending ("transaction already imported") or once mined ("nonce too
/// low"), another transaction with a used nonce ("nonce too low"), and too
/// little balance ("Insufficient funds for gas * price + value"). The code
/// does not tell them apart: follow up with `transaction_by_hash`/`nonce`.
const ANVIL_CODE_TX_REJECTED: i64 = -32003;

fn anvil_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let bin = find_anvil(Some(root)).unwrap_or_else(|| {
        panic!(
            "anvil not found: run testnets/ensure-deps.sh (it installs anvil under \
             testnets/.tools), or set KEYFOLD_ANVIL to an anvil binary"
        )
    });
    assert!(
        bin.is_file(),
        "anvil not found at {} (from KEYFOLD_ANVIL?): run testnets/ensure-deps.sh",
        bin.display()
    );
    bin
}

/// The anvil of the tests that do not change global chain state. A static
/// is never dropped: the watchdog kills it when the test process ends.
async fn shared() -> &'static Anvil {
    static SHARED: OnceCell<Anvil> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            Anvil::spawn(&anvil_bin(), CHAIN_ID, None, None)
                .await
                .expect("spawn the shared anvil")
        })
        .await
}

async fn own() -> Anvil {
    Anvil::spawn(&anvil_bin(), CHAIN_ID, None, None)
        .await
        .expect("spawn anvil")
}

fn address_of(key: &SigningKey) -> Address {
    let point = key.verifying_key().to_encoded_point(false);
    Address::from_raw_public_key(&point.as_bytes()[1..])
}

/// Signs an EIP-1559 transfer: its EIP-2718 bytes and hash.
fn sign_transfer(
    key: &SigningKey,
    nonce: u64,
    to: Address,
    value: u128,
    fees: (u128, u128),
) -> (Vec<u8>, B256) {
    let tx = TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: fees.0,
        max_priority_fee_per_gas: fees.1,
        to: TxKind::Call(to),
        value: U256::from(value),
        input: Bytes::new(),
        ..Default::default()
    };
    let (sig, recid) = key
        .sign_prehash_recoverable(tx.signature_hash().as_slice())
        .expect("sign");
    let sig_bytes = sig.to_bytes();
    let sig = Signature::from_scalars_and_parity(
        B256::from_slice(&sig_bytes[..32]),
        B256::from_slice(&sig_bytes[32..]),
        recid.is_y_odd(),
    );
    let envelope = TxEnvelope::from(tx.into_signed(sig));
    (envelope.encoded_2718(), *envelope.tx_hash())
}

/// (max fee, priority fee) that the next block accepts.
async fn fees(rpc: &EvmRpc) -> (u128, u128) {
    let f = rpc.fee_estimate().await.unwrap();
    (
        2 * f.base_fee_per_gas + f.max_priority_fee_per_gas,
        f.max_priority_fee_per_gas,
    )
}

/// `transaction_by_hash` once it shows the transaction mined. anvil 1.7.1
/// (automine) may serve the receipt while `eth_getTransactionByHash` still
/// answers from its pool, with `blockNumber: null`, for a moment: a
/// receipt, not a transaction's block number, proves inclusion.
async fn seen_mined(rpc: &EvmRpc, hash: B256) -> TxSeen {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let seen = rpc.transaction_by_hash(hash).await.unwrap().expect("known");
        if seen.block_number.is_some() || std::time::Instant::now() > deadline {
            return seen;
        }
        eprintln!("{hash}: receipt, but transaction still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rpc_code(r: Result<B256, RpcError>) -> i64 {
    match r {
        Err(RpcError::Rpc { code, message, .. }) => {
            eprintln!("anvil answered {code}: {message}");
            code
        }
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

#[tokio::test]
async fn chain_id_block_number_and_block_hash() {
    let anvil = shared().await;
    let rpc = anvil.rpc();
    assert_eq!(anvil.chain_id(), CHAIN_ID);
    assert_eq!(rpc.chain_id().await.unwrap(), CHAIN_ID);
    let n = rpc.block_number().await.unwrap();
    let genesis = rpc.block_hash(0).await.unwrap();
    assert!(genesis.is_some_and(|h| h != B256::ZERO));
    assert_eq!(rpc.block_hash(n + 1_000_000).await.unwrap(), None);
    assert_eq!(rpc.endpoints(), vec![anvil.url().to_string()]);
}

#[tokio::test]
async fn fee_estimate_reads_base_fee_and_priority_fee() {
    let rpc = shared().await.rpc();
    let f = rpc.fee_estimate().await.unwrap();
    // anvil starts at a 1 gwei base fee (falling as empty blocks are mined)
    // and suggests a 1 gwei priority fee.
    assert!(
        f.base_fee_per_gas > 0 && f.base_fee_per_gas <= 1_000_000_000,
        "{f:?}"
    );
    assert_eq!(f.max_priority_fee_per_gas, 1_000_000_000, "{f:?}");
}

#[tokio::test]
async fn dev_account_value_transfer_and_receipt() {
    let rpc = shared().await.rpc();
    let accounts = rpc.dev_accounts().await.unwrap();
    assert_eq!(accounts.len(), 10);
    let from = accounts[1];
    let to = Address::repeat_byte(0x51);
    assert_eq!(rpc.balance(to).await.unwrap(), U256::ZERO);

    let hash = rpc
        .send_from_dev(from, Some(to), U256::from(12_345u64), vec![])
        .await
        .unwrap();
    let r = rpc
        .wait_receipt(hash, TIMEOUT)
        .await
        .unwrap()
        .expect("mined");
    assert!(r.success);
    assert_eq!(r.gas_used, 21_000);
    assert!(r.effective_gas_price > 0);
    assert_eq!(
        rpc.block_hash(r.block_number).await.unwrap(),
        Some(r.block_hash)
    );
    assert_eq!(rpc.balance(to).await.unwrap(), U256::from(12_345u64));
    let seen = seen_mined(&rpc, hash).await;
    assert_eq!(seen.from, from);
    assert_eq!(seen.block_number, Some(r.block_number));
    assert_eq!(
        rpc.transaction_receipt(B256::repeat_byte(7)).await.unwrap(),
        None
    );
    assert_eq!(
        rpc.transaction_by_hash(B256::repeat_byte(7)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn deploy_from_dev_then_eth_call() {
    let rpc = shared().await.rpc();
    let from = rpc.dev_accounts().await.unwrap()[3];
    // Init code copying out a runtime that returns the word 42:
    // PUSH1 42 PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN.
    let init = hex!("600a600c600039600a6000f3602a60005260206000f3").to_vec();
    let hash = rpc
        .send_from_dev(from, None, U256::ZERO, init)
        .await
        .unwrap();
    let r = rpc
        .wait_receipt(hash, TIMEOUT)
        .await
        .unwrap()
        .expect("mined");
    assert!(r.success);
    let nonce = rpc.transaction_by_hash(hash).await.unwrap().unwrap().nonce;
    let contract = from.create(nonce);
    let out = rpc.call(contract, vec![]).await.unwrap();
    assert_eq!(out, U256::from(42u64).to_be_bytes::<32>().to_vec());
    // A call to an account without code returns nothing.
    assert!(rpc
        .call(Address::repeat_byte(0x99), vec![1, 2])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn raw_signed_transaction_is_broadcast_and_seen_once() {
    let rpc = shared().await.rpc();
    let key = SigningKey::from_slice(&DEV_KEY_0).unwrap();
    let from = address_of(&key);
    assert_eq!(from, rpc.dev_accounts().await.unwrap()[0]);
    let to = Address::repeat_byte(0x52);
    let nonce = rpc.nonce(from, true).await.unwrap();
    let fees = fees(&rpc).await;

    let (raw, hash) = sign_transfer(&key, nonce, to, 1_000, fees);
    assert_eq!(rpc.send_raw_transaction(&raw).await.unwrap(), hash);
    let r = rpc
        .wait_receipt(hash, TIMEOUT)
        .await
        .unwrap()
        .expect("mined");
    assert!(r.success);
    let seen = seen_mined(&rpc, hash).await;
    assert_eq!(seen.from, from);
    assert_eq!(seen.nonce, nonce);
    assert_eq!(seen.block_number, Some(r.block_number));

    // The same bytes again, once mined: refused, no second transaction.
    let code = rpc_code(rpc.send_raw_transaction(&raw).await);
    assert_eq!(code, ANVIL_CODE_TX_REJECTED);
    assert_eq!(rpc.nonce(from, true).await.unwrap(), nonce + 1);
    assert_eq!(rpc.balance(to).await.unwrap(), U256::from(1_000u64));

    // Another transaction with the used nonce.
    let (raw, _) = sign_transfer(&key, nonce, to, 2_000, fees);
    let code = rpc_code(rpc.send_raw_transaction(&raw).await);
    assert_eq!(code, ANVIL_CODE_TX_REJECTED);

    // An account without the funds.
    let poor = SigningKey::from_slice(&[7u8; 32]).unwrap();
    assert_eq!(rpc.balance(address_of(&poor)).await.unwrap(), U256::ZERO);
    let (raw, _) = sign_transfer(&poor, 0, to, ONE_ETHER, fees);
    let code = rpc_code(rpc.send_raw_transaction(&raw).await);
    assert_eq!(code, ANVIL_CODE_TX_REJECTED);
    assert_eq!(rpc.balance(to).await.unwrap(), U256::from(1_000u64));
}

#[tokio::test]
async fn pending_nonce_and_duplicate_raw_with_automine_off() {
    let anvil = own().await;
    let rpc = anvil.rpc();
    rpc.set_automine(false).await.unwrap();
    let key = SigningKey::from_slice(&DEV_KEY_0).unwrap();
    let from = address_of(&key);
    let to = Address::repeat_byte(0x53);
    let fees = fees(&rpc).await;

    let h1 = rpc
        .send_from_dev(from, Some(to), U256::from(1u64), vec![])
        .await
        .unwrap();
    let (raw, h2) = sign_transfer(&key, 1, to, 2, fees);
    assert_eq!(rpc.send_raw_transaction(&raw).await.unwrap(), h2);
    assert_eq!(rpc.nonce(from, false).await.unwrap(), 0);
    assert_eq!(rpc.nonce(from, true).await.unwrap(), 2);
    let seen = rpc.transaction_by_hash(h2).await.unwrap().expect("pending");
    assert_eq!((seen.block_number, seen.nonce), (None, 1));
    assert_eq!(rpc.transaction_receipt(h2).await.unwrap(), None);

    // The same bytes while pending: refused, still one transaction.
    let code = rpc_code(rpc.send_raw_transaction(&raw).await);
    assert_eq!(code, ANVIL_CODE_TX_REJECTED);
    assert_eq!(rpc.nonce(from, true).await.unwrap(), 2);

    let before = rpc.block_number().await.unwrap();
    rpc.mine(1).await.unwrap();
    assert_eq!(rpc.block_number().await.unwrap(), before + 1);
    assert_eq!(rpc.nonce(from, false).await.unwrap(), 2);
    let r1 = rpc.transaction_receipt(h1).await.unwrap().expect("mined");
    let r2 = rpc.transaction_receipt(h2).await.unwrap().expect("mined");
    assert_eq!(r1.block_number, before + 1);
    assert_eq!(r2.block_hash, r1.block_hash);
    assert_eq!(rpc.balance(to).await.unwrap(), U256::from(3u64));
    anvil.stop();
}

#[tokio::test]
async fn drop_transaction_removes_a_pending_transaction() {
    let anvil = own().await;
    let rpc = anvil.rpc();
    rpc.set_automine(false).await.unwrap();
    let from = rpc.dev_accounts().await.unwrap()[0];
    let hash = rpc
        .send_from_dev(
            from,
            Some(Address::repeat_byte(0x54)),
            U256::from(5u64),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rpc.nonce(from, true).await.unwrap(), 1);
    assert!(rpc.transaction_by_hash(hash).await.unwrap().is_some());

    assert!(rpc.drop_transaction(hash).await.unwrap());
    assert_eq!(rpc.transaction_by_hash(hash).await.unwrap(), None);
    assert_eq!(rpc.nonce(from, true).await.unwrap(), 0);
    rpc.mine(1).await.unwrap();
    assert_eq!(rpc.transaction_receipt(hash).await.unwrap(), None);
    assert_eq!(
        rpc.balance(Address::repeat_byte(0x54)).await.unwrap(),
        U256::ZERO
    );
    assert!(!rpc.drop_transaction(hash).await.unwrap());
}

/// What anvil 1.7.1 does with `anvil_reorg(depth, [])`: it replaces the
/// last `depth` blocks with empty ones (same height) and the transactions
/// of the replaced blocks are gone: no receipt, unknown by hash, not back
/// in the pool (the sender's nonce rewinds), never re-mined.
#[tokio::test]
async fn reorg_of_depth_two_drops_a_mined_transaction() {
    let anvil = own().await;
    let rpc = anvil.rpc();
    let from = rpc.dev_accounts().await.unwrap()[0];
    let to = Address::repeat_byte(0x55);
    let hash = rpc
        .send_from_dev(from, Some(to), U256::from(9u64), vec![])
        .await
        .unwrap();
    let r = rpc
        .wait_receipt(hash, TIMEOUT)
        .await
        .unwrap()
        .expect("mined");
    rpc.mine(1).await.unwrap();
    let head = rpc.block_number().await.unwrap();
    assert_eq!(head, r.block_number + 1);
    let snap = rpc.snapshot().await.unwrap();

    rpc.reorg(2).await.unwrap();
    assert_eq!(rpc.block_number().await.unwrap(), head);
    let new_hash = rpc.block_hash(r.block_number).await.unwrap().unwrap();
    assert_ne!(new_hash, r.block_hash, "block replaced");
    assert_eq!(rpc.transaction_receipt(hash).await.unwrap(), None);
    assert_eq!(rpc.transaction_by_hash(hash).await.unwrap(), None);
    assert_eq!(
        rpc.nonce(from, true).await.unwrap(),
        0,
        "not back in the pool"
    );
    assert_eq!(rpc.balance(to).await.unwrap(), U256::ZERO);
    rpc.mine(2).await.unwrap();
    assert_eq!(
        rpc.transaction_receipt(hash).await.unwrap(),
        None,
        "not re-mined"
    );

    // anvil 1.7.1 forgets a snapshot taken before a reorg.
    let err = rpc.revert(snap).await.unwrap_err();
    assert_eq!(err.rpc_code(), Some(-32001), "{err:?}");
}

#[tokio::test]
async fn snapshot_and_revert() {
    let anvil = own().await;
    let rpc = anvil.rpc();
    let from = rpc.dev_accounts().await.unwrap()[0];
    let to = Address::repeat_byte(0x57);
    let head = rpc.block_number().await.unwrap();
    let snap = rpc.snapshot().await.unwrap();
    let hash = rpc
        .send_from_dev(from, Some(to), U256::from(4u64), vec![])
        .await
        .unwrap();
    rpc.wait_receipt(hash, TIMEOUT)
        .await
        .unwrap()
        .expect("mined");
    assert_eq!(rpc.balance(to).await.unwrap(), U256::from(4u64));

    assert!(rpc.revert(snap).await.unwrap());
    assert_eq!(rpc.block_number().await.unwrap(), head);
    assert_eq!(rpc.balance(to).await.unwrap(), U256::ZERO);
    assert_eq!(rpc.transaction_receipt(hash).await.unwrap(), None);
    // A snapshot is used up by its revert.
    let again = rpc.revert(snap).await;
    eprintln!("second revert: {again:?}");
    assert!(matches!(again, Ok(false)), "{again:?}");
}

#[tokio::test]
async fn set_balance_sets_a_balance() {
    let rpc = shared().await.rpc();
    let who = Address::repeat_byte(0x56);
    rpc.set_balance(who, U256::from(777u64)).await.unwrap();
    assert_eq!(rpc.balance(who).await.unwrap(), U256::from(777u64));
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn falls_back_to_the_next_url_on_transport_errors() {
    let anvil = shared().await;
    let dead = format!("http://127.0.0.1:{}/", closed_port());
    let rpc = EvmRpc::new(vec![dead, anvil.url().to_string()], TIMEOUT).unwrap();
    assert_eq!(rpc.chain_id().await.unwrap(), CHAIN_ID);
    // A JSON-RPC error is the node's answer: no fallback, code kept.
    let err = rpc
        .raw_request::<Value>("eth_noSuchMethod", json!([]))
        .await
        .unwrap_err();
    assert_eq!(err.rpc_code(), Some(-32601), "{err:?}");
}

#[tokio::test]
async fn transport_error_when_nothing_listens() {
    let url = format!(
        "http://127.0.0.1:{}/v3/SECRETKEY?apikey=SECRET",
        closed_port()
    );
    let rpc = EvmRpc::new(vec![url], Duration::from_secs(2)).unwrap();
    let err = rpc.chain_id().await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("SECRET"), "URL secrets leak: {shown}");
}

/// How a mock server answers one request.
#[derive(Clone)]
enum Reply {
    /// `{"result": ...}` with the request's id.
    Result(Value),
    /// `{"error": {"code": ...}}`.
    Error(i64),
    /// A `result` string of `len` bytes, with or without Content-Length.
    Big { len: usize, content_length: bool },
    /// Reads the request and never answers.
    Hang,
}

/// A tiny HTTP/1.1 JSON-RPC server on loopback answering by method.
async fn mock(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            tokio::spawn(async move {
                let _ = serve(sock, &*reply).await;
            });
        }
    });
    url
}

async fn serve(
    mut sock: TcpStream,
    reply: &(dyn Fn(&str) -> Reply + Send + Sync),
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let body = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            break buf[end + 4..end + 4 + len].to_vec();
        }
    };
    let req: Value = serde_json::from_slice(&body).unwrap();
    let id = req["id"].clone();
    let method = req["method"].as_str().unwrap_or_default().to_string();
    let (body, content_length) = match reply(&method) {
        Reply::Result(v) => (
            json!({"jsonrpc": "2.0", "id": id, "result": v})
                .to_string()
                .into_bytes(),
            true,
        ),
        Reply::Error(code) => (
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": "mock"}})
                .to_string()
                .into_bytes(),
            true,
        ),
        Reply::Big {
            len,
            content_length,
        } => {
            let v = json!({"jsonrpc": "2.0", "id": id, "result": "a".repeat(len)});
            (v.to_string().into_bytes(), content_length)
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
    };
    let mut head =
        String::from("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n");
    if content_length {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&body).await?;
    sock.shutdown().await
}

#[tokio::test]
async fn huge_bodies_are_refused() {
    for content_length in [true, false] {
        let url = mock(move |_| Reply::Big {
            len: 2 * MAX_RESPONSE_BYTES,
            content_length,
        })
        .await;
        let rpc = EvmRpc::new(vec![url], TIMEOUT).unwrap();
        let err = rpc.raw_request::<String>("x", json!([])).await.unwrap_err();
        assert!(
            matches!(err, RpcError::TooLarge { limit, .. } if limit == MAX_RESPONSE_BYTES),
            "content-length {content_length}: {err:?}"
        );
    }
    // Just under the limit is read in full.
    let len = MAX_RESPONSE_BYTES - 100;
    let url = mock(move |_| Reply::Big {
        len,
        content_length: false,
    })
    .await;
    let rpc = EvmRpc::new(vec![url], TIMEOUT).unwrap();
    assert_eq!(
        rpc.raw_request::<String>("x", json!([]))
            .await
            .unwrap()
            .len(),
        len
    );
}

#[tokio::test]
async fn a_hanging_server_times_out_as_a_transport_error() {
    let url = mock(|_| Reply::Hang).await;
    let rpc = EvmRpc::new(vec![url], Duration::from_millis(500)).unwrap();
    let start = std::time::Instant::now();
    let err = rpc.chain_id().await.unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn fee_estimate_falls_back_to_gas_price() {
    let url = mock(|m| match m {
        "eth_getBlockByNumber" => {
            Reply::Result(json!({"hash": B256::repeat_byte(1), "baseFeePerGas": "0x64"}))
        }
        "eth_maxPriorityFeePerGas" => Reply::Error(-32601),
        "eth_gasPrice" => Reply::Result(json!("0x96")),
        _ => Reply::Error(-32601),
    })
    .await;
    let rpc = EvmRpc::new(vec![url], TIMEOUT).unwrap();
    let f = rpc.fee_estimate().await.unwrap();
    assert_eq!((f.base_fee_per_gas, f.max_priority_fee_per_gas), (100, 50));
}

#[tokio::test]
async fn wrong_shapes_are_bad_responses_and_codes_are_kept() {
    let url = mock(|m| match m {
        "eth_chainId" => Reply::Result(json!({"not": "a quantity"})),
        _ => Reply::Error(3),
    })
    .await;
    let rpc = EvmRpc::new(vec![url], TIMEOUT).unwrap();
    let err = rpc.chain_id().await.unwrap_err();
    assert!(matches!(err, RpcError::BadResponse { .. }), "{err:?}");
    let err = rpc.block_number().await.unwrap_err();
    assert_eq!(err.rpc_code(), Some(3), "{err:?}");
}

#[tokio::test]
async fn spawn_reports_a_taken_port_and_a_missing_binary() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = Anvil::spawn(&anvil_bin(), CHAIN_ID, Some(port), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, AnvilError::PortTaken { port: p, .. } if p == port),
        "{err:?}"
    );
    let err = Anvil::spawn(Path::new("/nonexistent/anvil"), CHAIN_ID, None, None)
        .await
        .unwrap_err();
    assert!(matches!(err, AnvilError::Spawn { .. }), "{err:?}");
}

/// Another anvil of the same chain id on the port would answer the new
/// one's readiness probe: the port is refused up front instead.
#[tokio::test]
async fn spawn_refuses_a_port_another_anvil_of_the_same_chain_holds() {
    let first = Anvil::spawn(&anvil_bin(), CHAIN_ID, None, None)
        .await
        .unwrap();
    let err = Anvil::spawn(&anvil_bin(), CHAIN_ID, Some(first.port()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, AnvilError::PortTaken { .. }), "{err:?}");
    first.stop();
}

#[tokio::test]
async fn spawn_with_a_port_chain_id_and_block_time() {
    let port = closed_port();
    let anvil = Anvil::spawn(&anvil_bin(), 4242, Some(port), Some(1))
        .await
        .unwrap();
    assert_eq!(anvil.url(), format!("http://127.0.0.1:{port}"));
    let rpc = anvil.rpc();
    assert_eq!(rpc.chain_id().await.unwrap(), 4242);
    // Interval mining: blocks come without transactions.
    let start = rpc.block_number().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(rpc.block_number().await.unwrap() > start);
    let pid = anvil.pid();
    anvil.stop();
    assert!(!alive(pid), "stopped anvil {pid} still runs");
    assert!(rpc.chain_id().await.unwrap_err().is_transport());
}

/// Whether `pid` runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

const CHILD_ENV: &str = "KEYFOLD_TEST_ANVIL_CHILD";

/// Run by `anvil_dies_with_its_parent` in a child process: starts an anvil,
/// prints its pid, then waits to be killed.
#[tokio::test]
#[ignore = "helper process of anvil_dies_with_its_parent"]
async fn helper_anvil_in_a_child_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        eprintln!("a helper of anvil_dies_with_its_parent: nothing to do alone");
        return;
    }
    let anvil = own().await;
    println!("ANVIL_PID={}", anvil.pid());
    tokio::time::sleep(Duration::from_secs(60)).await;
}

#[test]
fn anvil_dies_with_its_parent() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_anvil_in_a_child_process",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let pid: u32 = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("ANVIL_PID=")
                .map(|p| p.trim().parse().unwrap())
        })
        .expect("the helper prints its anvil's pid");
    assert!(alive(pid));
    child.kill().unwrap(); // SIGKILL: no destructor runs.
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "anvil {pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
