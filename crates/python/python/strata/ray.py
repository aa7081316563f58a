"""Scale-out on Ray Data: embed catalogs too large for one machine's hours with strata, one
model load per actor.

    import ray, strata.ray
    ds = strata.ray.catalog_dataset("catalog.tsv", item_text="name+taxonomy")  # id, text
    vectors = strata.ray.embed_items(ds, "models/all-MiniLM-L6-v2", concurrency=2)
    vectors.write_parquet("s3://bucket/item-vectors/")     # id, text, embedding

The same code runs on a multi-node cluster: ``ray.init(address="auto")`` on a node of it,
``concurrency`` actors spread over the nodes (each needs the model directory at the same path,
or set ``model_path`` to shared storage), and ``ray.data.read_parquet`` of a catalog on shared
storage instead of ``catalog_dataset``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

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
        concurrency=concurrency,
        num_cpus=num_cpus,
    )
