#!/usr/bin/env bash
# One training step, strata vs PyTorch, on the same batch of Home Depot instances, same model,
# same loss (graded SupCon), same optimizer (AdamW), same thread count. strata draws the batch
# and writes it to JSON; the PyTorch script reads it, so both encode the same chunks.
# Prints both JSON lines and the ratio of instances per second strata/PyTorch.
#   bench/train_step.sh [INSTANCES=16] [THREADS=2] [STEPS=5]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${1:-16}"; threads="${2:-2}"; steps="${3:-5}"
model="${STRATA_MODELS:-$repo/models}/all-MiniLM-L6-v2"
data="$repo/../shared/data/homedepot"
[ -f "$data/judgments.tsv" ] || { echo "bench: $data/judgments.tsv not found" >&2; exit 1; }
py="$("$repo/scripts/python-bench-env.sh" | tail -n1)"
(cd "$repo" && cargo build --release -q -p strata)
batch="$(mktemp --suffix .json)"
trap 'rm -f "$batch"' EXIT
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
s="$(RAYON_NUM_THREADS="$threads" "$repo/target/release/strata" --threads "$threads" bench train \
  --model "$model" --catalog "$data/products.tsv" --judgments "$data/judgments.tsv" \
  --instances "$n" --steps "$steps" --dump "$batch" 2>/dev/null)"
p="$("$py" "$repo/bench/train_step_torch.py" "$batch" "$threads" "$steps" 2>/dev/null)"
echo "$s"; echo "$p"
python3 - "$s" "$p" <<'PY'
import json, sys
s, p = (json.loads(x) for x in sys.argv[1:3])
print(f"ratio strata/pytorch (instances/s): {s['instances_per_s'] / p['instances_per_s']:.2f}x; "
      f"forward {s['forward_s']:.3f}s vs {p['forward_s']:.3f}s, backward {s['backward_s']:.3f}s vs {p['backward_s']:.3f}s, "
      f"optimizer {s['grads_s'] + s['optimizer_s']:.3f}s vs {p['optimizer_s']:.3f}s; "
      f"first loss {s['first_loss']:.4f} vs {p['first_loss']:.4f}")
PY
