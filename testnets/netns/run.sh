#!/usr/bin/env bash
# A multi-host Keyfold testnet on one machine: the coordinator, three signers
# and the load client each in its own network namespace, joined by veth pairs
# to a bridge inside a hub namespace, every link delayed (25 ms each way by
# default), so every hop of the cluster crosses a slow "WAN" link. Makes a CA
# and certificates, writes configs that use only the namespaces' own private
# addresses, starts the nodes, creates 2-of-3 secp256k1 and Ed25519 keys and
# runs keyfold-load against the API from the load namespace. keyfold-load
# verifies every signature independently; this script then checks that the
# latencies show the delayed links were really crossed.
#
# Everything lives in namespaces named kfnet-<pid>-*: nothing is configured
# in the machine's own namespace and no packet leaves the machine. All of it
# (processes, namespaces with their veths and bridge, the work directory) is
# removed on exit, Ctrl-C or failure. After `kill -9`, run `run.sh --cleanup`.
#
# Needs root and `ip netns`; without them it prints one line and exits 0
# (skipped), so the test suite can call it anywhere. See README.md here.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$REPO/testnets/netns"
PREFIX=kfnet
RUN=$$
SUBNET=10.213.0
NODES=(coordinator signer-1 signer-2 signer-3 load)
SIGNER_PORT=7001
QUIC_PORT=7000
API_PORT=7100

DELAY_MS=25
DELAY_WITH=auto
BIN_DIR=""
PRIMES_DIR=""
ONLINE=40
FULL=10
EDDSA=50
API_RTT=20
POOL=8
SKIP=local
JSON_OUT=""
LOGS_OUT=""

usage() {
    cat <<EOF
usage: $0 [options]
  --delay-ms MS       one-way delay on every node's link (default $DELAY_MS; 0: none)
  --delay-with KIND   netem, nfqueue or auto (default: netem when the kernel
                      has it, else the userspace NFQUEUE delay, delay.py)
  --bin-dir DIR       directory holding keyfold and keyfold-load (default:
                      build them with cargo build --release)
  --primes-dir DIR    TEST-ONLY safe primes (signer-N.primes) imported into the
                      signers before they start (skips 1-2 minutes)
  --online N          online ECDSA signatures to time (default $ONLINE)
  --full N            full ECDSA signatures to time (default $FULL)
  --eddsa N           Ed25519 signatures to time (default $EDDSA)
  --skip PHASES       keyfold-load phases to leave out (default: $SKIP; also refill)
  --json FILE         write keyfold-load's results (JSON) here
  --logs DIR          copy the nodes' configs and logs here before cleaning up
  --cleanup           remove what runs killed with -9 left behind, and exit
EOF
}

say() { echo "netns: $*"; }
# One line, exit 0: the test suite counts this as skipped, not failed.
skip() {
    echo "netns testnet skipped: $*"
    exit 0
}
die() {
    echo "netns: error: $*" >&2
    exit 1
}

ns() { echo "$PREFIX-$RUN-$1"; }
addr() {
    case "$1" in
        coordinator) echo "$SUBNET.1" ;;
        signer-*) echo "$SUBNET.1${1#signer-}" ;;
        load) echo "$SUBNET.100" ;;
        *) die "unknown node $1" ;;
    esac
}

# ---------------------------------------------------------------- cleanup
# Only what this run made: its namespaces (deleting the hub deletes the bridge
# and the veth ends in it; deleting a node's namespace deletes its end), the
# processes it started (by pid) and its work directory.
CREATED_NS=()
PIDS=()
WORK=""

