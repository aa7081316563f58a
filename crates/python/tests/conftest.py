"""Shared fixtures of the Python package's tests: the real default model (scripts/setup.sh)
and the strata binary (`cargo build --release -p strata`, or STRATA_BIN); the tests fail
loudly without them."""

import os
import subprocess
from pathlib import Path

import pytest

import strata

REPO = Path(__file__).resolve().parents[3]
MODEL = Path(os.environ.get("STRATA_MODELS", REPO / "models")) / "all-MiniLM-L6-v2"
STRATA = Path(os.environ.get("STRATA_BIN", REPO / "target" / "release" / "strata"))

TITLES = [
    "DeWalt 20V cordless drill driver kit",
    "Milwaukee M18 hammer drill, bare tool",
    "Husky 16 oz claw hammer",
    "Behr white interior paint, 1 gallon",
    "Glidden white exterior paint, 5 gallon",
    "Flexzilla 50 ft garden hose",
    "Suncast hose reel cart",
    "Philips 60W LED bulb, 4 pack",
]
QUERIES = ["cordless drill", "claw hammer", "white paint gallon", "garden hose", "led bulb"]


def pytest_sessionstart(session):
    assert (MODEL / "model.safetensors").is_file(), f"default model missing at {MODEL}: run scripts/setup.sh"
    assert STRATA.is_file(), f"strata binary missing at {STRATA}: cargo build --release -p strata (or set STRATA_BIN)"


def cli(*args):
    out = subprocess.run([str(STRATA), *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out


@pytest.fixture(scope="session")
def model():
    return strata.Model(MODEL)


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rows = ["id\tname\ttaxonomy"] + [f"i{k}\t{t}\tTools > Hardware" for k, t in enumerate(TITLES)]
    (d / "catalog.tsv").write_text("\n".join(rows) + "\n")
    judged = [
        ("cordless drill", 0, 2), ("cordless drill", 1, 1), ("cordless drill", 2, 0),
        ("claw hammer", 2, 2), ("claw hammer", 1, 0),
        ("white paint gallon", 3, 2), ("white paint gallon", 4, 1), ("white paint gallon", 7, 0),
        ("garden hose", 5, 2), ("garden hose", 6, 1), ("garden hose", 0, 0),
        ("led bulb", 7, 2), ("led bulb", 3, 0),
    ]
    lines = ["query\titem_id\tlabel"] + [f"{q}\ti{k}\t{l}" for q, k, l in judged]
    (d / "judgments.tsv").write_text("\n".join(lines) + "\n")
    return d


@pytest.fixture(scope="session")
def marketplace(tmp_path_factory):
    """A small synthetic marketplace (`strata data synth`): 400 items, 120 queries, split
    train/dev/test; the tests mine train.tsv over the whole catalog."""
    d = tmp_path_factory.mktemp("marketplace")
    cli("data", "synth", "--items", "400", "--queries", "120", "--seed", "7", "--out", d)
    return d


@pytest.fixture(scope="session")
def cross_encoder(data, tmp_path_factory):
    """A cross-encoder labeler trained for two updates on the tiny judgments: its labels are
    poor, but it answers with probabilities, which is what a confidence threshold acts on."""
    d = tmp_path_factory.mktemp("labeler") / "run"
    cli("--threads", "2", "labeler", "train", "--catalog", data / "catalog.tsv",
        "--judgments", data / "judgments.tsv", "--init", MODEL, "--max-steps", "2",
        "--batch-size", "4", "--quiet", "--out", d)
    return d / "model"
