"""One training step of the two-tower retriever in PyTorch, for `strata bench train`.

Reads the batch that `strata bench train --dump BATCH.json` wrote (the same queries, item
texts, forward chunks, instances and labels strata trains on) and times the same step:
the shared encoder (Hugging Face BertModel) on each chunk, mean pooling, L2 normalisation,
graded SupCon (paper eq. 2, reduction = sum, learnable temperature), backward, global-norm
gradient clipping and AdamW (no decay on biases and LayerNorm; the temperature has its own
learning rate). A fixed number of threads.

Usage: python bench/train_step_torch.py BATCH.json THREADS [STEPS] [DEVICE=cpu]
Prints one JSON line with forward / backward / optimizer seconds per step and instances/s. On
a GPU each phase ends with a synchronisation, as strata's do.
"""
import json, math, os, sys, time

batch_file, threads = sys.argv[1], int(sys.argv[2])
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 5
device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
torch.set_num_threads(threads)
torch.manual_seed(0)
from transformers import AutoModel, AutoTokenizer

spec = json.load(open(batch_file, encoding="utf-8"))
model_dir = spec["model"]
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModel.from_pretrained(model_dir).to(device)
model.train()
for m in model.modules():  # dropout off, as in strata's default
    if isinstance(m, torch.nn.Dropout):
        m.p = 0.0
log_tau = torch.nn.Parameter(torch.tensor(math.log(spec["temperature"]), device=device))

no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
opt = torch.optim.AdamW(
    [
        {"params": decay, "lr": spec["lr"], "weight_decay": spec["weight_decay"]},
        {"params": no_decay, "lr": spec["lr"], "weight_decay": 0.0},
        {"params": [log_tau], "lr": spec["temperature_lr"], "weight_decay": 0.0},
    ],
    eps=spec["epsilon"],
)

max_len = spec["max_len"]
queries, items = spec["queries"], spec["items"]
q_chunks = [tok([queries[i] for i in c], padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(device) for c in spec["query_chunks"]]
i_chunks = [tok([items[i] for i in c], padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(device) for c in spec["item_chunks"]]
q_order = torch.tensor([i for c in spec["query_chunks"] for i in c], device=device)
i_order = torch.tensor([i for c in spec["item_chunks"] for i in c], device=device)
instances = spec["instances"]
n_inst = len(instances)
width = max(len(x["items"]) for x in instances)
q_rows = torch.tensor([x["query"] for x in instances])
item_index = torch.zeros(n_inst, width, dtype=torch.long)
mask = torch.zeros(n_inst, width, dtype=torch.bool)
labels = torch.zeros(n_inst, width)
for r, x in enumerate(instances):
    for c, (it, lab) in enumerate(zip(x["items"], x["labels"])):
        item_index[r, c] = it
        mask[r, c] = True
        labels[r, c] = lab
q_rows, item_index, mask, labels = (t.to(device) for t in (q_rows, item_index, mask, labels))
tokens = sum(int(b["attention_mask"].sum()) for b in q_chunks + i_chunks)
padded = sum(b["input_ids"].numel() for b in q_chunks + i_chunks)


def embed(chunks, order, n):
    outs = []
    for b in chunks:
        h = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
        outs.append(torch.nn.functional.normalize(pooled, dim=-1))
    cat = torch.cat(outs)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(len(order), device=order.device)
    return cat[inv]  # row i = text i


def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step():
    sync()
    t0 = time.perf_counter()
    q = embed(q_chunks, q_order, len(queries))[q_rows]            # [n, D]
    d = embed(i_chunks, i_order, len(items))[item_index]          # [n, width, D]
    s = (d * q.unsqueeze(1)).sum(-1)                              # [n, width]
    tau = log_tau.exp().clamp(0.01, 1.0)
    logits = (s / tau).masked_fill(~mask, float("-inf"))
    logp = torch.log_softmax(logits, dim=1).masked_fill(~mask, 0.0)
    loss = (-(logp * labels).sum(1) / labels.sum(1)).sum()
    value = float(loss)
    t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    sync()
    t2 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(list(model.parameters()) + [log_tau], spec["grad_clip"])
    opt.step()
    sync()
    t3 = time.perf_counter()
    return value, t1 - t0, t2 - t1, t3 - t2


first = step()  # warm-up
times = [step() for _ in range(steps)]
fwd = sum(t[1] for t in times) / steps
bwd = sum(t[2] for t in times) / steps
upd = sum(t[3] for t in times) / steps
total = fwd + bwd + upd
print(json.dumps({
    "system": "pytorch", "torch": torch.__version__, "device": device, "threads": threads, "steps": steps,
    "instances": n_inst, "texts": len(queries) + len(items), "tokens": tokens, "padded_tokens": padded,
    "forward_s": round(fwd, 4), "backward_s": round(bwd, 4), "optimizer_s": round(upd, 4),
    "step_s": round(total, 4), "instances_per_s": round(n_inst / total, 2),
    "first_loss": round(first[0], 5), "last_loss": round(times[-1][0], 5),
}))
