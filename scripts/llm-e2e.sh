#!/usr/bin/env bash
# End-to-end LLM labeling demo: starts a local llama-server with SmolLM2-135M-Instruct
# (scripts/llm-server.sh), labels 200 Home Depot pairs twice through the persistent cache
# (the second run makes no requests), and stops the server.
#
# Usage: scripts/llm-e2e.sh [OUT_DIR]   (default runs/llm-homedepot; the cache is reset)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/llm-homedepot}"
PORT="${STRATA_LLM_PORT:-8088}"
DATA="${STRATA_HOMEDEPOT:-/work/shared/data/homedepot}"

scripts/llm-server.sh start "$PORT"
trap 'scripts/llm-server.sh stop' EXIT
cargo build --release -p strata-labeling --example label_homedepot
rm -f "$OUT/cache.jsonl"
for run in 1 2; do
  echo "== run $run"
  target/release/examples/label_homedepot --base-url "http://127.0.0.1:$PORT/v1" \
    --data "$DATA" --pairs 200 --out "$OUT"
  cp "$OUT/report.json" "$OUT/report-run$run.json"
done
