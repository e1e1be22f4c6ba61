#!/usr/bin/env bash
# Installs the system packages Keyfold's build and tests need, when missing.
#   python3   the audit log's independent verifier (crates/audit/tools).
#   python3-venv
#             a virtualenv in testnets/.tools/py with the pinned PyPI packages
#             of testnets/webhooks/requirements.txt (standardwebhooks: the tests
#             verify webhook deliveries with the reference implementation).
#   procps    kill and pgrep, with which the cluster tests freeze, stop and find nodes.
#   m4        GMP (pulled in by cggmp21 through rug) will not configure without it.
#   softhsm2  the PKCS#11 module and softhsm2-util the HSM bridge's tests run against.
#   opensc    pkcs11-tool, used by the HSM tests to inspect tokens from outside.
#   iproute2, iptables
#             the multi-host testnet in network namespaces (testnets/netns):
#             ip netns, and the NFQUEUE delay on kernels without netem. Only
#             as root, the only place where that testnet runs.
#   nodejs, npm
#             the npm client that installs the two tools below (and node, which
#             runs solcjs). Without npm the chain steps are skipped (one line says so).
#   anvil     @foundry-rs/anvil 1.7.1: the local Ethereum chain (loopback only) of the
#             devnet and the chain tests; testnets/.tools/bin/anvil is the binary.
#   solc      the npm solc package 0.8.37 (solcjs, the WebAssembly build of solc
#             0.8.37): compiles testnets/contracts/KeyfoldTestToken.sol
#             (testnets/contracts/build.sh); testnets/.tools/bin/solcjs.
#             Both are pinned, with every dependency's integrity hash, by
#             testnets/anvil/package.json and package-lock.json, and installed
#             with `npm ci --ignore-scripts` into testnets/.tools (not committed).
# Idempotent: does nothing on a machine that already has everything.
set -euo pipefail

missing=()
command -v m4 >/dev/null 2>&1 || missing+=(m4)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v pgrep >/dev/null 2>&1 || missing+=(procps)
if ! command -v softhsm2-util >/dev/null 2>&1 || [ ! -e /usr/lib/softhsm/libsofthsm2.so ]; then
    missing+=(softhsm2)
fi
command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
if [ "$(id -u)" -eq 0 ]; then
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v iptables >/dev/null 2>&1 || missing+=(iptables)
fi

if ((${#missing[@]})); then
    echo "keyfold: installing system packages: ${missing[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "keyfold: apt-get not found; install ${missing[*]} with your package manager" >&2
        exit 1
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "keyfold: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
fi

# --- Local Ethereum chain tools: anvil and solcjs in testnets/.tools ----------
# Soft: when they cannot be installed, one line says the chain steps will be
# skipped and this script still succeeds (the chain tests then fail on their own).
tools_src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/anvil"
tools="$(dirname "$tools_src")/.tools"
tools_ready() {
    [ -x "$tools/bin/anvil" ] && [ -e "$tools/bin/solcjs" ] \
        && cmp -s "$tools_src/package-lock.json" "$tools/.installed-lock.json"
}
if ! tools_ready; then
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            if sudo -n true >/dev/null 2>&1; then SUDO="sudo"; else SUDO="none"; fi
        fi
        if [ "$SUDO" != none ] && command -v apt-get >/dev/null 2>&1; then
            echo "keyfold: installing system packages: nodejs npm" >&2
            { $SUDO apt-get update -qq \
                && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null; } \
                || true
        fi
    fi
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        echo "keyfold: npm not available; the local Ethereum chain steps (anvil, solc) will be skipped" >&2
    else
        mkdir -p "$tools"
        # Two runs at once (the devnet and the tests) install one after the other.
        if command -v flock >/dev/null 2>&1; then exec 9>"$tools/.install.lock"; flock 9; fi
    fi
    if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1 && ! tools_ready; then
        rm -f "$tools/.installed-lock.json"
        cp "$tools_src/package.json" "$tools_src/package-lock.json" "$tools/"
        # No install scripts: the only one (@foundry-rs/anvil's postinstall) would
        # download the binary when the platform's package is missing; here that
        # package comes through the lock file or not at all.
        if (cd "$tools" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null); then
            mkdir -p "$tools/bin"
            anvil_bin=""
            for f in "$tools"/node_modules/@foundry-rs/anvil-*/bin/anvil; do
                if [ -x "$f" ]; then anvil_bin="$f"; break; fi
            done
            if [ -n "$anvil_bin" ]; then
                ln -sfn "../${anvil_bin#"$tools/"}" "$tools/bin/anvil"
                ln -sfn ../node_modules/solc/solc.js "$tools/bin/solcjs"
                cp "$tools_src/package-lock.json" "$tools/.installed-lock.json"
                echo "keyfold: installed into testnets/.tools: anvil $(node -p 'require(process.argv[1]).version' "$tools/node_modules/@foundry-rs/anvil/package.json"), solc $(node -p 'require(process.argv[1]).version' "$tools/node_modules/solc/package.json") (solcjs)" >&2
            else
                echo "keyfold: no anvil binary for $(uname -s)/$(uname -m) in @foundry-rs/anvil; the local Ethereum chain steps will be skipped" >&2
            fi
        else
            echo "keyfold: npm ci in testnets/.tools failed; the local Ethereum chain steps (anvil, solc) will be skipped" >&2
        fi
    fi
    exec 9>&-
fi

# --- Python checkers: standardwebhooks in testnets/.tools/py -------------------
py_req="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/webhooks/requirements.txt"
py="$(dirname "$py_req")/../.tools/py"
if ! cmp -s "$py_req" "$py/.installed-requirements.txt" 2>/dev/null; then
    mkdir -p "$(dirname "$py")"
    rm -rf "$py"
    if python3 -m venv "$py" >/dev/null \
        && "$py/bin/pip" install -q --disable-pip-version-check -r "$py_req" >/dev/null; then
        cp "$py_req" "$py/.installed-requirements.txt"
        echo "keyfold: installed the Python checkers into testnets/.tools/py ($(grep -v '^#' "$py_req" | tr '\n' ' '))" >&2
    else
        echo "keyfold: cannot install testnets/webhooks/requirements.txt into testnets/.tools/py; the webhook tests will fail" >&2
    fi
fi
