"""The Python package against the CLI on the same inputs: embeddings equal `strata embed`'s,
`evaluate` equals `strata eval`'s metrics.json, mining equals `strata mine`'s, and errors carry
strata's messages."""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import strata
from conftest import MODEL, QUERIES, TITLES, cli


@pytest.mark.parametrize("side", ["query", "item"])
def test_embeddings_equal_the_cli(model, tmp_path, side):
    texts = QUERIES if side == "query" else TITLES
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    cli("embed", "--model", MODEL, "--input", tmp_path / "in.txt", "--output", tmp_path / "out.npy", "--side", side)
    want = np.load(tmp_path / "out.npy")
    got = model.embed_queries(texts) if side == "query" else model.embed_items(texts)
    assert got.dtype == np.float32 and got.shape == (len(texts), model.dim) == want.shape
    assert got.flags["C_CONTIGUOUS"]
    assert np.abs(got - want).max() <= 1e-6
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_embedding_from_threads_matches(model):
    # The GIL is released during the forward pass: threads embed concurrently and agree.
    want = model.embed_items(TITLES)
    out = [None] * 4

    def work(k):
        out[k] = model.embed_items(TITLES)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in out:
        assert np.array_equal(got, want)


@pytest.mark.parametrize("system", ["dense", "bm25", "hybrid"])
def test_evaluate_equals_strata_eval(model, data, tmp_path, system):
    args = ["eval", "--catalog", data / "catalog.tsv", "--judgments", data / "judgments.tsv",
            "--out", tmp_path / "cli", "--no-embedding-cache"]
    if system != "bm25":
        args += ["--model", MODEL]
    cli(*args, "--system", system)
    want = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    got = strata.evaluate(data / "catalog.tsv", data / "judgments.tsv",
                          None if system == "bm25" else model, system=system, out=tmp_path / "py")
    assert (tmp_path / "py" / "metrics.json").is_file()
    for m in (want, got):
        m.pop("timings")
    assert got == want
    assert got["n_queries"] == 5 and 0.0 < got["ndcg@10"] <= 1.0


def test_item_texts_render_like_the_item_tower(data):
    ids, texts = strata.item_texts(data / "catalog.tsv")
    assert ids[0] == "i0"
    assert texts[0] == f"{TITLES[0]}, in Tools > Hardware"
    _, names = strata.item_texts(data / "catalog.tsv", "name")
    assert names == TITLES


def test_errors_are_strata_errors_with_strata_messages(model, data, tmp_path):
    with pytest.raises(strata.StrataError, match="cannot load model /nonexistent/model"):
        strata.Model("/nonexistent/model")
    with pytest.raises(strata.StrataError, match="precision"):
        strata.Model(MODEL, precision="f8")
    bad = tmp_path / "bad.tsv"
    bad.write_text("query\titem_id\tlabel\ncordless drill\ti0\tseven\n")
    with pytest.raises(strata.StrataError, match=r"bad\.tsv.*2.*label"):
        strata.evaluate(data / "catalog.tsv", bad, model)
    with pytest.raises(strata.StrataError, match="unknown system"):
        strata.evaluate(data / "catalog.tsv", data / "judgments.tsv", model, system="sparse")
    with pytest.raises(strata.StrataError, match="unknown item text"):
        strata.item_texts(data / "catalog.tsv", "title")


def read_judgments(d):
    return [json.loads(line) for line in (d / "judgments.jsonl").read_text().splitlines()]


