#!/usr/bin/env bash
# Smoke test of the committed KeyfoldTestToken.json on a real chain: starts its
# own anvil (testnets/.tools/bin/anvil, chain id 31337) on a free loopback port,
# deploys the bytecode with ABI-encoded constructor arguments from anvil's first
# dev account (unlocked: eth_sendTransaction needs no key), then checks name,
# symbol, decimals, totalSupply, a transfer (balances and the Transfer log), a
# transfer beyond the balance (reverts with InsufficientBalance), and
# approve/transferFrom. JSON-RPC over curl, ABI coding in python3 (standard
# library only). Stops its anvil on exit. Extra arguments go to anvil
# (e.g. --hardfork cancun). Nothing leaves 127.0.0.1.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
anvil="$here/../.tools/bin/anvil"
artifact="$here/KeyfoldTestToken.json"
if [ ! -x "$anvil" ]; then
    echo "keyfold: anvil not found in testnets/.tools; run bash testnets/ensure-deps.sh first" >&2
    exit 1
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log="$(mktemp)"
"$anvil" --host 127.0.0.1 --port "$port" --chain-id 31337 --silent "$@" >"$log" 2>&1 &
anvil_pid=$!
trap 'kill "$anvil_pid" 2>/dev/null || true; wait "$anvil_pid" 2>/dev/null || true; rm -f "$log"' EXIT

KEYFOLD_SMOKE_URL="http://127.0.0.1:$port" KEYFOLD_SMOKE_PID="$anvil_pid" \
    KEYFOLD_SMOKE_LOG="$log" python3 - "$artifact" <<'EOF'
import json, os, subprocess, sys, time

URL = os.environ["KEYFOLD_SMOKE_URL"]
artifact = json.load(open(sys.argv[1]))
ids = iter(range(1, 1 << 30))

def rpc(method, *params):
    body = json.dumps({"jsonrpc": "2.0", "id": next(ids), "method": method, "params": list(params)})
    # --noproxy: a proxy from the environment must never see this traffic.
    r = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "10",
         "-H", "content-type: application/json", "--data-binary", "@-", URL],
        input=body, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{method}: curl failed: {r.stderr.strip()}")
    return json.loads(r.stdout)

def call(method, *params):
    resp = rpc(method, *params)
    if "error" in resp:
        raise RuntimeError(f"{method}: {resp['error']}")
    return resp["result"]

def word(n): return n.to_bytes(32, "big")
def addr_word(a): return word(int(a, 16))
def string_tail(s):
    b = s.encode()
    return word(len(b)) + b + b"\0" * (-len(b) % 32)
def keccak_hex(text):  # anvil's web3_sha3: keccak-256 without a non-stdlib package
    return call("web3_sha3", "0x" + text.encode().hex())
def selector(sig): return bytes.fromhex(keccak_hex(sig)[2:10])

# Wait for anvil (a few seconds at most).
deadline = time.time() + 20
while True:
    try:
        chain_id = int(call("eth_chainId"), 16)
        break
    except Exception:
        try:
            os.kill(int(os.environ["KEYFOLD_SMOKE_PID"]), 0)
        except OSError:
            sys.exit("anvil exited:\n" + open(os.environ["KEYFOLD_SMOKE_LOG"]).read())
        if time.time() > deadline:
            sys.exit("anvil did not answer within 20 s")
        time.sleep(0.1)
print(f"anvil {call('web3_clientVersion')} on {URL}, chain id {chain_id}")
assert chain_id == 31337

A = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # dev account 0: deployer, holder
B = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # dev account 1
C = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # dev account 2: spender
accounts = [a.lower() for a in call("eth_accounts")]
assert {A.lower(), B.lower(), C.lower()} <= set(accounts), accounts

# Well-known ERC-20 selectors and topic, checked against keccak from anvil.
assert selector("transfer(address,uint256)").hex() == "a9059cbb"
assert selector("balanceOf(address)").hex() == "70a08231"
TRANSFER = keccak_hex("Transfer(address,address,uint256)")
assert TRANSFER == "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
APPROVAL = keccak_hex("Approval(address,address,uint256)")

def receipt(tx):
    for _ in range(100):
        r = call("eth_getTransactionReceipt", tx)
        if r is not None:
            return r
        time.sleep(0.05)
    raise RuntimeError(f"no receipt for {tx}")

def send(frm, to, data):
    tx = {"from": frm, "data": "0x" + data.hex()}
    if to is not None:
        tx["to"] = to
    r = receipt(call("eth_sendTransaction", tx))
    assert r["status"] == "0x1", r
    return r

def read(to, data):
    return bytes.fromhex(call("eth_call", {"to": to, "data": "0x" + data.hex()}, "latest")[2:])

def uint(b): return int.from_bytes(b[:32], "big")
def string(b):
    off = uint(b); n = uint(b[off:]); return b[off + 32: off + 32 + n].decode()

