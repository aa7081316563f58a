"""The Python package's cost against the CLI, and Ray catalog embedding and sharded mining with
1 and 2 actors.

    target/py-venv/bin/python bench/python_bench.py [--n 20000] [--threads 2] [--parts cli,ray-embed,ray-mine]

(after scripts/test-python.sh has built the package into target/py-venv). Embeds the first N
Home Depot titles as items: with `strata embed` (the CLI, output to .npy, process start and
model load included) and with `strata.Model.embed_items` (model load included), alternating
runs; then through `strata.ray.embed_items` on a local Ray cluster with 1 and 2 actors (each
actor single-threaded: what a cluster of 1-CPU workers does); then mining (k 50, every query
of the Home Depot judgments whose products are among the first N, searched over those N
products) single-machine with `strata.mine --search exact` and with `strata.ray.mine` (2
shards) on 1 and 2 actors. Prints seconds and ratios."""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "all-MiniLM-L6-v2"
STRATA = Path(os.environ.get("STRATA_BIN", REPO / "target" / "release" / "strata"))
HOMEDEPOT = Path(os.environ.get("HOMEDEPOT", REPO.parent / "shared" / "data" / "homedepot"))


def products(n):
    """The first `n` Home Depot products with a title: (ids, titles)."""
    with open(HOMEDEPOT / "products.tsv", newline="") as f:
        ids, out = [], []
        for r in csv.DictReader(f, delimiter="\t"):
            name = " ".join((r.get("product_title") or "").split())
            if name:
                ids.append(r["product_uid"])
                out.append(name)
            if len(out) == n:
                break
    return ids, out


def mining_data(tmp, ids, texts):
    """A catalog of those products and the judgments on them."""
    cat = Path(tmp) / "catalog.tsv"
    cat.write_text("id\tname\n" + "".join(f"{i}\t{t}\n" for i, t in zip(ids, texts)))
    keep = set(ids)
    js = Path(tmp) / "judgments.tsv"
    with open(HOMEDEPOT / "judgments.tsv", newline="") as f, open(js, "w") as out:
        out.write("query\titem_id\tlabel\n")
        for r in csv.DictReader(f, delimiter="\t"):
            if r["product_uid"] in keep:
                out.write(f"{r['query']}\t{r['product_uid']}\t{r['label']}\n")
    return cat, js


def python_vs_cli(texts, threads, rounds):
    import strata

    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "titles.txt"
        inp.write_text("\n".join(texts) + "\n")
        cli_s, py_s = [], []
        for _ in range(rounds):
            t = time.perf_counter()
            subprocess.run([str(STRATA), "--threads", str(threads), "embed", "--model", str(MODEL),
                            "--input", str(inp), "--output", str(Path(tmp) / "out.npy"), "--side", "item"],
                           check=True, capture_output=True)
            cli_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            m = strata.Model(MODEL)
            m.embed_items(texts)
            py_s.append(time.perf_counter() - t)
        print(f"{len(texts)} titles, {threads} threads: CLI {min(cli_s):.1f} s, Python {min(py_s):.1f} s "
              f"(best of {rounds}; Python / CLI = {min(py_s) / min(cli_s):.3f})")


def ray_embedding(texts):
    import ray
    import strata.ray

    ds = ray.data.from_items([{"id": str(i), "text": t} for i, t in enumerate(texts)]).materialize()
    for actors in (1, 2):
        t = time.perf_counter()
        n = strata.ray.embed_items(ds, str(MODEL), concurrency=actors, batch_size=512, num_cpus=1).count()
        print(f"Ray Data, {actors} actor(s) of 1 thread: {n} titles in {time.perf_counter() - t:.1f} s")


def ray_mining(ids, texts, threads):
    import strata
    import strata.ray

    with tempfile.TemporaryDirectory() as tmp:
        cat, js = mining_data(tmp, ids, texts)
        m = strata.Model(MODEL)
        t = time.perf_counter()
        single = strata.mine(m, cat, js, Path(tmp) / "single", k=50, search="exact", whole_catalog=True)
        print(f"mining {single['queries']} queries over {single['corpus_items']} items, k 50: "
              f"strata.mine ({threads} threads) {time.perf_counter() - t:.1f} s")
        want = (Path(tmp) / "single" / "judgments.jsonl").read_text()
        for actors in (1, 2):
            out = Path(tmp) / f"ray{actors}"
            t = time.perf_counter()
            strata.ray.mine(str(MODEL), str(cat), str(js), str(out), k=50, shards=2,
                            concurrency=actors, whole_catalog=True)
            same = (out / "judgments.jsonl").read_text() == want
            print(f"strata.ray.mine, 2 shards, {actors} actor(s) of 1 thread: "
                  f"{time.perf_counter() - t:.1f} s (equal to strata.mine: {same})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--parts", default="cli,ray-embed,ray-mine",
                    help="comma-separated: cli (Python vs CLI), ray-embed, ray-mine")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    ids, texts = products(a.n)
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    if "cli" in parts:
        python_vs_cli(texts, a.threads, a.rounds)
    if parts & {"ray-embed", "ray-mine"}:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1"}})
        if "ray-embed" in parts:
            ray_embedding(texts)
        if "ray-mine" in parts:
            ray_mining(ids, texts, a.threads)
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
