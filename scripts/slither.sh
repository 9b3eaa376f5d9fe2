#!/usr/bin/env bash
# Static analysis of contracts/*.sol with Slither, compiled by the npm solcjs through
# chain/solcjs_shim.js (no native solc, no compiler download). Run from anywhere:
#   scripts/slither.sh [extra slither args, e.g. --json out.json]
# Prints the findings; exits 0 even with findings, non-zero only if Slither could not run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="$ROOT/.venv-slither"
SLITHER_VERSION=0.11.6

if ! "$VENV/bin/slither" --version 2>/dev/null | grep -qx "$SLITHER_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "slither-analyzer==$SLITHER_VERSION"
fi

# Standard-JSON input: same settings as the project build (shanghai, optimizer 200 runs).
INPUT="$(mktemp -d)/deedchain-standard-input.json"
trap 'rm -rf "$(dirname "$INPUT")"' EXIT
python3 - "$INPUT" <<'PY'
import glob, json, sys
sources = {p: {"urls": [p]} for p in sorted(glob.glob("contracts/*.sol"))}
json.dump({"language": "Solidity", "sources": sources,
           "settings": {"evmVersion": "shanghai",
                        "optimizer": {"enabled": True, "runs": 200},
                        "remappings": ["@openzeppelin/=node_modules/@openzeppelin/"]}},
          open(sys.argv[1], "w"))
PY

# The shim resolves sources and imports against the project root (the cwd).
"$VENV/bin/slither" "$INPUT" \
  --compile-force-framework solc-json \
  --solc "$ROOT/chain/solcjs_shim.js" \
  --filter-paths node_modules \
  --fail-none "$@"
