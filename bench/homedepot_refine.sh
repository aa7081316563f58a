#!/usr/bin/env bash
# Mine and refine on Home Depot, the paper-style table (issue "Mine and Refine", paper Table 4):
#  1. the query split (`strata data split`, seed 0: train / dev / test by query hash); stage 1
#     (bench/homedepot-supcon-rn4.toml, dev_fraction 0.1 with the same hash) trained on every
#     non-dev query, so mining and stage 2 use train + test, and every row is scored on dev;
#  2. `strata mine` with the stage-1 model over the whole catalog (k 150, unjudged pairs = 0);
#  3. stage 2 from stage 1 on the merged judgments: circle loss (bench/homedepot-circle.toml)
#     and the triplet baseline (bench/homedepot-triplet.toml), same data, updates and seed;
#     and circle on a second mining whose hard negatives start at rank 11 (the top 10
#     unjudged items of a query are the likeliest false negatives of "unjudged = 0"); and
#     circle on the original judgments alone (the mix-of-data ablation: no mined pairs);
#  4. `strata eval` of both on dev (dense; hybrid for circle) and `strata compare` against the
#     zero-shot row.
# Rows already computed (zero-shot, BM25, stage 1, their hybrids) are read from DEVTABLE when it
# holds them (the README's dev table); otherwise they are evaluated here.
#   bench/homedepot_refine.sh STAGE1_MODEL [WORK_DIR]
# Environment: STRATA (binary; default: build and use target/release/strata), STAGE1_INDEX (an
# index of the stage-1 model: mining reuses its item embeddings), HOMEDEPOT, DEVTABLE, MAX_STEPS.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stage1="${1:?usage: bench/homedepot_refine.sh STAGE1_MODEL [WORK_DIR]}"
work="${2:-$repo/target/homedepot-refine}"
data="${HOMEDEPOT:-$repo/../shared/data/homedepot}"
devtable="${DEVTABLE:-$work/devtable}"
steps="${MAX_STEPS:-120}"
[ -f "$data/products.tsv" ] || { echo "bench: $data/products.tsv not found (set HOMEDEPOT)" >&2; exit 1; }
if [ -z "${STRATA:-}" ]; then
  (cd "$repo" && cargo build --release -p strata -q)
  STRATA="$repo/target/release/strata"
fi
mkdir -p "$work" "$devtable"
t() { local s=$SECONDS; "$@"; echo "bench: $(( SECONDS - s )) s: ${*:1:3}" >&2; }

# 1. split; training queries = train + test.
[ -f "$work/split/dev.tsv" ] || t "$STRATA" data split --judgments "$data/judgments.tsv" --out "$work/split"
if [ ! -f "$work/nondev.tsv" ]; then
  { cat "$work/split/train.tsv"; tail -n +2 "$work/split/test.tsv"; } > "$work/nondev.tsv"
fi
dev="$work/split/dev.tsv"

# 2. mining (hard negatives from rank 1, and from rank 11).
reuse=()
[ -n "${STAGE1_INDEX:-}" ] && reuse=(--item-embeddings "$STAGE1_INDEX")
for from in 1 11; do
  m="$work/mine"; [ "$from" = 1 ] || m="$work/mine-r$from"
  [ -f "$m/judgments.jsonl" ] && continue
  t "$STRATA" mine --model "$stage1" --catalog "$data/products.tsv" --judgments "$work/nondev.tsv" \
    --out "$m" --whole-catalog --k 150 --negatives-from-rank "$from" --cache "$m.labels.jsonl" "${reuse[@]}"
done

# 3. stage 2: circle and triplet on the first mining, circle on the second, circle on the
#    original judgments only.
for run in circle:mine triplet:mine circle-r11:mine-r11 circle-orig:orig; do
  name="${run%%:*}"; mined="${run##*:}"; loss="${name%%-*}"
  [ -f "$work/$name/summary.json" ] && continue
  judgments="$work/$mined/judgments.jsonl"; [ "$mined" = orig ] && judgments="$work/nondev.tsv"
  t "$STRATA" train --config "$repo/bench/homedepot-$loss.toml" --quiet \
    --catalog "$data/products.tsv" --init "$stage1" --train-judgments "$judgments" \
    --max-steps "$steps" --out "$work/$name" $( [ -d "$work/$name/checkpoints" ] && echo --resume )
done

# 4. evaluations on dev.
ev() { # name system [model] [extra...]
  local name="$1" system="$2"; shift 2
  [ -f "$devtable/$name/metrics.json" ] && return 0
  t "$STRATA" eval --catalog "$data/products.tsv" --judgments "$dev" --system "$system" "$@" --out "$devtable/$name"
}
ev bm25 bm25
ev zero-shot dense --model "$repo/models/all-MiniLM-L6-v2"
ev stage1-rn4 dense --model "$stage1"
if [ ! -f "$devtable/stage2-circle/metrics.json" ] || [ ! -f "$devtable/hybrid-stage2-circle/metrics.json" ]; then
  [ -f "$work/circle-index/manifest.json" ] || t "$STRATA" index build --model "$work/circle/model" \
    --catalog "$data/products.tsv" --out "$work/circle-index"
  ev stage2-circle dense --model "$work/circle/model" --item-embeddings "$work/circle-index"
  ev hybrid-stage2-circle hybrid --model "$work/circle/model" --item-embeddings "$work/circle-index"
fi
ev stage2-triplet dense --model "$work/triplet/model"
ev stage2-circle-r11 dense --model "$work/circle-r11/model"
ev stage2-circle-orig dense --model "$work/circle-orig/model"
ev hybrid-zero-shot hybrid --model "$repo/models/all-MiniLM-L6-v2"
ev hybrid-stage1-rn4 hybrid --model "$stage1"

runs=()
for r in zero-shot stage1-rn4 stage2-circle stage2-circle-r11 stage2-circle-orig stage2-triplet bm25 hybrid-zero-shot hybrid-stage1-rn4 hybrid-stage2-circle; do
  runs+=("$devtable/$r")
done
"$STRATA" compare "${runs[@]}" --baseline "$devtable/zero-shot" --markdown | tee "$work/table.md"
"$STRATA" compare "${runs[@]}" --baseline "$devtable/zero-shot" --absolute --markdown | tee "$work/table-absolute.md"
