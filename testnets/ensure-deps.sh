#!/usr/bin/env bash
# Installs the system packages Keyfold's build and tests need, when missing.
#   python3   the audit log's independent verifier (crates/audit/tools).
#   procps    kill and pgrep, with which the cluster tests freeze, stop and find nodes.
#   m4        GMP (pulled in by cggmp21 through rug) will not configure without it.
#   softhsm2  the PKCS#11 module and softhsm2-util the HSM bridge's tests run against.
#   opensc    pkcs11-tool, used by the HSM tests to inspect tokens from outside.
#   iproute2, iptables
#             the multi-host testnet in network namespaces (testnets/netns):
#             ip netns, and the NFQUEUE delay on kernels without netem. Only
#             as root, the only place where that testnet runs.
# Idempotent: does nothing on a machine that already has everything.
set -euo pipefail

missing=()
command -v m4 >/dev/null 2>&1 || missing+=(m4)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
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
