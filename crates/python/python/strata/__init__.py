"""strata: train, evaluate and serve graded-relevance embedding retrievers.

The Python package over strata's Rust core: load a model (a strata model directory or a
Hugging Face folder), embed queries and items into numpy arrays, and evaluate a model, BM25 or
their hybrid with the protocol of ``strata eval``.

    import strata
    model = strata.Model("models/all-MiniLM-L6-v2")
    q = model.embed_queries(["cordless drill"])          # float32, shape (1, 384)
    ids, texts = strata.item_texts("catalog.tsv", model.item_text)
    items = model.embed_items(texts)
    best = ids[int((items @ q[0]).argmax())]
    metrics = strata.evaluate("catalog.tsv", "judgments.tsv", model)
    print(metrics["ndcg@10"], metrics["avg_margin"])

``strata.mine`` runs the mining step with any labeler, a Python callable included (an LLM
client you already have, say): it receives ``(query, item id, item text)`` tuples and returns
one label (0, 1, 2) or ``None`` each. ``strata.train`` runs ``strata train``'s configuration.
``strata.Index`` builds, opens and searches the item index that ``strata serve`` serves:

    index = strata.Index.build("items.idx", "catalog.tsv", model)
    hits = index.search(["cordless drill"], k=10, model=model, mode="hybrid")

Errors from the core are raised as :class:`StrataError` with strata's message.
"""

from ._strata import (
    Index,
    Labeler,
    Model,
    StrataError,
    __version__,
    evaluate,
    exact_topk,
    item_texts,
    mine,
    mine_from_hits,
    mining_corpus,
    set_threads,
    train,
    unjudged_pairs,
)

__all__ = [
    "Index",
    "Labeler",
    "Model",
    "StrataError",
    "evaluate",
    "exact_topk",
    "item_texts",
    "mine",
    "mine_from_hits",
    "mining_corpus",
    "set_threads",
    "train",
    "unjudged_pairs",
    "__version__",
]
