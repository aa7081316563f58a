"""The sentence-transformers peer of strata's training (issue: quality on real graded data).

Fine-tunes a sentence-transformers model on the same training judgments strata trains on, with
sentence-transformers' own loss modules, and saves each result as a sentence-transformers
folder that `strata eval --model DIR` loads. The loop is the one SentenceTransformerTrainer
runs for these losses: AdamW (weight decay 0.01, epsilon 1e-6), linear warmup over 10% of the
updates then linear decay, batches without a repeated text (the NO_DUPLICATES sampler that
sentence-transformers recommends for in-batch-negative losses), fixed seed.

Variants (name: loss, data):
  mnrl-b64-e1     MultipleNegativesRankingLoss on label-2 pairs, batch 64, 1 epoch, lr 2e-5
  mnrl-b64-e3     the same, 3 epochs
  mnrl-b256-e5    the same, batch 256, 5 epochs, lr 5e-5
  mnrl-hn-b64-e1  MNRL on (query, label-2 item, negative) triplets: the negative is a judged
                  label-0 item of the query when it has one, else a random unjudged catalog
                  item; batch 64, 1 epoch, lr 2e-5
  cosent-b64-e1   CoSENTLoss on every judged pair, score = label / 2; batch 64, 1 epoch, lr 2e-5

  python bench/st_peer.py --catalog products.tsv --train train.tsv --base MODEL --out DIR \
      [--variants mnrl-b64-e1,cosent-b64-e1] [--threads 2]
"""

import argparse
import csv
import json
import math
import os
import random
import sys
import time

VARIANTS = {
    "mnrl-b64-e1": dict(loss="mnrl", batch=64, epochs=1, lr=2e-5),
    "mnrl-b64-e3": dict(loss="mnrl", batch=64, epochs=3, lr=2e-5),
    "mnrl-b256-e5": dict(loss="mnrl", batch=256, epochs=5, lr=5e-5),
    "mnrl-hn-b64-e1": dict(loss="mnrl-hn", batch=64, epochs=1, lr=2e-5),
    "cosent-b64-e1": dict(loss="cosent", batch=64, epochs=1, lr=2e-5),
}


def read_tsv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def load(catalog_path, train_path):
    titles = {}
    for i, r in enumerate(read_tsv(catalog_path), start=2):
        uid, title = r.get("product_uid"), r.get("product_title")
        if uid is None or title is None:
            sys.exit(f"{catalog_path}:{i}: needs columns product_uid and product_title")
        titles[uid] = title
    judged = {}
    for i, r in enumerate(read_tsv(train_path), start=2):
        q, uid, label = r.get("query"), r.get("item_id", r.get("product_uid")), r.get("label")
        if q is None or uid is None or label not in ("0", "1", "2"):
            sys.exit(f"{train_path}:{i}: needs query, item_id (or product_uid) and label 0/1/2")
        if uid not in titles:
            sys.exit(f"{train_path}:{i}: product_uid {uid} is not in {catalog_path}")
        judged.setdefault(q, {})[uid] = int(label)
    return titles, judged


def examples(kind, titles, judged, rng):
    """Rows of texts (and a score for CoSENT), in judgment order."""
    uids = list(titles)
    rows = []
    for q, items in judged.items():
        pos = [u for u, l in items.items() if l == 2]
        neg = [u for u, l in items.items() if l == 0]
        if kind == "cosent":
            rows += [((q, titles[u]), l / 2.0) for u, l in items.items()]
            continue
        for u in pos:
            if kind == "mnrl":
                rows.append(((q, titles[u]), None))
            else:
                if neg:
                    n = rng.choice(neg)
                else:
                    n = rng.choice(uids)
                    while n in items:
                        n = rng.choice(uids)
                rows.append(((q, titles[u], titles[n]), None))
    return rows


def batches(rows, size, rng, no_duplicates):
    """Shuffled batches; with no_duplicates, a row whose texts are already in the batch waits
    for a later batch (sentence-transformers' NoDuplicatesBatchSampler)."""
    order = list(range(len(rows)))
    rng.shuffle(order)
    if not no_duplicates:
        return [order[i : i + size] for i in range(0, len(order), size)]
    out = []
    pending = order
    while pending:
        batch, seen, rest = [], set(), []
        for i in pending:
            texts = rows[i][0]
            if len(batch) < size and not any(t in seen for t in texts):
                batch.append(i)
                seen.update(texts)
            else:
                rest.append(i)
        out.append(batch)
        pending = rest
    return out


def train(name, spec, base, titles, judged, out, seed):
    import torch
    from sentence_transformers import SentenceTransformer, losses

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = SentenceTransformer(base, device="cpu")
    loss_fn = {
        "mnrl": losses.MultipleNegativesRankingLoss,
        "mnrl-hn": losses.MultipleNegativesRankingLoss,
        "cosent": losses.CoSENTLoss,
    }[spec["loss"]](model)
    rows = examples(spec["loss"], titles, judged, rng)
    per_epoch = [batches(rows, spec["batch"], rng, spec["loss"] != "cosent") for _ in range(spec["epochs"])]
    total = sum(len(b) for b in per_epoch)
    warmup = math.ceil(0.1 * total)
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=0.01, eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    model.train()
    t0, step, last = time.time(), 0, None
    for epoch_batches in per_epoch:
        for b in epoch_batches:
            cols = list(zip(*[rows[i][0] for i in b]))
            features = [model.tokenize(list(c)) for c in cols]
            labels = None
            if spec["loss"] == "cosent":
                labels = torch.tensor([rows[i][1] for i in b], dtype=torch.float32)
            loss = loss_fn(features, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            step += 1
            last = loss.item()
            if step % 20 == 0 or step == total:
                el = time.time() - t0
                print(f"peer {name}: update {step}/{total} loss {last:.4f} {el:.0f} s", file=sys.stderr, flush=True)
    dest = os.path.join(out, name)
    model.save(dest + ".partial")
    if os.path.isdir(dest):
        import shutil

        shutil.rmtree(dest)
    os.rename(dest + ".partial", dest)
    return dict(variant=name, **spec, examples=len(rows), updates=total, seconds=round(time.time() - t0, 1), last_loss=last)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", required=True)
    ap.add_argument("--train", required=True, help="training judgments TSV (query, item_id or product_uid, label)")
    ap.add_argument("--base", required=True, help="sentence-transformers folder to start from")
    ap.add_argument("--out", required=True)
    ap.add_argument("--variants", default="mnrl-b64-e1")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    names = [v for v in a.variants.split(",") if v]
    for v in names:
        if v not in VARIANTS:
            sys.exit(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    titles, judged = load(a.catalog, a.train)
    os.makedirs(a.out, exist_ok=True)
    for v in names:
        if os.path.isfile(os.path.join(a.out, v, "modules.json")):
            print(f"peer {v}: already trained", file=sys.stderr)
            continue
        info = train(v, VARIANTS[v], a.base, titles, judged, a.out, a.seed)
        with open(os.path.join(a.out, v, "peer.json"), "w") as f:
            json.dump(info, f, indent=1)
        print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
