"""Scale-out on Ray Data: embed catalogs too large for one machine's hours with strata, one
model load per actor.

    import ray, strata.ray
    ds = strata.ray.catalog_dataset("catalog.tsv", item_text="name+taxonomy")  # id, text
    vectors = strata.ray.embed_items(ds, "models/all-MiniLM-L6-v2", concurrency=2)
    vectors.write_parquet("s3://bucket/item-vectors/")     # id, text, embedding
    # Mining: sharded exact search and the labeling of mined pairs on actors, then selection.
    report = strata.ray.mine("models/all-MiniLM-L6-v2", "catalog.tsv", "train.jsonl", "mined/",
                             labeler=my_llm_labeler, shards=8, concurrency=4)

The same code runs on a multi-node cluster: ``ray.init(address="auto")`` on a node of it,
``concurrency`` actors spread over the nodes (each needs the model directory at the same path,
or set ``model_path`` to shared storage), and ``ray.data.read_parquet`` of a catalog on shared
storage instead of ``catalog_dataset``. Mining's label cache is a directory each labeling actor
appends its own file to; on several nodes put it (``cache=``) on storage every node mounts.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from ray.data import ActorPoolStrategy

import strata


class StrataItemEmbedder:
    """A callable class for ``Dataset.map_batches`` with an actor pool: loads the model once
    per actor and adds ``output_column`` (float32 vectors, rows L2-normalised) embedding the
    ``text_column`` of each batch with the item tower."""

    def __init__(
        self,
        model_path: str,
        text_column: str = "text",
        output_column: str = "embedding",
        **model_options: Any,
    ) -> None:
        self.model = strata.Model(model_path, **model_options)
        self.text_column = text_column
        self.output_column = output_column

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch[self.text_column]]
        batch[self.output_column] = self.model.embed_items(texts)
        return batch


def catalog_dataset(catalog_path: str, item_text: str = "name+taxonomy"):
    """A Ray dataset of a catalog file's items (any format strata reads): columns ``id`` and
    ``text``, the item text the item tower reads."""
    import ray

    ids, texts = strata.item_texts(catalog_path, item_text)
    return ray.data.from_items([{"id": i, "text": t} for i, t in zip(ids, texts)])


def embed_items(
    dataset,
    model_path: str,
    *,
    concurrency: int = 2,
    batch_size: int = 256,
    text_column: str = "text",
    output_column: str = "embedding",
    num_cpus: Optional[float] = None,
    **model_options: Any,
):
    """``dataset`` with ``output_column`` added by ``concurrency`` actors, each holding one
    loaded model (``model_options`` as ``strata.Model`` takes them)."""
    return dataset.map_batches(
        StrataItemEmbedder,
        fn_constructor_args=(model_path, text_column, output_column),
        fn_constructor_kwargs=model_options,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus,
    )


class _PairLabeler:
    """An actor that labels ``(query, item_id)`` rows through strata's label cache: the shared
    directory ``cache``, to which it appends its own file (named after the actor)."""

    def __init__(self, labeler: Any, catalog_path: str, cache: str, item_text: str,
                 labeler_version: str, min_confidence: Optional[float]) -> None:
        import ray

        writer = "actor-" + ray.get_runtime_context().get_actor_id()[:16]
        self.labeler = strata.Labeler(labeler, catalog_path, cache, item_text=item_text,
                                      labeler_version=labeler_version, writer=writer,
                                      min_confidence=min_confidence)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = list(zip((str(q) for q in batch["query"]), (str(i) for i in batch["item_id"])))
        labels = self.labeler.label(pairs)
        batch["label"] = np.array([-1 if l is None else l for l in labels], dtype=np.int8)
        return batch


def label_pairs(
    dataset,
    labeler: Any,
    catalog_path: str,
    cache: str,
    *,
    item_text: str = "name+taxonomy",
    labeler_version: str = "v1",
    min_confidence: Optional[float] = None,
    concurrency: int = 2,
    batch_size: int = 256,
):
    """``dataset`` (columns ``query`` and ``item_id``) with a ``label`` column (0, 1, 2, or -1
    where the labeler abstained), labeled by ``concurrency`` actors through the shared label
    cache directory ``cache``: labels any worker has cached are not asked again, and a
    ``strata.mine`` or ``mine_from_hits`` with ``cache=`` the same directory reuses them all.
    ``labeler`` is a spec (``"cross-encoder=DIR"``, ...) or a picklable Python callable, and
    ``min_confidence`` a threshold, as ``strata.mine`` takes them."""
    import os

    os.makedirs(cache, exist_ok=True)
    return dataset.map_batches(
        _PairLabeler,
        fn_constructor_args=(labeler, catalog_path, cache, item_text, labeler_version,
                             min_confidence),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ActorPoolStrategy(size=concurrency),
    )


class _ShardSearch:
    """An actor that embeds one shard of the corpus (a whole block) and returns the exact top-k
    of every query over it, as global corpus positions (padded to k with position -1 and score
    -inf when the shard holds fewer items)."""

    def __init__(self, model_path: str, queries: np.ndarray, k: int, **model_options: Any) -> None:
        self.model = strata.Model(model_path, **model_options)
        self.queries = queries
        self.k = k

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.model.embed_items([str(t) for t in batch["text"]])
        local, scores = strata.exact_topk(self.queries, vectors, self.k)
        positions = np.asarray(batch["position"], dtype=np.int64)[local]
        if positions.shape[1] < self.k:
            pad = self.k - positions.shape[1]
            positions = np.pad(positions, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return {"indices": positions[None], "scores": scores[None]}


def merge_topk(indices: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query, the best `k` of candidate lists concatenated along axis 1: score descending,
    ties to the lower corpus position (strata's order)."""
    order = np.lexsort((indices, -scores), axis=1)[:, :k]
    return np.take_along_axis(indices, order, axis=1), np.take_along_axis(scores, order, axis=1)


