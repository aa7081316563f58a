"""Uniform weight average ("model soup") of strata models fine-tuned from the same base.

    .venv-bench/bin/python bench/average_models.py OUT MODEL_DIR MODEL_DIR [MODEL_DIR ...]

Every MODEL_DIR is a strata model folder (model.safetensors, strata.json, tokenizer.json) with
the same parameters; OUT receives the element-wise mean of their float tensors (accumulated in
float64) with the first folder's strata.json and tokenizer.json, and is then an ordinary strata
model (`strata eval --model OUT`). The Home Depot seed rows of docs/benchmarks.md were averaged
with it. Refuses models whose parameter names, shapes or dtypes differ, and an existing OUT.
"""

import os
import shutil
import sys

import numpy as np
from safetensors.numpy import load_file, save_file


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    out, dirs = sys.argv[1], sys.argv[2:]
    if os.path.exists(out):
        sys.exit(f"{out} exists: choose a new folder")
    tensors = []
    for d in dirs:
        path = os.path.join(d, "model.safetensors")
        if not os.path.isfile(path):
            sys.exit(f"{d}: no model.safetensors (not a strata model folder)")
        tensors.append(load_file(path))
    first = tensors[0]
    for d, t in zip(dirs[1:], tensors[1:]):
        if set(t) != set(first):
            sys.exit(f"{d}: parameter names differ from {dirs[0]}'s: {sorted(set(t) ^ set(first))[:5]}")
        for k, v in t.items():
            if v.shape != first[k].shape or v.dtype != first[k].dtype:
                sys.exit(f"{d}: {k} is {v.dtype}{list(v.shape)}, {dirs[0]} has "
                         f"{first[k].dtype}{list(first[k].shape)}")
    averaged = {}
    for k, v in first.items():
        if v.dtype.kind == "f":
            averaged[k] = (sum(t[k].astype(np.float64) for t in tensors) / len(tensors)).astype(v.dtype)
        else:
            averaged[k] = v
    tmp = out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in ("strata.json", "tokenizer.json"):
        shutil.copy(os.path.join(dirs[0], name), os.path.join(tmp, name))
    save_file(averaged, os.path.join(tmp, "model.safetensors"))
    os.rename(tmp, out)
    print(f"{out}: mean of {len(dirs)} models, {len(averaged)} tensors")


if __name__ == "__main__":
    main()
