#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds, and runs
# `keyfold devnet`: 3 signer processes (each sealing in its own SoftHSM2
# token) and a coordinator on loopback, 2-of-3 keys on secp256k1 and Ed25519,
# a typed transfer signed with each through the policy, verified; then serves
# the API until Ctrl-C. Extra arguments go to `keyfold devnet`
# (e.g. --once --out result.json, --data-dir DIR, --base-port PORT,
# --policy FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash testnets/ensure-deps.sh
cargo build --release --locked -p keyfold-cli
exec target/release/keyfold devnet "$@"
