#!/usr/bin/env bash
# Starts a coordinator and three signer nodes as separate processes on
# loopback, from the configs in this directory. State and logs go to
# testnets/local/run/. Stop with testnets/local/stop.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash testnets/ensure-deps.sh
cargo build --release --locked -p keyfold-cli
bin=target/release/keyfold
run=testnets/local/run
mkdir -p "$run/logs"
"$bin" ca init --dir "$run/ca" >/dev/null
for i in 1 2 3; do "$bin" ca issue --dir "$run/ca" --node "signer-$i" --role signer >/dev/null; done
"$bin" ca issue --dir "$run/ca" --node coordinator --role coordinator >/dev/null
if [ ! -f "$run/api-token" ]; then
    (umask 077; "$bin" token issue --init --data-dir "$run/coordinator" --name local 2>/dev/null > "$run/api-token")
fi
for i in 1 2 3; do
    nohup "$bin" signer --config "testnets/local/signer-$i.toml" >>"$run/logs/signer-$i.log" 2>&1 &
    echo $! > "$run/signer-$i.pid"
done
nohup "$bin" coordinator --config testnets/local/coordinator.toml >>"$run/logs/coordinator.log" 2>&1 &
echo $! > "$run/coordinator.pid"
echo "local testnet starting: API http://127.0.0.1:7200, token in $run/api-token, logs in $run/logs"
echo "try: curl -s -H \"Authorization: Bearer \$(cat $run/api-token)\" http://127.0.0.1:7200/v1/status"
