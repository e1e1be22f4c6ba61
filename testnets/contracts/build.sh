#!/usr/bin/env bash
# Compiles KeyfoldTestToken.sol with the pinned solcjs of testnets/.tools
# (installed by testnets/ensure-deps.sh) into KeyfoldTestToken.json, which is
# committed: {contract, compiler, settings, source_sha256, abi, bytecode}.
# `bytecode` is the creation code without constructor arguments; append the ABI
# encoding of (string name, string symbol, uint8 decimals, address holder,
# uint256 supply) to deploy it.
# The output is byte-for-byte reproducible: standard-JSON input, fixed optimizer
# runs and evmVersion, and no metadata appended to the code (appendCBOR false,
# bytecodeHash none), so neither paths nor comments change the bytecode.
#
#   bash testnets/contracts/build.sh          writes KeyfoldTestToken.json
#   bash testnets/contracts/build.sh --check  recompiles into a temporary file and
#                                             fails when the committed JSON differs
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
solcjs="$here/../.tools/bin/solcjs"
artifact="$here/KeyfoldTestToken.json"

check=0
case "${1:-}" in
    "") ;;
    --check) check=1 ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if [ ! -e "$solcjs" ] || ! command -v node >/dev/null 2>&1; then
    echo "keyfold: solcjs not found in testnets/.tools; run bash testnets/ensure-deps.sh first" >&2
    exit 1
fi

out="$(mktemp)"
trap 'rm -f "$out"' EXIT

# Standard-JSON in, standard-JSON out (solcjs reads the input on stdin), then
# the artifact, all in node (which solcjs needs anyway).
node - "$here/KeyfoldTestToken.sol" "$solcjs" "$out" <<'EOF'
const fs = require("fs");
const crypto = require("crypto");
const { execFileSync } = require("child_process");
const [srcPath, solcjs, outPath] = process.argv.slice(2);

const source = fs.readFileSync(srcPath);
const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  viaIR: false,
  metadata: { appendCBOR: false, bytecodeHash: "none" },
};
const input = {
  language: "Solidity",
  sources: { "KeyfoldTestToken.sol": { content: source.toString("utf8") } },
  settings: {
    ...settings,
    outputSelection: { "KeyfoldTestToken.sol": { KeyfoldTestToken: ["abi", "evm.bytecode.object"] } },
  },
};
const version = execFileSync("node", [solcjs, "--version"], { encoding: "utf8" }).trim();
const raw = execFileSync("node", [solcjs, "--standard-json"], {
  input: JSON.stringify(input),
  encoding: "utf8",
  maxBuffer: 64 << 20,
});
// solcjs may print a line or two before the JSON (e.g. about the import callback).
const output = JSON.parse(raw.slice(raw.indexOf("{")));
let failed = false;
for (const e of output.errors || []) {
  console.error(e.formattedMessage || e.message);
  if (e.severity === "error") failed = true;
}
if (failed) process.exit(1);
const c = output.contracts["KeyfoldTestToken.sol"].KeyfoldTestToken;
if (!c.evm.bytecode.object) {
  console.error("keyfold: solc produced no bytecode");
  process.exit(1);
}
const artifact = {
  contract: "KeyfoldTestToken",
  compiler: version,
  settings,
  source_sha256: crypto.createHash("sha256").update(source).digest("hex"),
  abi: c.abi,
  bytecode: "0x" + c.evm.bytecode.object,
};
fs.writeFileSync(outPath, JSON.stringify(artifact, null, 2) + "\n");
EOF

if [ "$check" -eq 1 ]; then
    if [ ! -e "$artifact" ]; then
        echo "keyfold: testnets/contracts/KeyfoldTestToken.json is missing: run bash testnets/contracts/build.sh and commit it" >&2
        exit 1
    fi
    if ! cmp -s "$out" "$artifact"; then
        echo "keyfold: testnets/contracts/KeyfoldTestToken.json differs from a fresh compile of KeyfoldTestToken.sol:" >&2
        diff -u --label committed --label recompiled "$artifact" "$out" | head -40 >&2 || true
        echo "keyfold: run bash testnets/contracts/build.sh and commit the result" >&2
        exit 1
    fi
    echo "keyfold: testnets/contracts/KeyfoldTestToken.json matches a fresh compile"
else
    cat "$out" >"$artifact"
    echo "keyfold: wrote testnets/contracts/KeyfoldTestToken.json"
fi
