#!/usr/bin/env bash
# The PostgreSQL + pgvector backend on the Home Depot catalog, after bench/serve_homedepot.sh
# has built WORK_DIR/index and the eval runs with the same model:
#  1. a throwaway PostgreSQL cluster on 127.0.0.1 (scripts/setup-postgres.sh installs it);
#  2. `strata index export --to postgres://...` and `strata serve --backend postgres://...`;
#  3. the 500 queries in semantic mode: fraction with the eval's exact top 10 and with the
#     index server's top 10, and NDCG@10 served;
#  4. `strata bench serve` on /search at a sustained 100 QPS and a rate sweep (p99 <= 50 ms).
#   bench/serve_homedepot_pg.sh MODEL_DIR [WORK_DIR] [PORT]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
model="${1:?usage: bench/serve_homedepot_pg.sh MODEL_DIR [WORK_DIR] [PORT]}"
work="${2:-$repo/target/serve-homedepot}"
port="${3:-18081}"
ef="${PG_EF_SEARCH:-200}"
strata="$repo/target/release/strata"
[ -f "$work/index/manifest.json" ] || { echo "run bench/serve_homedepot.sh first" >&2; exit 1; }
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
pgdir="$(mktemp -d /tmp/strata-pgbench-XXXXXX)"
pgport=$((20000 + RANDOM % 10000))
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres: "$pgdir"
as_pg "$bin/initdb" --auth=trust --username=postgres --no-sync --locale=C -D "$pgdir/data" > /dev/null
as_pg "$bin/pg_ctl" start -w -D "$pgdir/data" -l "$pgdir/server.log" \
  -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdir -c fsync=off -c max_connections=50 -c shared_buffers=512MB" > /dev/null
server=""
cleanup() {
  [ -n "$server" ] && { kill -TERM "$server" 2>/dev/null; wait "$server" 2>/dev/null || true; }
  as_pg "$bin/pg_ctl" stop -m fast -D "$pgdir/data" > /dev/null 2>&1 || true
  rm -rf "$pgdir"
}
trap cleanup EXIT
url="postgres://postgres@127.0.0.1:$pgport/postgres"

echo "== strata index export --to $url"
"$strata" index export --index "$work/index" --to "$url" --table homedepot | tee "$work/pg-export.json"

echo "== strata serve --backend on 127.0.0.1:$port (hnsw.ef_search $ef)"
"$strata" serve --model "$model" --backend "$url" --table homedepot --pg-ef-search "$ef" \
  --host 127.0.0.1 --port "$port" 2> "$work/serve-pg.log" &
server=$!
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$port/health" > /dev/null && break
  kill -0 $server 2>/dev/null || { cat "$work/serve-pg.log" >&2; exit 1; }
  sleep 1
done

echo "== /search (pgvector) vs strata eval"
python3 - "$port" "$work" <<'PY'
import json, sys, urllib.request
port, work = sys.argv[1], sys.argv[2]
def search(q, k):
    body = json.dumps({"query": q, "mode": "semantic", "k": k}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/search", body,
                                 {"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["results"]
ev = [json.loads(l) for l in open(f"{work}/eval-dense/rankings.jsonl")]
same = overlap = 0
for r in ev:
    got = [h["id"] for h in search(r["query"], 10)]
    same += got == r["items"][:10]
    overlap += len(set(got) & set(r["items"][:10])) / 10
out = {"queries": len(ev), "identical_top10": same / len(ev), "recall@10_vs_exact": overlap / len(ev)}
print(f"pgvector semantic: {same}/{len(ev)} queries with the eval's exact top 10 "
      f"({same / len(ev):.4f}); recall@10 against exact {overlap / len(ev):.4f}")
json.dump(out, open(f"{work}/agreement-pg.json", "w"), indent=2)
PY

echo "== strata bench serve (pgvector): /search semantic at a sustained 100 QPS"
"$strata" bench serve --url "http://127.0.0.1:$port" --judgments "$work/judgments500.tsv" \
  --endpoint search --mode semantic --rate 100 --requests 3000 --max-seconds 40 \
  --concurrency 16 --out "$work/bench-pg-100qps.json"
echo "== strata bench serve (pgvector): rate sweep, p99 <= 50 ms"
"$strata" bench serve --url "http://127.0.0.1:$port" --judgments "$work/judgments500.tsv" \
  --endpoint search --mode semantic --sweep 50,100,150,200,300,400,600 --p99-ms 50 \
  --requests 1500 --max-seconds 15 --concurrency 32 --out "$work/bench-pg-sweep.json"
