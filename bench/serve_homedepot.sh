#!/usr/bin/env bash
# Serving on the Home Depot catalog with a given model:
#  1. `strata index build` over the whole catalog;
#  2. `strata eval` (dense and hybrid) on 500 judged queries, and `strata serve` on loopback
#     with the thresholds of the dense run;
#  3. the 500 queries sent to /search in semantic and hybrid mode, compared with the eval
#     rankings: fraction of queries with an identical top 10 (must be >= 0.99) and NDCG@10 of
#     the served hybrid results next to the eval's hybrid metrics;
#  4. `strata bench serve` on /search: a sustained 100 QPS run (p99 and the server's time per
#     stage), then a rate sweep for the highest rate with p99 <= P99_MS (default 20 ms).
# Embedding the 54,667 items takes minutes on a CPU, once: the evaluations reuse the index's
# item embeddings (--item-embeddings). HNSW_M, HNSW_EFC and EF_SEARCH set the graph (default 32 / 400 / 1024).
# SERVE_EF serves with another beam width (`strata serve --ef-search`): the agreement with the
# exact ranking is then reported but not required. SERVE_THREADS (default 2) sets the server's
# compute threads; the load generator runs on one.
#   bench/serve_homedepot.sh MODEL_DIR [WORK_DIR] [PORT]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="${1:?usage: bench/serve_homedepot.sh MODEL_DIR [WORK_DIR] [PORT]}"
work="${2:-$repo/target/serve-homedepot}"
port="${3:-18080}"
ef="${EF_SEARCH:-1024}"
p99="${P99_MS:-20}"
threads="${SERVE_THREADS:-2}"
data="${HOMEDEPOT:-$repo/../shared/data/homedepot}"
[ -f "$data/products.tsv" ] || { echo "bench: $data/products.tsv not found (set HOMEDEPOT)" >&2; exit 1; }
(cd "$repo" && cargo build --release --workspace -q)
strata="$repo/target/release/strata"
mkdir -p "$work"

# 500 judged queries (the first 500 distinct queries of the judgments file).
python3 - "$data/judgments.tsv" "$work/judgments500.tsv" <<'PY'
import sys
src, dst = sys.argv[1:3]
seen, out = set(), []
with open(src) as f:
    header = f.readline()
    for line in f:
        q = line.split("\t", 1)[0]
        if q not in seen:
            if len(seen) == 500:
                continue
            seen.add(q)
        out.append(line)
with open(dst, "w") as f:
    f.write(header)
    f.writelines(out)
PY

if [ ! -f "$work/index/manifest.json" ]; then
  echo "== strata index build (ef_search $ef)"
  "$strata" index build --model "$model" --catalog "$data/products.tsv" --out "$work/index" \
    --hnsw-m "${HNSW_M:-32}" --hnsw-ef-construction "${HNSW_EFC:-400}" --hnsw-ef-search "$ef"
fi

# The evaluations reuse the index's item embeddings (same model, same item text).
for system in dense hybrid; do
  if [ ! -f "$work/eval-$system/rankings.jsonl" ]; then
    echo "== strata eval --system $system"
    "$strata" eval --catalog "$data/products.tsv" --judgments "$work/judgments500.tsv" \
      --model "$model" --system "$system" --item-embeddings "$work/index" --out "$work/eval-$system"
  fi
done

"$strata" index thresholds --index "$work/index" --from "$work/eval-dense/thresholds.json"
echo "== strata serve on 127.0.0.1:$port (${threads} threads${SERVE_EF:+, ef_search $SERVE_EF}${EXACT:+, exact})"
"$strata" --threads "$threads" serve --model "$model" --index "$work/index" ${EXACT:+--exact} \
  ${SERVE_EF:+--ef-search "$SERVE_EF"} --host 127.0.0.1 --port "$port" \
  2> "$work/serve.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 1
done

echo "== /search vs strata eval"
python3 - "$port" "$work" "${SERVE_EF:-}" <<'PY'
import json, math, sys, urllib.request
port, work, serve_ef = sys.argv[1], sys.argv[2], sys.argv[3]
def rankings(path):
    with open(path) as f:
        return [json.loads(l) for l in f]
