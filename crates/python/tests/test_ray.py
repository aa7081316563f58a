"""Catalog embedding through Ray Data (a local cluster of 2 CPUs, 2 actors) equals the
package's single-process embedding, item by item."""

import numpy as np
import pytest

import ray

import strata
import strata.ray
from conftest import MODEL


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_embedding_equals_single_process(cluster, model, data):
    ds = strata.ray.catalog_dataset(str(data / "catalog.tsv"))
    rows = strata.ray.embed_items(ds, str(MODEL), concurrency=2, batch_size=3).take_all()
    ids, texts = strata.item_texts(data / "catalog.tsv")
    assert sorted(r["id"] for r in rows) == sorted(ids)
    want = dict(zip(ids, model.embed_items(texts)))
    for r in rows:
        got = np.asarray(r["embedding"], dtype=np.float32)
        assert got.shape == (model.dim,)
        assert np.abs(got - want[r["id"]]).max() <= 1e-6, r["id"]
