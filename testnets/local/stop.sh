#!/usr/bin/env bash
# Stops the processes started by testnets/local/start.sh (state is kept).
set -euo pipefail
cd "$(dirname "$0")/run" 2>/dev/null || exit 0
for f in *.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
done
echo "local testnet stopped"
