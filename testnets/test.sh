#!/usr/bin/env bash
# The test suite on a fresh machine: installs what is missing, then runs every
# test of the workspace. Tests use TEST-ONLY pregenerated primes and aux info
# (crates/mpc/tests/fixtures) except the ones about generating them.
# As root, this includes the multi-host testnet in network namespaces
# (crates/cli/tests/netns.rs runs testnets/netns/run.sh with a short load,
# about 1.5 minutes); elsewhere that test prints why it skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash testnets/ensure-deps.sh
# The committed test-token artifact must match a fresh compile (2 s; before the long cargo run).
bash testnets/contracts/build.sh --check
cargo test --workspace --locked "$@"

# The audit log's independent verifier (Python standard library only, no
# Keyfold code) on the sample export of crates/audit/tests/vectors.rs: the
# format in docs/audit-log.md is checked by a second implementation.
dump="$(mktemp -d)"
trap 'rm -rf "$dump"' EXIT
KEYFOLD_AUDIT_DUMP="$dump/export" cargo test -q -p keyfold-audit --test vectors --locked \
    sample_export_snapshot >/dev/null
python3 crates/audit/tools/independent_verify.py "$dump/export" \
    --kept "$dump/export/kept-checkpoint.jsonl"
