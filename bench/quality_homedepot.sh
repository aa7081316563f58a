#!/usr/bin/env bash
# strata's Home Depot recipe side by side with the sentence-transformers peer, on one split
# (issue: quality on real graded data). Every row is scored by `strata eval` on the same dev
# queries over the whole 54,667-item catalog.
#  1. `strata data split` (seed 0, by query hash): train / dev / test; training queries =
#     train + test (nondev.tsv), shared by strata and the peer;
#  2. the peer (bench/st_peer.py, sentence-transformers' own losses) on nondev.tsv: PEER
#     variants (default mnrl-b64-e1; see st_peer.py for the others);
#  3. strata stage 1 on nondev.tsv: STRATA_CONFIGS (default bench/homedepot-supcon-bn.toml);
#     then stage 2 from the first stage-1 model: STAGE2_CONFIGS (default
#     bench/homedepot-circle-bn.toml, circle loss on the same judgments);
#  4. dev evaluations: BM25, zero-shot, every peer and strata model; `strata compare` of all
#     against zero-shot, and with --paired-margins against the first peer row.
#   bench/quality_homedepot.sh [WORK_DIR]
# Environment: STRATA (binary; default: build target/release/strata), HOMEDEPOT, PEER,
# STRATA_CONFIGS and STAGE2_CONFIGS (space-separated configs), THREADS (default 2), MAX_STEPS
# (strata cap).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$repo/target/quality-homedepot}"
data="${HOMEDEPOT:-$repo/../shared/data/homedepot}"
peer="${PEER:-mnrl-b64-e1}"
configs="${STRATA_CONFIGS:-$repo/bench/homedepot-supcon-bn.toml}"
stage2="${STAGE2_CONFIGS-$repo/bench/homedepot-circle-bn.toml}"
threads="${THREADS:-2}"
base="$repo/models/all-MiniLM-L6-v2"
[ -f "$data/products.tsv" ] || { echo "bench: $data/products.tsv not found (set HOMEDEPOT)" >&2; exit 1; }
[ -f "$base/model.safetensors" ] || { echo "bench: $base missing: run scripts/setup.sh" >&2; exit 1; }
if [ -z "${STRATA:-}" ]; then
  (cd "$repo" && cargo build --release -p strata -q)
  STRATA="$repo/target/release/strata"
fi
py="$("$repo/scripts/python-bench-env.sh")"
mkdir -p "$work/eval"
t() { local s=$SECONDS; "$@"; echo "bench: $(( SECONDS - s )) s: ${*:1:3}" >&2; }

[ -f "$work/split/dev.tsv" ] || t "$STRATA" data split --judgments "$data/judgments.tsv" --out "$work/split"
if [ ! -f "$work/nondev.tsv" ]; then
  { cat "$work/split/train.tsv"; tail -n +2 "$work/split/test.tsv"; } > "$work/nondev.tsv.partial"
  mv "$work/nondev.tsv.partial" "$work/nondev.tsv"
fi
dev="$work/split/dev.tsv"

t "$py" "$repo/bench/st_peer.py" --catalog "$data/products.tsv" --train "$work/nondev.tsv" \
  --base "$base" --out "$work/peer" --variants "$peer" --threads "$threads"

strata_runs=()
train() { # config [init]
  local cfg="$1" name extra=()
  name="$(basename "$cfg" .toml)"
  strata_runs+=("$name")
  [ -f "$work/$name/summary.json" ] && return 0
  [ -n "${2:-}" ] && extra+=(--init "$2")
  [ -n "${MAX_STEPS:-}" ] && extra+=(--max-steps "$MAX_STEPS")
  [ -d "$work/$name/checkpoints" ] && extra+=(--resume)
  (cd "$repo" && t "$STRATA" --threads "$threads" train --config "$cfg" --quiet \
    --catalog "$data/products.tsv" --train-judgments "$work/nondev.tsv" --out "$work/$name" "${extra[@]}")
}
for cfg in $configs; do train "$cfg"; done
first="$work/${strata_runs[0]}/model"
for cfg in $stage2; do train "$cfg" "$first"; done

ev() { # name system [model]
  local name="$1" system="$2"; shift 2
  [ -f "$work/eval/$name/metrics.json" ] && return 0
  t "$STRATA" eval --catalog "$data/products.tsv" --judgments "$dev" --system "$system" "$@" \
    --threads "$threads" --out "$work/eval/$name"
}
ev bm25 bm25
ev zero-shot dense --model "$base"
runs=("$work/eval/bm25" "$work/eval/zero-shot")
peers=()
for v in ${peer//,/ }; do
  ev "peer-$v" dense --model "$work/peer/$v"
  runs+=("$work/eval/peer-$v"); peers+=("$work/eval/peer-$v")
done
for name in "${strata_runs[@]}"; do
  ev "strata-$name" dense --model "$work/$name/model"
  runs+=("$work/eval/strata-$name")
done
echo "== all rows against zero-shot"
"$STRATA" compare "${runs[@]}" --baseline "$work/eval/zero-shot"
echo "== per-query margins against the peer ${peers[0]##*/}"
"$STRATA" compare "${runs[@]:2}" --baseline "${peers[0]}" --paired-margins

# Hybrid search (strata eval --system hybrid: dense and BM25 candidates, 1,000 each, convex
# fusion with alpha 0.5, nothing tuned): zero-shot, the first peer and the first strata model,
# each blended with BM25 as `strata serve` blends them. HYBRID=0 skips it.
if [ "${HYBRID:-1}" = 1 ]; then
  ev hybrid-zero-shot hybrid --model "$base"
  ev "hybrid-peer-${peers[0]##*/peer-}" hybrid --model "$work/peer/${peers[0]##*/peer-}"
  ev "hybrid-strata-${strata_runs[0]}" hybrid --model "$work/${strata_runs[0]}/model"
  echo "== hybrid rows against hybrid zero-shot"
  "$STRATA" compare "$work/eval/bm25" "$work/eval/hybrid-zero-shot" \
    "$work/eval/hybrid-peer-${peers[0]##*/peer-}" "$work/eval/hybrid-strata-${strata_runs[0]}" \
    --baseline "$work/eval/hybrid-zero-shot"
fi
