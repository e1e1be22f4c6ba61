#!/usr/bin/env bash
# Creates a private SoftHSM2 configuration and token for Keyfold.
#
#   testnets/softhsm/setup.sh DIR LABEL
#
# Writes DIR/softhsm2.conf (token directory DIR/tokens), initializes a token
# labelled LABEL with a random user PIN in DIR/pin and a random SO PIN in
# DIR/so-pin (both mode 0600), and prints the line to export:
#
#   export SOFTHSM2_CONF=DIR/softhsm2.conf
#
# A node then uses, in its configuration:
#
#   [hsm]
#   module = "/usr/lib/softhsm/libsofthsm2.so"
#   token_label = "LABEL"
#   pin = { file = "DIR/pin" }
#
# Idempotent: re-running with a token of that label already in DIR leaves
# the token and its PINs untouched. Several labels may share one DIR.
#
# For development and test tokens only: softhsm2-util takes the PINs on its
# command line for the instant it runs. Initialize production HSMs with the
# vendor's tooling.
set -euo pipefail

usage() {
    echo "usage: $0 DIR LABEL   (LABEL: 1 to 32 bytes)" >&2
    exit 2
}
[ $# -eq 2 ] || usage
dir=$1
label=$2
[ -n "$label" ] || usage
if [ "$(printf %s "$label" | wc -c)" -gt 32 ]; then
    echo "keyfold: token label '$label' is longer than 32 bytes (the PKCS#11 limit)" >&2
    exit 2
fi
if [[ "$label" =~ [[:space:]]$ ]] || [[ "$label" =~ [[:cntrl:]] ]]; then
    echo "keyfold: token label '$label' must not end in whitespace nor contain control characters" >&2
    exit 2
fi

if ! command -v softhsm2-util >/dev/null 2>&1; then
    echo "keyfold: softhsm2-util not found: run ./testnets/ensure-deps.sh" >&2
    exit 1
fi

umask 077
mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir" "$dir/tokens"
conf="$dir/softhsm2.conf"
conf_text="# Keyfold SoftHSM2 configuration (testnets/softhsm/setup.sh)
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false"
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$conf_text" ]; then
    printf '%s\n' "$conf_text" >"$conf"
fi
export SOFTHSM2_CONF="$conf"

# Token labels as softhsm2-util prints them (padded with spaces).
token_exists() {
    softhsm2-util --show-slots 2>/dev/null |
        sed -n 's/^[[:space:]]*Label:[[:space:]]*//p' |
        sed 's/[[:space:]]*$//' |
        grep -Fxq -- "$1"
}

random_pin() {
    od -An -tx1 -N16 /dev/urandom | tr -d ' \n'
}

if token_exists "$label"; then
    echo "keyfold: token '$label' already exists in $dir/tokens; left as it is" >&2
    if [ ! -f "$dir/pin" ]; then
        echo "keyfold: warning: $dir/pin is missing: the token's user PIN is not on disk" >&2
    fi
else
    if [ -f "$dir/pin" ] && [ -f "$dir/so-pin" ]; then
        # Another label in the same DIR: reuse its PINs so that DIR/pin fits all.
        pin=$(cat "$dir/pin")
        so_pin=$(cat "$dir/so-pin")
    else
        pin=$(random_pin)
        so_pin=$(random_pin)
        printf '%s\n' "$pin" >"$dir/pin"
        printf '%s\n' "$so_pin" >"$dir/so-pin"
    fi
    chmod 600 "$dir/pin" "$dir/so-pin"
    softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >/dev/null
    echo "keyfold: created SoftHSM2 token '$label' in $dir/tokens (user PIN in $dir/pin)" >&2
fi

echo "export SOFTHSM2_CONF=$conf"