def mine(
    model_path: str,
    catalog_path: str,
    judgments_path: str,
    out: str,
    *,
    k: int = 150,
    shards: int = 2,
    concurrency: int = 2,
    labeler: Any = None,
    whole_catalog: bool = False,
    item_text: Optional[str] = None,
    cache: Optional[str] = None,
    labeler_version: str = "v1",
    min_confidence: Optional[float] = None,
    label_batch_size: int = 256,
) -> dict[str, Any]:
    """``strata mine`` with its expensive parts on Ray: ``concurrency`` actors each embed
    whole item partitions (``shards`` of them) and search them exactly for every query's top-k;
    the lists are merged per query
    (score, then corpus position: the order of strata's exact search), then the same labeling
    and selection (``strata.mine_from_hits``). With the same vectors this equals single-machine
    ``strata mine --search exact``. With a ``labeler`` other than the judgment lookups, the
    unjudged retrieved pairs are labeled first by ``concurrency`` actors (``label_pairs``)
    into the shared label cache directory ``cache`` (default ``out/labels``), so the selection
    on the driver only reads the cache. ``min_confidence`` is ``strata.mine``'s (pairs a
    cross-encoder labels with a lower probability stay unlabeled; the cache keeps those
    abstentions too, so the driver asks nothing)."""
    import ray

    model = strata.Model(model_path)
    text = item_text or model.item_text
    queries, corpus = strata.mining_corpus(catalog_path, judgments_path, whole_catalog=whole_catalog)
    ids, texts = strata.item_texts(catalog_path, text)
    by_id = dict(zip(ids, texts))
    k = min(k, len(corpus))
    q = model.embed_queries(queries)
    rows = [{"position": p, "text": by_id[i]} for p, i in enumerate(corpus)]
    # One block per shard, made on the driver: no shuffle task competes with the actors.
    ds = ray.data.from_items(rows, override_num_blocks=shards)
    parts = (
        ds.map_batches(
            _ShardSearch,
            fn_constructor_args=(model_path, q, k),
            batch_size=None,
            batch_format="numpy",
            # A shard is one long task: give each actor one at a time, so they spread.
            compute=ActorPoolStrategy(size=concurrency, max_tasks_in_flight_per_actor=1),
        )
        .take_all()
    )
    indices = np.concatenate([np.asarray(p["indices"]) for p in parts], axis=1)
    scores = np.concatenate([np.asarray(p["scores"]) for p in parts], axis=1)
    indices, scores = merge_topk(indices, scores, k)
    scores = scores.astype(np.float32)
    import os

    cache = cache or os.path.join(out, "labels")
    if labeler is not None and labeler not in ("unjudged-zero", "judged-only"):
        pq, pi = strata.unjudged_pairs(catalog_path, judgments_path, indices, scores, k=k,
                                       whole_catalog=whole_catalog)
        if pq:
            pairs = ray.data.from_items([{"query": q, "item_id": i} for q, i in zip(pq, pi)],
                                        override_num_blocks=max(1, concurrency))
            label_pairs(pairs, labeler, catalog_path, cache, item_text=text,
                        labeler_version=labeler_version, min_confidence=min_confidence,
                        concurrency=concurrency, batch_size=label_batch_size).materialize()
    else:
        os.makedirs(cache, exist_ok=True)
    return strata.mine_from_hits(
        catalog_path, judgments_path, out, indices, scores,
        labeler=labeler, k=k, whole_catalog=whole_catalog, item_text=text,
        cache=cache, labeler_version=labeler_version, min_confidence=min_confidence,
    )
