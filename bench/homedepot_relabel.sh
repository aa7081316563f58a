#!/usr/bin/env bash
# The mining-relabeler ablation on Home Depot (paper Table 5 on this data; issue "quality on
# real graded data", item 2): stage 2 from one stage-1 model of bench/quality_homedepot.sh,
# on mined pairs labeled three ways, everything else equal:
#   zero          unjudged retrieved pairs are label 0 (`--labeler unjudged-zero`);
#   judged        only judged pairs are kept (`--labeler judged-only`);
#   cross-encoder the cross-encoder labeler LABELER (trained on the split's train queries:
#                 `strata labeler train --split 0.8,0.1,0.1 --split-seed 0`, the split of
#                 `strata data split`), pairs below MIN_CONFIDENCE left unlabeled.
# Steps: `strata labeler eval` of LABELER on the dev queries (its accuracy and the confidence
# table MIN_CONFIDENCE is read from: run with LABELERS="zero judged" first, or read the table and
# rerun); `strata mine` over the whole catalog (top K of every
# training query, nondev.tsv) with each labeler; stage 2 (STAGE2_CONFIG, MAX_STEPS updates,
# the recipe's) from the stage-1 model on each mined judgments; `strata eval` of each on dev;
# `strata compare --paired` against the peer and against stage 1.
#   bench/homedepot_relabel.sh WORK STAGE1_NAME LABELER
# WORK: a bench/quality_homedepot.sh work directory (split/, nondev.tsv, STAGE1_NAME/model,
# eval/); LABELER: a `strata labeler train` run directory (its best/, else model/). Environment: STRATA, HOMEDEPOT, K (default 40), MIN_CONFIDENCE (default 0.6),
# STAGE2_CONFIG (default bench/homedepot-circle-bn.toml), MAX_STEPS (default 100, as
# recipes/homedepot.toml), THREADS (default 2), LABELERS (default "zero judged cross-encoder"),
# PEER (default mnrl-b64-e1).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:?usage: bench/homedepot_relabel.sh WORK STAGE1_NAME LABELER}"
stage1_name="${2:?usage: bench/homedepot_relabel.sh WORK STAGE1_NAME LABELER}"
labeler="${3:?usage: bench/homedepot_relabel.sh WORK STAGE1_NAME LABELER}"
data="${HOMEDEPOT:-$repo/../shared/data/homedepot}"
k="${K:-40}"
min_confidence="${MIN_CONFIDENCE:-0.6}"
stage2_config="${STAGE2_CONFIG:-$repo/bench/homedepot-circle-bn.toml}"
steps="${MAX_STEPS:-100}"
threads="${THREADS:-2}"
peer="${PEER:-mnrl-b64-e1}"
stage1="$work/$stage1_name/model"
out="$work/relabel-$stage1_name-k$k"
[ -f "$data/products.tsv" ] || { echo "bench: $data/products.tsv not found (set HOMEDEPOT)" >&2; exit 1; }
[ -f "$stage1/strata.json" ] || { echo "bench: $stage1 is not a strata model" >&2; exit 1; }
[ -f "$work/nondev.tsv" ] || { echo "bench: $work/nondev.tsv missing: run bench/quality_homedepot.sh $work first" >&2; exit 1; }
if [ -z "${STRATA:-}" ]; then
  (cd "$repo" && cargo build --release -p strata -q)
  STRATA="$repo/target/release/strata"
fi
mkdir -p "$out" "$work/eval"
t() { local s=$SECONDS; "$@"; echo "bench: $(( SECONDS - s )) s: ${*:1:3}" >&2; }

# Mining, stage 2 and the dev evaluation for each labeler; the cross-encoder is first evaluated
# on the dev queries (accuracy, within-1 and the confidence table MIN_CONFIDENCE is read from).
runs=()
for which in ${LABELERS:-zero judged cross-encoder}; do
  case "$which" in
    zero) spec=(--labeler unjudged-zero) ;;
    judged) spec=(--labeler judged-only) ;;
    cross-encoder) ce="$labeler/model"; [ -d "$labeler/best" ] && ce="$labeler/best"
      spec=(--labeler "cross-encoder=$ce" --min-confidence "$min_confidence")
      which="cross-encoder-p$min_confidence"
      [ -f "$out/labeler-dev.json" ] || t "$STRATA" --threads "$threads" labeler eval \
        --labeler "$labeler" --run "$labeler" --on dev --out "$out/labeler-dev.json" ;;
    *) echo "bench: unknown labeler $which (zero, judged, cross-encoder)" >&2; exit 1 ;;
  esac
  mined="$out/mine-$which"
  [ -f "$mined/judgments.jsonl" ] || t "$STRATA" --threads "$threads" mine --model "$stage1" \
    --catalog "$data/products.tsv" --judgments "$work/nondev.tsv" --whole-catalog --k "$k" \
    "${spec[@]}" --cache "$out/labels-$which.jsonl" --out "$mined"
  run="$out/stage2-$which"
  if [ ! -f "$run/summary.json" ]; then
    resume=(); [ -d "$run/checkpoints" ] && resume=(--resume)
    (cd "$repo" && t "$STRATA" --threads "$threads" train --config "$stage2_config" --quiet \
      --catalog "$data/products.tsv" --init "$stage1" --train-judgments "$mined/judgments.jsonl" \
      --max-steps "$steps" --out "$run" "${resume[@]}")
  fi
  ev="$work/eval/strata-$stage1_name-stage2-$which-k$k"
  [ -f "$ev/metrics.json" ] || t "$STRATA" eval --catalog "$data/products.tsv" \
    --judgments "$work/split/dev.tsv" --system dense --model "$run/model" --threads "$threads" --out "$ev"
  runs+=("$ev")
done

echo "== stage 2 by mining relabeler, against the peer"
"$STRATA" compare "$work/eval/strata-$stage1_name" "${runs[@]}" --baseline "$work/eval/peer-$peer" --paired
echo "== against stage 1"
"$STRATA" compare "${runs[@]}" --baseline "$work/eval/strata-$stage1_name" --paired
