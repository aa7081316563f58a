"""The Python package's cost against the CLI, and Ray catalog embedding with 1 and 2 actors.

    target/py-venv/bin/python bench/python_bench.py [--n 20000] [--threads 2]

(after scripts/test-python.sh has built the package into target/py-venv). Embeds the first N
Home Depot titles as items: with `strata embed` (the CLI, output to .npy, process start and
model load included) and with `strata.Model.embed_items` (model load included), alternating
runs; then through `strata.ray.embed_items` on a local Ray cluster with 1 and 2 actors (each
actor single-threaded: what a cluster of 1-CPU workers does). Prints seconds and ratios."""

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


def titles(n):
    with open(HOMEDEPOT / "products.tsv", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        out = []
        for r in rows:
            name = (r.get("name") or r.get("product_title") or "").strip()
            if name:
                out.append(" ".join(name.split()))
            if len(out) == n:
                return out
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    texts = titles(a.n)
    os.environ["RAYON_NUM_THREADS"] = str(a.threads)
    import strata

    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "titles.txt"
        inp.write_text("\n".join(texts) + "\n")
        cli_s, py_s = [], []
        for _ in range(a.rounds):
            t = time.perf_counter()
            subprocess.run([str(STRATA), "--threads", str(a.threads), "embed", "--model", str(MODEL),
                            "--input", str(inp), "--output", str(Path(tmp) / "out.npy"), "--side", "item"],
                           check=True, capture_output=True)
            cli_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            m = strata.Model(MODEL)
            m.embed_items(texts)
            py_s.append(time.perf_counter() - t)
        print(f"{len(texts)} titles, {a.threads} threads: CLI {min(cli_s):.1f} s, Python {min(py_s):.1f} s "
              f"(best of {a.rounds}; Python / CLI = {min(py_s) / min(cli_s):.3f})")

    import ray
    import strata.ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"RAYON_NUM_THREADS": "1"}})
    ds = ray.data.from_items([{"id": str(i), "text": t} for i, t in enumerate(texts)]).materialize()
    for actors in (1, 2):
        t = time.perf_counter()
        n = strata.ray.embed_items(ds, str(MODEL), concurrency=actors, batch_size=512, num_cpus=1).count()
        print(f"Ray Data, {actors} actor(s) of 1 thread: {n} titles in {time.perf_counter() - t:.1f} s")
    ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
