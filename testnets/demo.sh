#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds, runs
# `keyfold demo` (2-of-3 keys on secp256k1 and Ed25519, signed and verified).
# Extra arguments go to `keyfold demo` (e.g. --data-dir DIR --out FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
bash testnets/ensure-deps.sh
cargo build --release --locked -p keyfold-cli
exec target/release/keyfold demo "$@"
