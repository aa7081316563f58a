"""Checks that a folder written by `strata export` loads in sentence-transformers and gives the
same query embeddings as `strata embed --side query` (max abs difference printed).
Usage: python bench/check_st_export.py EXPORT_DIR STRATA_EMBEDDINGS.jsonl TEXTS.txt
"""
import json, os, sys
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
from sentence_transformers import SentenceTransformer

folder, emb_path, texts_path = sys.argv[1:4]
texts = [l.rstrip("\n") for l in open(texts_path, encoding="utf-8") if l.strip()]
ours = np.array([json.loads(l)["embedding"] for l in open(emb_path)], dtype=np.float32)
model = SentenceTransformer(folder, device="cpu")
theirs = model.encode(texts, normalize_embeddings=False, convert_to_numpy=True)
diff = float(np.abs(ours - theirs).max())
print(json.dumps({"texts": len(texts), "dim": int(theirs.shape[1]), "max_abs_diff": diff}))
sys.exit(0 if diff < 1e-4 else 1)
