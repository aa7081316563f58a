"""Helpers of bench/gpu.sh (PyTorch side).

  python bench/gpu_tools.py make-model SKELETON OUT
      A model of SKELETON's shape with random weights (seed 0): SKELETON holds a Hugging Face
      config.json and the tokenizer files (no weights, so a bundle stays small); OUT gets the
      same files plus model.safetensors, loadable by strata and by sentence-transformers.

  python bench/gpu_tools.py agree MODEL TITLES DEVICE NAME=FILE.npy...
      Embeds TITLES (one per line) with sentence-transformers on DEVICE (mean pooling, L2
      normalised, as strata) and prints one JSON line comparing every pair of embedding
      matrices: the given .npy files and PyTorch's (max |difference|, lowest row cosine).

  python bench/gpu_tools.py summary RESULTS.jsonl
      The table of bench/gpu.sh's JSON lines: throughputs and strata / PyTorch ratios.
"""
import json, os, shutil, sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_model(skeleton, out):
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(skeleton)
    model = AutoModel.from_config(config)
    model.eval()
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(skeleton):
        src = os.path.join(skeleton, name)
        if name != "config.json" and not name.endswith((".safetensors", ".bin")):
            (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, os.path.join(out, name))
    model.save_pretrained(out, safe_serialization=True)
    print(json.dumps({"model": out, "parameters": sum(p.numel() for p in model.parameters())}))


def agree(model_dir, titles_file, device, files):
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    titles = [l.rstrip("\n") for l in open(titles_file, encoding="utf-8")]
    st = SentenceTransformer(model_dir, device=device)
    st.max_seq_length = 128
    ref = st.encode(titles, batch_size=128, normalize_embeddings=True, convert_to_numpy=True)
    mats = {f"pytorch-{device}": ref.astype(np.float32)}
    for spec in files:
        name, path = spec.split("=", 1)
        mats[name] = np.load(path).astype(np.float32)
    names = list(mats)
    out = {"texts": len(titles), "pairs": []}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            x, y = mats[a], mats[b]
            if x.shape != y.shape:
                raise SystemExit(f"agree: {a} is {x.shape}, {b} is {y.shape}")
            cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
            out["pairs"].append({"a": a, "b": b, "max_abs_diff": float(np.abs(x - y).max()),
                                 "min_cosine": float(cos.min())})
    print(json.dumps(out))


def summary(path):
    rows = [json.loads(l) for l in open(path, encoding="utf-8") if l.startswith("{")]
    embed = [r for r in rows if "per_sec" in r]
    steps = [r for r in rows if "instances_per_s" in r]
    agree = [r for r in rows if "pairs" in r]
    ref = next((r for r in embed if r["system"] != "strata"), None)
    print("| embedding | device | texts/s | vs PyTorch |")
    print("|---|---|---|---|")
    for r in embed:
        name = r["system"] + (f" ({r.get('precision')})" if r["system"] == "strata" else "")
        ratio = f"{r['per_sec'] / ref['per_sec']:.2f}x" if ref else ""
        print(f"| {name} | {r.get('device', '')} | {r['per_sec']:.1f} | {ratio} |")
    print("\n| training step | instances | device | instances/s | vs PyTorch | first loss |")
    print("|---|---|---|---|---|---|")
    for r in steps:
        peer = next((p for p in steps if p["system"] != "strata" and p["instances"] == r["instances"]), None)
        ratio = f"{r['instances_per_s'] / peer['instances_per_s']:.2f}x" if peer else ""
        print(f"| {r['system']} | {r['instances']} | {r.get('device', '')} | {r['instances_per_s']:.1f} | {ratio} | {r['first_loss']:.5f} |")
    for a in agree:
        print(f"\n| agreement ({a['texts']} titles) | max abs diff | min cosine |")
        print("|---|---|---|")
        for p in a["pairs"]:
            print(f"| {p['a']} vs {p['b']} | {p['max_abs_diff']:.2e} | {p['min_cosine']:.7f} |")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make-model":
        make_model(*args)
    elif cmd == "agree":
        agree(args[0], args[1], args[2], args[3:])
    elif cmd == "summary":
        summary(*args)
    else:
        raise SystemExit(f"unknown command {cmd}")
