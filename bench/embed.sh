#!/usr/bin/env bash
# Item-embedding throughput, strata vs sentence-transformers (PyTorch), same machine, same
# titles, same thread count. Prints both JSON lines and the ratio strata/sentence-transformers.
#   bench/embed.sh [N=20000] [THREADS=2]      (PRECISION=f32|int8|tensor picks strata's path)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${1:-20000}"; threads="${2:-2}"
model="${STRATA_MODELS:-$repo/models}/all-MiniLM-L6-v2"
titles="$repo/../shared/data/homedepot/products.tsv"
[ -f "$titles" ] || { echo "bench: $titles not found" >&2; exit 1; }
py="$("$repo/scripts/python-bench-env.sh" | tail -n1)"
(cd "$repo" && cargo build --release -q -p strata)
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
s="$(RAYON_NUM_THREADS="$threads" "$repo/target/release/strata" --threads "$threads" bench embed --model "$model" --titles "$titles" --n "$n" --precision "${PRECISION:-f32}" 2>/dev/null)"
p="$("$py" "$repo/bench/embed_st.py" "$model" "$titles" "$n" "$threads" 2>/dev/null)"
echo "$s"; echo "$p"
python3 - "$s" "$p" <<'PY'
import json, sys
s, p = (json.loads(x) for x in sys.argv[1:3])
print(f"ratio strata/sentence-transformers (throughput): {s['per_sec'] / p['per_sec']:.2f}x")
PY
