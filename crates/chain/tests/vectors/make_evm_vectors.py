#!/usr/bin/env python3
"""Makes the expected EVM vectors embedded in crates/chain/tests/evm.rs.

Independent of alloy: eth-account (Python) builds, hashes and signs the same
EIP-1559 transfers with anvil's first dev key, and the ERC-20 calldata is put
together by hand from the keccak selector of transfer(address,uint256).

    python3 -m venv /tmp/ethvenv && /tmp/ethvenv/bin/pip install eth-account
    /tmp/ethvenv/bin/python crates/chain/tests/vectors/make_evm_vectors.py
"""
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak

KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def erc20_transfer(to: str, amount: int) -> str:
    selector = keccak(text="transfer(address,uint256)")[:4]
    body = bytes(12) + bytes.fromhex(to[2:]) + amount.to_bytes(32, "big")
    return "0x" + (selector + body).hex()


VECTORS = {
    "NATIVE": {
        "type": 2,
        "chainId": 8453,
        "nonce": 7,
        "gas": 21000,
        "maxFeePerGas": 2_000_000_000,
        "maxPriorityFeePerGas": 1_000_000,
        "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "value": 100_000_000_000_000_000,
        "data": "0x",
        "accessList": [],
    },
    "ERC20": {
        "type": 2,
        "chainId": 1,
        "nonce": 42,
        "gas": 100_000,
        "maxFeePerGas": 30_000_000_000,
        "maxPriorityFeePerGas": 1_000_000_000,
        # USDC on Ethereum; the token recipient is anvil's third dev account.
        "to": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "value": 0,
        "data": erc20_transfer("0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC", 1_234_567),
        "accessList": [],
    },
}

acct = Account.from_key(KEY)
print(f"// from {acct.address}")
for name, tx in VECTORS.items():
    typed = TypedTransaction.from_dict(tx)
    signed = acct.sign_transaction(tx)
    print(f"// {name}: {tx}")
    print(f'const {name}_SIGNING_HASH: &str = "{typed.hash().hex()}";')
    print(f'const {name}_RAW: &str = "{signed.raw_transaction.hex()}";')
    print(f'const {name}_TX_HASH: &str = "{signed.hash.hex()}";')
