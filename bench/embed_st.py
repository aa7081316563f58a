"""Item-embedding throughput of sentence-transformers (PyTorch) on product titles.

Same job as `strata bench embed`: the first N titles of products.tsv, mean pooling,
L2-normalised, batch size 128, a fixed number of threads.
Usage: python bench/embed_st.py MODEL_DIR PRODUCTS_TSV N THREADS [DEVICE=cpu]
Prints one JSON line: {"system": "sentence-transformers", "texts": N, "seconds": s, "per_sec": r}.
"""
import csv, json, os, sys, time

model_dir, tsv, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
torch.set_num_threads(threads)
from sentence_transformers import SentenceTransformer

with open(tsv, newline="", encoding="utf-8") as f:
    rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    next(rows)
    titles = [r[1] for _, r in zip(range(n), rows)]

model = SentenceTransformer(model_dir, device=device)
model.max_seq_length = 128
model.encode(titles[:64], batch_size=128)  # warm-up
t = time.perf_counter()
emb = model.encode(titles, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)
s = time.perf_counter() - t
print(json.dumps({"system": "sentence-transformers", "torch": torch.__version__, "device": device, "threads": threads,
                  "texts": len(titles), "seconds": round(s, 3), "per_sec": round(len(titles) / s, 1),
                  "checksum": float(emb.sum())}))