def test_mine_equals_the_cli_and_takes_a_python_labeler(model, data, tmp_path):
    cat, js = data / "catalog.tsv", data / "judgments.tsv"
    cli("mine", "--model", MODEL, "--catalog", cat, "--judgments", js, "--out", tmp_path / "cli",
        "--k", "6", "--no-embedding-cache")
    report = strata.mine(model, cat, js, tmp_path / "py", k=6)
    assert read_judgments(tmp_path / "py") == read_judgments(tmp_path / "cli")
    assert report["k"] == 6 and "unjudged" in report["labeler_policy"]

    seen = []

    def everything_substitutes(pairs):
        seen.extend(pairs)
        return [1] * len(pairs)

    strata.mine(model, cat, js, tmp_path / "py2", k=6, labeler=everything_substitutes)
    assert seen and all(len(p) == 3 for p in seen)
    titles = dict(zip(*strata.item_texts(cat)))
    assert all(text == titles[item] for _, item, text in seen)
    mined = [j for j in read_judgments(tmp_path / "py2") if j.get("source") == "mined"]
    assert mined and all(j["label"] == 1 for j in mined), mined
    # The answers are cached: a second run asks the labeler nothing.
    seen.clear()
    strata.mine(model, cat, js, tmp_path / "py2", k=6, labeler=everything_substitutes)
    assert seen == []

    def too_few(pairs):
        return [0]

    with pytest.raises(strata.StrataError, match="returned 1 labels for"):
        strata.mine(model, cat, js, tmp_path / "py3", k=6, labeler=too_few)

    def broken(pairs):
        raise RuntimeError("the LLM is down")

    with pytest.raises(strata.StrataError, match="the LLM is down"):
        strata.mine(model, cat, js, tmp_path / "py4", k=6, labeler=broken)
    with pytest.raises(strata.StrataError, match="labeler llm is not accepted"):
        strata.mine(model, cat, js, tmp_path / "py5", k=6, labeler="llm")
    # A confidence threshold: certain labels (unjudged = 0) pass it and give the CLI's
    # judgments; the threshold is named in the labeler; an invalid one is refused.
    report = strata.mine(model, cat, js, tmp_path / "py6", k=6, min_confidence=0.9)
    assert read_judgments(tmp_path / "py6") == read_judgments(tmp_path / "cli")
    assert "min_confidence=0.9" in report["labeler"], report["labeler"]
    with pytest.raises(strata.StrataError, match="min_confidence"):
        strata.mine(model, cat, js, tmp_path / "py7", k=6, min_confidence=1.5)


