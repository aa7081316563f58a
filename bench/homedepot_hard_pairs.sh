#!/usr/bin/env bash
# The lexically hard pairs of the margin metrics (EVALUATION.md: judged pairs with token overlap
# >= 0.7, on the queries holding a label-2 and a label-0 one), labeled by a cross-encoder
# labeler: how well a model that reads query and item together separates the pairs the
# bi-encoders' margins are measured on (issue: quality on real graded data, "why the margin
# goals are not met"). The pairs come from any dense evaluation's judged_scores.tsv (every
# judged pair with its token overlap); the labeler is one trained by `strata labeler train`.
#   bench/homedepot_hard_pairs.sh EVAL_DIR LABELER_DIR OUT_DIR
# Prints the labeler's 3-class accuracy on those pairs, its confusion matrix, and the
# hard-pair AUC of its labels (per query, the fraction of label-2 / label-0 combinations it
# orders correctly, ties half), the number `strata eval` reports as hard_pair_auc for a model.
# Environment: STRATA (binary; default: build target/release/strata), HOMEDEPOT, THREADS.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval_dir="${1:?usage: bench/homedepot_hard_pairs.sh EVAL_DIR LABELER_DIR OUT_DIR}"
labeler="${2:?usage: bench/homedepot_hard_pairs.sh EVAL_DIR LABELER_DIR OUT_DIR}"
out="${3:?usage: bench/homedepot_hard_pairs.sh EVAL_DIR LABELER_DIR OUT_DIR}"
data="${HOMEDEPOT:-$repo/../shared/data/homedepot}"
[ -f "$eval_dir/judged_scores.tsv" ] || { echo "bench: $eval_dir/judged_scores.tsv not found (a strata eval output)" >&2; exit 1; }
ce="$labeler/model"; [ -d "$labeler/best" ] && ce="$labeler/best"
[ -d "$ce" ] || { echo "bench: $labeler has no model/ or best/ (train one with strata labeler train)" >&2; exit 1; }
if [ -z "${STRATA:-}" ]; then
  (cd "$repo" && cargo build --release -p strata -q)
  STRATA="$repo/target/release/strata"
fi
mkdir -p "$out"
python3 - "$eval_dir/judged_scores.tsv" "$out/pairs.jsonl" <<'EOF'
import collections, csv, json, sys
rows = collections.defaultdict(list)
with open(sys.argv[1]) as f:
    for r in csv.DictReader(f, delimiter="\t"):
        if float(r["overlap"]) >= 0.7:
            rows[r["query"]].append((r["item"], int(r["label"])))
with open(sys.argv[2], "w") as f:
    n = 0
    for q, pairs in rows.items():
        labels = {l for _, l in pairs}
        if 2 in labels and 0 in labels:
            n += 1
            for item, label in pairs:
                f.write(json.dumps({"query": q, "item_id": item, "gold": label}) + "\n")
print(f"bench: {n} queries with a label-2 and a label-0 hard pair", file=sys.stderr)
EOF
"$STRATA" --threads "${THREADS:-2}" label --pairs "$out/pairs.jsonl" --catalog "$data/products.tsv" \
  --labeler "cross-encoder=$ce" --cache "$out/labels-cache.jsonl" --out "$out/labels.jsonl" >&2
python3 - "$out/pairs.jsonl" "$out/labels.jsonl" <<'EOF'
import collections, json, sys
gold = [json.loads(l) for l in open(sys.argv[1])]
pred = {(j["query"], j["item_id"]): j["label"] for j in map(json.loads, open(sys.argv[2]))}
conf = collections.Counter()
by_query = collections.defaultdict(lambda: ([], []))
for g in gold:
    p = pred[(g["query"], g["item_id"])]
    conf[(g["gold"], p)] += 1
    if g["gold"] in (0, 2):
        by_query[g["query"]][g["gold"] == 0].append(p)
right = sum(v for (g, p), v in conf.items() if g == p)
print(f"hard pairs: {len(gold)}; labeler accuracy {right / len(gold):.4f}")
for g in (0, 1, 2):
    print(f"  human {g}: labeler " + ", ".join(f"{p}: {conf[(g, p)]}" for p in (0, 1, 2)))
aucs = []
for pos, neg in by_query.values():
    s = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg)
    aucs.append(s / (len(pos) * len(neg)))
print(f"hard-pair AUC of the labeler's labels: {sum(aucs) / len(aucs):.4f} over {len(aucs)} queries")
EOF