stop_pids() {
    local pid deadline
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

delete_ns() {
    local n=$1 left
    # Anything still running inside one of our namespaces was started by us.
    left=$(ip netns pids "$n" 2>/dev/null || true)
    if [ -n "$left" ]; then
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL $left 2>/dev/null || true
    fi
    ip netns del "$n" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#PIDS[@]})); then stop_pids "${PIDS[@]}"; fi
    local n
    for n in "${CREATED_NS[@]}"; do delete_ns "$n"; done
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "$rc" -ne 0 ] && [ -d "$WORK/logs" ]; then
            for f in "$WORK"/logs/*.log; do
                [ -s "$f" ] || continue
                echo "---- last lines of $(basename "$f")" >&2
                tail -n 15 "$f" >&2
            done
        fi
        if [ -n "$LOGS_OUT" ]; then
            mkdir -p "$LOGS_OUT"
            cp -r "$WORK/logs" "$WORK/config" "$LOGS_OUT/" 2>/dev/null || true
        fi
        rm -rf "$WORK"
    fi
    if ((${#CREATED_NS[@]})); then say "cleaned up (namespaces, processes, $WORK)"; fi
    exit "$rc"
}

# Leftovers of runs that were killed with -9: namespaces and work directories
# whose run (the pid in their name) is gone.
cleanup_stale() {
    local n pid d found=0
    for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX-" || true); do
        pid=$(echo "$n" | cut -d- -f2)
        if kill -0 "$pid" 2>/dev/null; then
            say "keeping $n: run $pid is still going"
            continue
        fi
        delete_ns "$n"
        say "removed namespace $n"
        found=1
    done
    for d in "${TMPDIR:-/tmp}"/keyfold-netns-*; do
        [ -d "$d" ] || continue
        pid=$(basename "$d" | cut -d- -f3 | cut -d. -f1)
        kill -0 "$pid" 2>/dev/null && continue
        rm -rf "$d"
        say "removed $d"
        found=1
    done
    [ "$found" -eq 1 ] || say "nothing to clean up"
}

# ---------------------------------------------------------------- options
while (($#)); do
    case "$1" in
        --delay-ms) DELAY_MS=$2; shift ;;
        --delay-with) DELAY_WITH=$2; shift ;;
        --bin-dir) BIN_DIR=$2; shift ;;
        --primes-dir) PRIMES_DIR=$2; shift ;;
        --online) ONLINE=$2; shift ;;
        --full) FULL=$2; shift ;;
        --eddsa) EDDSA=$2; shift ;;
        --skip) SKIP=$2; shift ;;
        --json) JSON_OUT=$2; shift ;;
        --logs) LOGS_OUT=$2; shift ;;
        --cleanup) CLEANUP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done
for v in DELAY_MS ONLINE FULL EDDSA; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
case "$DELAY_WITH" in netem | nfqueue | auto) ;; *) die "--delay-with: netem, nfqueue or auto" ;; esac

# ---------------------------------------------------------------- can we run?
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces); run it with sudo"
command -v ip >/dev/null 2>&1 || skip "the ip command (iproute2) is not installed"
ip netns list >/dev/null 2>&1 || skip "ip netns is unavailable here"
if [ "${CLEANUP:-0}" -eq 1 ]; then
    cleanup_stale
    exit 0
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed to check the results"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- binaries
if [ -z "$BIN_DIR" ]; then
    say "building keyfold and keyfold-load (release)"
    (cd "$REPO" && cargo build --release --locked -q -p keyfold-cli -p keyfold-benches)
    BIN_DIR="${CARGO_TARGET_DIR:-$REPO/target}/release"
fi
KEYFOLD="$BIN_DIR/keyfold"
LOAD="$BIN_DIR/keyfold-load"
[ -x "$KEYFOLD" ] || die "$KEYFOLD not found"
[ -x "$LOAD" ] || die "$LOAD not found"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/keyfold-netns-$RUN.XXXXXX")
mkdir -p "$WORK/logs" "$WORK/config"

# ---------------------------------------------------------------- network
# A bridge inside its own namespace (the hub), one namespace per node, one
# veth pair per node: "eth0" in the node, named after the node in the hub.
make_network() {
    local hub node n
    hub=$(ns hub)
    ip netns add "$hub" 2>/dev/null || skip "cannot create network namespaces (ip netns add failed)"
    CREATED_NS+=("$hub")
    ip -n "$hub" link add br0 type bridge
    ip -n "$hub" link set br0 up
    for node in "${NODES[@]}"; do
        n=$(ns "$node")
        ip netns add "$n"
        CREATED_NS+=("$n")
        ip link add eth0 netns "$n" type veth peer name "$node" netns "$hub"
        ip -n "$hub" link set "$node" master br0 up
        ip -n "$n" addr add "$(addr "$node")/24" dev eth0
        ip -n "$n" link set eth0 up
        ip -n "$n" link set lo up
    done
}

# The delay goes on each node's egress, so A -> B takes DELAY_MS and a round
# trip between any two nodes 2 x DELAY_MS. netem is the tool for it; kernels
# built without it get delay.py (same effect, in userspace, via NFQUEUE).
apply_delay() {
    [ "$DELAY_MS" -gt 0 ] || { say "no delay (--delay-ms 0)"; return; }
    local kind=$DELAY_WITH node n first
    first=$(ns "${NODES[0]}")
    if [ "$kind" != nfqueue ]; then
        if tc -n "$first" qdisc add dev eth0 root netem delay "${DELAY_MS}ms" limit 100000 2>/dev/null; then
            kind=netem
        elif [ "$kind" = netem ]; then
            skip "this kernel has no netem qdisc (tc: unknown qdisc); try --delay-with nfqueue"
        else
            kind=nfqueue
        fi
    fi
    if [ "$kind" = nfqueue ] && ! command -v iptables >/dev/null 2>&1; then
        skip "this kernel has no netem qdisc and iptables (for the NFQUEUE delay) is not installed"
    fi
    for node in "${NODES[@]}"; do
        n=$(ns "$node")
        if [ "$kind" = netem ]; then
            [ "$n" = "$first" ] ||
                tc -n "$n" qdisc add dev eth0 root netem delay "${DELAY_MS}ms" limit 100000
            continue
        fi
        local log="$WORK/logs/delay-$node.log"
        ip netns exec "$n" python3 "$HERE/delay.py" --queue 0 --delay-ms "$DELAY_MS" >"$log" 2>&1 &
        PIDS+=($!)
        wait_for_line "$log" ready 10 "delay.py in $node"
        ip netns exec "$n" iptables -w -A OUTPUT -o eth0 -j NFQUEUE --queue-num 0
    done
    if [ "$kind" = netem ]; then
        say "delay: tc netem ${DELAY_MS} ms on every node's eth0"
    else
        say "delay: ${DELAY_MS} ms on every node's eth0 by delay.py (NFQUEUE; this kernel has no netem qdisc)"
    fi
}

wait_for_line() {
    local file=$1 line=$2 secs=$3 what=$4 deadline=$((SECONDS + $3))
    until grep -qx "$line" "$file" 2>/dev/null; do
        ((SECONDS < deadline)) || die "$what did not start within $secs s: $(tail -n 3 "$file")"
        sleep 0.1
    done
}

# ---------------------------------------------------------------- cluster
# Certificates from `keyfold ca`, configs with the namespaces' own addresses.
configure() {
    local ca="$WORK/ca" conf="$WORK/config" policy="$REPO/crates/policy/examples/devnet-default.toml"
    local node i entries="" primes_ready=1
    # With imported primes the signers need no more: a pool target of 0 keeps
    # them from generating a replacement pair (a core for 10-40 s each) while
    # aux info and the load run.
    [ -z "$PRIMES_DIR" ] || primes_ready=0
    "$KEYFOLD" ca init --dir "$ca" --name "keyfold netns testnet CA" >/dev/null
    "$KEYFOLD" ca issue --dir "$ca" --node coordinator --role coordinator >/dev/null
    for i in 1 2 3; do
        node=signer-$i
        "$KEYFOLD" ca issue --dir "$ca" --node "$node" --role signer >/dev/null
        cat >"$conf/$node.toml" <<EOF
# Signer $i of the netns testnet (made by testnets/netns/run.sh).
policy_file = "$policy"
node_id = "$node"
listen = "$(addr "$node"):$SIGNER_PORT"
data_dir = "$WORK/$node"

[tls]
ca_cert = "$ca/ca.pem"
cert = "$ca/$node.pem"
key = "$ca/$node.key"

[sealing]
backend = "key_file"
key_file = "$WORK/$node/sealing.key"

[tuning]
round_timeout_secs = 30
primes_ready = $primes_ready
EOF
        entries+=$'\n'"[[signers]]"$'\n'"node_id = \"$node\""$'\n'"addr = \"$(addr "$node"):$SIGNER_PORT\""$'\n'
    done
    cat >"$conf/coordinator.toml" <<EOF
# Coordinator of the netns testnet (made by testnets/netns/run.sh).
policy_file = "$policy"
node_id = "coordinator"
api_listen = "$(addr coordinator):$API_PORT"
quic_listen = "$(addr coordinator):$QUIC_PORT"
data_dir = "$WORK/coordinator"

[tls]
ca_cert = "$ca/ca.pem"
cert = "$ca/coordinator.pem"
key = "$ca/coordinator.key"
$entries
[tuning]
presignatures = $POOL
EOF
    (umask 077 && "$KEYFOLD" token issue --init --data-dir "$WORK/coordinator" --name netns-load \
        2>/dev/null >"$WORK/api-token")
    if [ -n "$PRIMES_DIR" ]; then
        for i in 1 2 3; do
            "$KEYFOLD" signer --config "$conf/signer-$i.toml" \
                --import-primes "$PRIMES_DIR/signer-$i.primes" >>"$WORK/logs/signer-$i.log" 2>&1 ||
                die "importing $PRIMES_DIR/signer-$i.primes failed (see the log below)"
        done
        say "TEST-ONLY safe primes imported from $PRIMES_DIR"
    fi
}

start_node() {
    local node=$1 kind=$2
    ip netns exec "$(ns "$node")" env RUST_LOG="${RUST_LOG:-info,round_based=error}" \
        "$KEYFOLD" "$kind" --config "$WORK/config/$node.toml" >>"$WORK/logs/$node.log" 2>&1 &
    PIDS+=($!)
}

start_cluster() {
    local i
    for i in 1 2 3; do start_node "signer-$i" signer; done
    start_node coordinator coordinator
    sleep 1
    for i in "${!PIDS[@]}"; do
        kill -0 "${PIDS[$i]}" 2>/dev/null || die "a node exited at start (see the logs below)"
    done
    say "coordinator $(addr coordinator) (API :$API_PORT, QUIC :$QUIC_PORT), signers $(addr signer-1) $(addr signer-2) $(addr signer-3) (:$SIGNER_PORT), load client $(addr load)"
}

# keyfold-load waits until every signer is live, creates the keys (the first
# ECDSA key includes the group's aux info: 1-2 minutes without --primes-dir),
# then signs from the load namespace: every request crosses two delayed links.
run_load() {
    say "running keyfold-load from $(ns load): online $ONLINE, full $FULL, Ed25519 $EDDSA"
    ip netns exec "$(ns load)" "$LOAD" \
        --api "http://$(addr coordinator):$API_PORT" --token-file "$WORK/api-token" \
        --wait-live 120 --pool-target "$POOL" --api-rtt "$API_RTT" \
        --online "$ONLINE" --full "$FULL" --eddsa "$EDDSA" --skip "$SKIP" \
        --json "$WORK/results.json"
    if [ -n "$JSON_OUT" ]; then cp "$WORK/results.json" "$JSON_OUT"; fi
}

# The checks: every signature came back and was verified (keyfold-load stops
# at the first one that does not verify), and no signature was faster than the
# links allow. A request crosses the load->coordinator link and back (one
# round trip) and the coordinator->signer links and back (at least one more),
# so each must take at least 4 x DELAY_MS.
check_results() {
    python3 - "$WORK/results.json" "$DELAY_MS" "$ONLINE" "$FULL" "$EDDSA" <<'EOF'
import json, sys
path, delay, online, full, eddsa = sys.argv[1], *map(int, sys.argv[2:])
r = json.load(open(path))
phases = {p["phase"]: p for p in r["phases"]}
failures = []
expected = online + full + eddsa
if r["signatures_verified"] < expected:
    failures.append(f"{r['signatures_verified']} signatures verified, expected at least {expected}")
floor = 4 * delay
for name, want in (("online", online), ("full", full), ("eddsa", eddsa)):
    if want == 0:
        continue
    p = phases.get(name)
    if p is None or p["n"] < want:
        failures.append(f"phase {name}: {p and p['n']} samples, expected {want}")
    elif p["min_ms"] < floor:
        failures.append(f"phase {name}: fastest {p['min_ms']:.1f} ms < {floor} ms (4 x {delay} ms): the delayed links were not crossed")
rtt = phases.get("api_rtt", {}).get("p50_ms", 0.0)
print(f"netns: results (one-way delay {delay} ms per link; coordinator<->signer round trip {2 * delay} ms)")
print(f"netns:   API round trip (GET /v1/health)  p50 {rtt:8.2f} ms")
if "online" in phases:
    o = phases["online"]
    print(f"netns:   ECDSA online                     p50 {o['p50_ms']:8.2f} ms  p99 {o['p99_ms']:8.2f} ms  "
          f"(minus the API round trip: p50 {o['p50_ms'] - rtt:.2f} ms; goal {2 * delay + 5} ms = one round trip + 5 ms)")
for name, label in (("full", "ECDSA full (HD child)"), ("eddsa", "Ed25519")):
    if name in phases:
        p = phases[name]
        print(f"netns:   {label:<32} p50 {p['p50_ms']:8.2f} ms  p99 {p['p99_ms']:8.2f} ms")
if failures:
    for f in failures:
        print(f"netns: FAILED: {f}", file=sys.stderr)
    sys.exit(1)
print(f"netns:   {r['signatures_verified']} signatures verified independently; every signature took at least {floor} ms")
EOF
}

make_network
apply_delay
configure
start_cluster
run_load
check_results
say "passed"