def test_train_returns_a_model_the_package_loads(data, tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text(
        f'out = "{tmp_path / "run"}"\n'
        f'[data]\ncatalog = "{data / "catalog.tsv"}"\ntrain_judgments = "{data / "judgments.tsv"}"\n'
        f'[model]\ninit = "{MODEL}"\n'
        "[train]\nmax_steps = 2\nbatch_size = 2\n"
    )
    summary = strata.train(cfg)
    assert summary["steps"] == 2
    trained = strata.Model(summary["model_dir"])
    assert trained.embed_items(TITLES[:2]).shape == (2, trained.dim)
    with pytest.raises(strata.StrataError, match="already"):
        strata.train(cfg)


def test_index_built_from_python_searches_like_the_cli_index(model, data, tmp_path):
    cat = data / "catalog.tsv"
    built = strata.Index.build(tmp_path / "py.idx", cat, model)
    cli("index", "build", "--model", MODEL, "--catalog", cat, "--out", tmp_path / "cli.idx")
    opened = strata.Index.open(tmp_path / "cli.idx")
    assert len(built) == len(opened) == len(TITLES) and built.dim == model.dim
    for key in ("dim", "count", "item_text", "model"):
        assert built.manifest[key] == opened.manifest[key], key
    # Exact semantic search is strata's exact top-k over the item embeddings.
    ids, texts = strata.item_texts(cat, model.item_text)
    want_i, want_s = strata.exact_topk(model.embed_queries(QUERIES), model.embed_items(texts), 3)
    for index in (built, opened):
        got = index.search(QUERIES, k=3, model=model, exact=True)
        assert [[r["id"] for r in rows] for rows in got] == [[ids[i] for i in row] for row in want_i]
        assert np.abs(np.array([[r["score"] for r in rows] for rows in got]) - want_s).max() <= 1e-5
    # The HNSW graph finds the same items on a catalog this small; BM25 needs no model.
    assert [r["id"] for r in built.search(["claw hammer"], k=1, model=model)[0]] == ["i2"]
    lexical = built.search(["garden hose"], k=2, mode="lexical")[0]
    assert lexical[0]["id"] == "i5" and lexical[0]["lexical"] > 0
    hybrid = built.search(["white paint gallon"], k=2, model=model, mode="hybrid", alpha=0.5)[0]
    assert {r["id"] for r in hybrid} <= {"i3", "i4"} and len(hybrid) == 2
    with pytest.raises(strata.StrataError, match="pass model="):
        built.search(["drill"], k=1)
    with pytest.raises(strata.StrataError, match="already holds an index"):
        strata.Index.build(tmp_path / "py.idx", cat, model)
    with pytest.raises(strata.StrataError, match="unknown search mode"):
        built.search(["drill"], k=1, model=model, mode="fuzzy")


def test_labelers_share_a_cache_directory(data, tmp_path):
    cat = data / "catalog.tsv"
    asked = []

    def by_length(pairs):
        asked.extend(pairs)
        return [len(q) % 3 for q, _, _ in pairs]

    shared = tmp_path / "labels"
    a = strata.Labeler(by_length, cat, shared, writer="a")
    assert a.label([("drill", "i0"), ("hose", "i5")]) == [2, 1]
    b = strata.Labeler(by_length, cat, shared, writer="b")
    assert b.label([("drill", "i0"), ("paint", "i3")]) == [2, 2]
    assert (b.hits, b.misses) == (1, 1) and len(asked) == 3
    assert b.cache_file == str(shared / "b.jsonl")
    assert "Python labeler by_length" in b.policy
    with pytest.raises(strata.StrataError, match="writer name"):
        strata.Labeler(by_length, cat, shared, writer="../x")


def test_set_threads_first_then_work_and_late_calls_are_clear_errors(model):
    import subprocess
    import sys

    # In a fresh process, set_threads before anything else works and the model runs.
    code = (f"import strata; strata.set_threads(1); m = strata.Model({str(MODEL)!r}); "
            "print(m.embed_queries(['drill']).shape)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "(1, 384)" in out.stdout, out.stderr
    model.embed_queries(["drill"])  # this process's thread pool exists now
    with pytest.raises(strata.StrataError, match="before any other strata call"):
        strata.set_threads(1)
    with pytest.raises(strata.StrataError, match="at least 1"):
        strata.set_threads(0)


def test_labeler_confidence_threshold_only_removes_labels(data, cross_encoder, tmp_path):
    cat = data / "catalog.tsv"
    spec = f"cross-encoder={cross_encoder}"
    pairs = [(q, f"i{k}") for q in QUERIES for k in range(len(TITLES))]
    sure = strata.Labeler(spec, cat, tmp_path / "none.jsonl").label(pairs)
    assert all(label in (0, 1, 2) for label in sure)
    # A threshold keeps a label or abstains; it never changes one. Any threshold <= 1/3 keeps
    # all (the most probable of three classes has probability >= 1/3); 1.0 keeps none here.
    for p, kept in ((0.3, len(pairs)), (1.0, 0)):
        got = strata.Labeler(spec, cat, tmp_path / f"p{p}.jsonl", min_confidence=p).label(pairs)
        assert all(g is None or g == s for g, s in zip(got, sure))
        assert sum(g is not None for g in got) == kept, p
    middle = strata.Labeler(spec, cat, tmp_path / "p.jsonl", min_confidence=0.5)
    assert "probability below 0.5" in middle.policy
    got = middle.label(pairs)
    assert all(g is None or g == s for g, s in zip(got, sure))
    # The threshold is part of the cache version: a labeler without it does not read these
    # answers as its own.
    again = strata.Labeler(spec, cat, tmp_path / "p.jsonl")
    assert again.label(pairs) == sure and again.hits == 0
    with pytest.raises(strata.StrataError, match="min_confidence"):
        strata.Labeler(spec, cat, tmp_path / "bad.jsonl", min_confidence=0.0)


def test_the_readme_python_example_runs(data, tmp_path):
    """The README's Python example, as written, on the tiny catalog: a fresh clone's reader
    copies it and it works."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme.split("\n## Python\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    for name in ("catalog.tsv", "judgments.tsv"):
        shutil.copy(data / name, tmp_path / name)
    (tmp_path / "models").symlink_to(MODEL.parent)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    # It prints the top ten ids, NDCG@10, the average margin and the index's best hit.
    assert out.stdout.startswith("['i0'"), out.stdout
    assert (tmp_path / "items.idx" / "manifest.json").is_file()