def search(q, mode, k):
    body = json.dumps({"query": q, "mode": mode, "k": k}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/search", body,
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["results"]
labels = {}
with open(f"{work}/judgments500.tsv") as f:
    cols = f.readline().rstrip("\n").split("\t")
    qi, ii, li = cols.index("query"), cols.index("product_uid"), cols.index("label")
    for line in f:
        c = line.rstrip("\n").split("\t")
        labels.setdefault(c[qi], {})[c[ii]] = int(c[li])
gain = {2: 1.0, 1: 0.5, 0: 0.0}
def ndcg10(q, ids):
    judged = labels.get(q, {})
    g = [gain[judged[i]] if i in judged else 0.0 for i in ids[:10]]
    ideal = sorted((gain[l] for l in judged.values()), reverse=True)[:10]
    dcg = lambda xs: sum(x / math.log2(r + 2) for r, x in enumerate(xs))
    return None if dcg(ideal) <= 0 else dcg(g) / dcg(ideal)
out = {}
TIE = 1e-5
def same_up_to_ties(got, r):
    """The served top 10 is the eval's, where items whose eval scores differ by less than
    TIE (duplicate items; float noise between batched and single-query embedding) may
    trade places."""
    want_scores = r["scores"][:10]
    if len(got) != len(want_scores):
        return False
    if any(abs(h["score"] - w) > TIE for h, w in zip(got, want_scores)):
        return False
    allowed = {i for i, s in zip(r["items"], r["scores"]) if s >= want_scores[-1] - TIE}
    return all(h["id"] in allowed for h in got)
for mode, system in [("semantic", "dense"), ("hybrid", "hybrid")]:
    ev = rankings(f"{work}/eval-{system}/rankings.jsonl")
    same, ties, nd = 0, 0, []
    for r in ev:
        hits = search(r["query"], mode, 10)
        got = [h["id"] for h in hits]
        same += got == r["items"][:10]
        ties += same_up_to_ties(hits, r)
        n = ndcg10(r["query"], got)
        if n is not None:
            nd.append(n)
    metrics = json.load(open(f"{work}/eval-{system}/metrics.json"))
    out[mode] = {
        "queries": len(ev),
        "identical_top10": same / len(ev),
        "identical_top10_up_to_ties": ties / len(ev),
        "served_ndcg@10": sum(nd) / len(nd),
        "eval_ndcg@10": metrics["ndcg@10"],
        "eval_recall@10": metrics["recall@10"],
    }
    print(f"{mode}: {same}/{len(ev)} queries with the eval's top 10 ({same / len(ev):.4f}), "
          f"{ties}/{len(ev)} up to ties ({ties / len(ev):.4f}); NDCG@10 served "
          f"{sum(nd) / len(nd):.4f}, eval {metrics['ndcg@10']:.4f} (recall@10 {metrics['recall@10']:.4f})")
json.dump(out, open(f"{work}/agreement.json", "w"), indent=2)
# With another beam width than the index's, the semantic agreement is what that width costs.
gated = [m for m in out if not (serve_ef and m == "semantic")]
ok = all(out[m]["identical_top10_up_to_ties"] >= 0.99 for m in gated)
print(f"agreement >= 0.99 ({', '.join(gated)}):", "PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY

[ "${SKIP_LOAD:-0}" = 1 ] && exit 0
echo "== strata bench serve: /search semantic at a sustained 100 QPS"
"$strata" --threads 1 bench serve --url "http://127.0.0.1:$port" --judgments "$work/judgments500.tsv" \
  --endpoint search --mode semantic --rate 100 --requests 3000 --max-seconds 40 \
  --concurrency 16 --out "$work/bench-100qps.json"
echo "== strata bench serve: rate sweep, p99 <= $p99 ms"
"$strata" --threads 1 bench serve --url "http://127.0.0.1:$port" --judgments "$work/judgments500.tsv" \
  --endpoint search --mode semantic --sweep 50,75,100,125,150,175,200,300,400 --p99-ms "$p99" \
  --requests 1500 --max-seconds 15 --concurrency 32 --out "$work/bench-sweep.json"