# Deploy: creation code + abi.encode(name, symbol, decimals, holder, supply).
NAME, SYMBOL, DECIMALS = "Keyfold Test Token", "KFT", 18
SUPPLY = 1_000_000 * 10**DECIMALS
name_tail, symbol_tail = string_tail(NAME), string_tail(SYMBOL)
args = (word(5 * 32) + word(5 * 32 + len(name_tail)) + word(DECIMALS) + addr_word(A)
        + word(SUPPLY) + name_tail + symbol_tail)
code = bytes.fromhex(artifact["bytecode"][2:])
r = send(A, None, code + args)
token = r["contractAddress"]
runtime = call("eth_getCode", token, "latest")
print(f"deployed {artifact['contract']} ({artifact['compiler']}) at {token}: "
      f"creation code {len(code)} bytes, runtime {len(runtime) // 2 - 1} bytes, gas {int(r['gasUsed'], 16)}")
mint = [l for l in r["logs"] if l["topics"][0] == TRANSFER]
assert len(mint) == 1 and int(mint[0]["topics"][1], 16) == 0 and int(mint[0]["topics"][2], 16) == int(A, 16)
assert int(mint[0]["data"], 16) == SUPPLY

assert string(read(token, selector("name()"))) == NAME
assert string(read(token, selector("symbol()"))) == SYMBOL
assert uint(read(token, selector("decimals()"))) == DECIMALS
assert uint(read(token, selector("totalSupply()"))) == SUPPLY
def balance(who): return uint(read(token, selector("balanceOf(address)") + addr_word(who)))
assert balance(A) == SUPPLY and balance(B) == 0
print(f"name {NAME!r}, symbol {SYMBOL!r}, decimals {DECIMALS}, totalSupply {SUPPLY}, balanceOf(A) {balance(A)}")

# transfer A -> B
AMOUNT = 1234_5 * 10**(DECIMALS - 1)  # 1234.5 tokens
r = send(A, token, selector("transfer(address,uint256)") + addr_word(B) + word(AMOUNT))
logs = [l for l in r["logs"] if l["address"].lower() == token.lower()]
assert len(logs) == 1, logs
l = logs[0]
assert l["topics"] == [TRANSFER, "0x" + addr_word(A).hex(), "0x" + addr_word(B).hex()], l
assert int(l["data"], 16) == AMOUNT
assert balance(A) == SUPPLY - AMOUNT and balance(B) == AMOUNT
print(f"transfer A->B {AMOUNT}: gas {int(r['gasUsed'], 16)}, Transfer log ok, "
      f"balanceOf(A) {balance(A)}, balanceOf(B) {balance(B)}")

# transfer beyond the balance reverts with InsufficientBalance(B, balance, needed)
resp = rpc("eth_call", {"from": B, "to": token, "data": "0x" + (
    selector("transfer(address,uint256)") + addr_word(A) + word(AMOUNT + 1)).hex()}, "latest")
err = resp.get("error") or {}
data = err.get("data")
data = data if isinstance(data, str) else (data or {}).get("data", "")
want = "0x" + (selector("InsufficientBalance(address,uint256,uint256)") + addr_word(B)
               + word(AMOUNT) + word(AMOUNT + 1)).hex()
assert data == want, resp
print("transfer beyond balance: reverts with InsufficientBalance(B, balance, needed)")

# approve B -> C, then C moves part of it from B to A
ALLOW = 500 * 10**DECIMALS
r = send(B, token, selector("approve(address,uint256)") + addr_word(C) + word(ALLOW))
assert [x["topics"][0] for x in r["logs"]] == [APPROVAL]
def allowance(o, s): return uint(read(token, selector("allowance(address,address)") + addr_word(o) + addr_word(s)))
assert allowance(B, C) == ALLOW
resp = rpc("eth_call", {"from": C, "to": token, "data": "0x" + (
    selector("transferFrom(address,address,uint256)") + addr_word(B) + addr_word(A) + word(ALLOW + 1)).hex()}, "latest")
assert "error" in resp, resp
r = send(C, token, selector("transferFrom(address,address,uint256)") + addr_word(B) + addr_word(A) + word(200 * 10**DECIMALS))
assert [x["topics"][0] for x in r["logs"]] == [TRANSFER]
assert allowance(B, C) == ALLOW - 200 * 10**DECIMALS
assert balance(B) == AMOUNT - 200 * 10**DECIMALS and balance(A) == SUPPLY - AMOUNT + 200 * 10**DECIMALS
assert uint(read(token, selector("totalSupply()"))) == SUPPLY
print(f"approve B->C {ALLOW}, transferFrom B->A by C {200 * 10**DECIMALS}: allowance {allowance(B, C)}, "
      f"balanceOf(A) {balance(A)}, balanceOf(B) {balance(B)}; over-allowance reverts")
print("smoke: KeyfoldTestToken ok")
EOF
