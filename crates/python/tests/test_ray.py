"""strata on Ray Data, on a local cluster of 2 CPUs: catalog embedding by 2 actors equals
`strata embed` item by item, and mining with the search sharded over item partitions (and the
labeling on actors through a shared label cache) writes exactly what single-machine mining
writes: on the tiny catalog and on a synthetic marketplace of 400 items."""

import json
from pathlib import Path

import numpy as np
import pytest
import ray

import strata
import strata.ray
from conftest import MODEL, cli


@pytest.fixture(scope="module")
def cluster():
    # The workers import this module's labeler by name, as a user's workers import theirs.
    here = str(Path(__file__).resolve().parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": here}})
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


def test_sharded_mining_equals_single_machine_mining(cluster, data, tmp_path):
    from conftest import cli

    cat, js = data / "catalog.tsv", data / "judgments.tsv"
    cli("mine", "--model", MODEL, "--catalog", cat, "--judgments", js, "--out", tmp_path / "cli",
        "--k", "6", "--search", "exact", "--no-embedding-cache")
    report = strata.ray.mine(str(MODEL), str(cat), str(js), str(tmp_path / "ray"), k=6, shards=3)
    read = lambda d: (d / "judgments.jsonl").read_text()  # noqa: E731
    assert read(tmp_path / "ray") == read(tmp_path / "cli")
    assert report["search"] == "external" and report["k"] == 6


def substitutes_by_id(pairs):
    """A deterministic labeler, picklable for the actors."""
    return [int(item[1:]) % 3 for _, item, _ in pairs]


def test_sharded_mining_labels_on_actors_through_a_shared_cache(cluster, model, data, tmp_path):
    cat, js = data / "catalog.tsv", data / "judgments.tsv"
    strata.mine(model, cat, js, tmp_path / "single", k=6, search="exact",
                labeler=substitutes_by_id)
    report = strata.ray.mine(str(MODEL), str(cat), str(js), str(tmp_path / "ray"), k=6, shards=2,
                             labeler=substitutes_by_id)
    read = lambda d: (d / "judgments.jsonl").read_text()  # noqa: E731
    assert read(tmp_path / "ray") == read(tmp_path / "single")
    # The actors labeled every unjudged pair into their own files; the driver asked nothing.
    files = {f.name: f.read_text().splitlines() for f in (tmp_path / "ray" / "labels").iterdir()}
    actor_lines = sum(len(v) for k, v in files.items() if k.startswith("actor-"))
    assert actor_lines == report["newly_labeled"] > 0
    assert all(not v for k, v in files.items() if not k.startswith("actor-")), files


def test_merging_shard_lists_keeps_strata_order():
    idx = np.array([[4, 1, 7, 2]])
    sc = np.array([[0.5, 0.9, 0.5, -np.inf]], dtype=np.float32)
    i, s = strata.ray.merge_topk(idx, sc, 3)
    assert i.tolist() == [[1, 4, 7]] and s.tolist()[0][0] == pytest.approx(0.9)


def test_on_the_marketplace_ray_equals_the_cli(cluster, marketplace, tmp_path):
    cat, train = marketplace / "catalog.tsv", marketplace / "train.tsv"
    # Catalog embedding on 2 actors equals `strata embed --side item` of the same item texts.
    ids, texts = strata.item_texts(cat)
    (tmp_path / "items.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    cli("embed", "--model", MODEL, "--side", "item", "--input", tmp_path / "items.jsonl",
        "--output", tmp_path / "items.npy")
    want = dict(zip(ids, np.load(tmp_path / "items.npy")))
    rows = strata.ray.embed_items(strata.ray.catalog_dataset(str(cat)), str(MODEL),
                                  concurrency=2, batch_size=64).take_all()
    assert len(rows) == len(want) == 400
    assert max(np.abs(np.asarray(r["embedding"]) - want[r["id"]]).max() for r in rows) <= 1e-6
    # Sharded mining over the whole catalog (4 shards, 2 actors) = `strata mine --search exact`.
    cli("mine", "--model", MODEL, "--catalog", cat, "--judgments", train, "--out", tmp_path / "cli",
        "--k", "30", "--whole-catalog", "--search", "exact", "--no-embedding-cache")
    report = strata.ray.mine(str(MODEL), str(cat), str(train), str(tmp_path / "ray"), k=30,
                             shards=4, whole_catalog=True)
    read = lambda d: (d / "judgments.jsonl").read_text()  # noqa: E731
    assert read(tmp_path / "ray") == read(tmp_path / "cli")
    want_report = json.loads((tmp_path / "cli" / "mining_report.json").read_text())
    assert report["queries"] == want_report["queries"] > 50
    assert report["hard_negatives"] == want_report["hard_negatives"] > 0


def test_sharded_mining_with_a_confidence_threshold_equals_single_machine(
        cluster, model, data, cross_encoder, tmp_path):
    cat, js = data / "catalog.tsv", data / "judgments.tsv"
    spec = f"cross-encoder={cross_encoder}"
    single = strata.mine(model, cat, js, tmp_path / "single", k=6, search="exact",
                         labeler=spec, min_confidence=0.4)
    report = strata.ray.mine(str(MODEL), str(cat), str(js), str(tmp_path / "ray"), k=6, shards=2,
                             labeler=spec, min_confidence=0.4)
    read = lambda d: (d / "judgments.jsonl").read_text()  # noqa: E731
    assert read(tmp_path / "ray") == read(tmp_path / "single")
    assert report["labeler"] == single["labeler"] and "min_confidence=0.4" in report["labeler"]
    assert report["unlabeled"] == single["unlabeled"] > 0
    # The actors cached every answer, abstentions under the threshold included: the driver's
    # selection asked the labeler nothing.
    files = {f.name: f.read_text() for f in (tmp_path / "ray" / "labels").iterdir()}
    assert any(k.startswith("actor-") and '"label":null' in v for k, v in files.items()), files
    assert all(not v for k, v in files.items() if not k.startswith("actor-")), files
