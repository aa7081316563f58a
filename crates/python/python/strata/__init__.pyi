from os import PathLike
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

_Path = Union[str, PathLike[str]]

__version__: str

class StrataError(Exception):
    """An error from strata's core; the message names the file, line or field at fault."""

class Model:
    """An embedding model: a strata model directory or a Hugging Face folder."""

    def __init__(
        self,
        path: _Path,
        *,
        device: str = "cpu",
        precision: str = "f32",
        max_len: Optional[int] = None,
        batch_size: int = 128,
        max_tokens: int = 4096,
    ) -> None: ...
    def embed_queries(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Query-tower embeddings, shape (len(texts), dim), rows L2-normalised."""
    def embed_items(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Item-tower embeddings, shape (len(texts), dim), rows L2-normalised."""
    @property
    def dim(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def item_text(self) -> str:
        """The item text the model was trained with (default name+taxonomy)."""

def evaluate(
    catalog_path: _Path,
    judgments_path: _Path,
    model: Optional[Model] = None,
    *,
    system: Optional[str] = None,
    item_text: Optional[str] = None,
    alpha: float = 0.5,
    candidates: int = 1000,
    out: Optional[_Path] = None,
) -> dict[str, Any]:
    """The metrics of `strata eval` (the contents of metrics.json) as a dict."""

def item_texts(catalog_path: _Path, item_text: str = "name+taxonomy") -> tuple[list[str], list[str]]:
    """(ids, texts) of a catalog file's items as the item tower reads them."""

LabelFn = Callable[[list[tuple[str, str, str]]], Sequence[Optional[int]]]

def mine(
    model: Model,
    catalog_path: _Path,
    judgments_path: _Path,
    out: _Path,
    *,
    labeler: Union[str, LabelFn, None] = None,
    k: int = 150,
    whole_catalog: bool = False,
    search: str = "auto",
    item_text: Optional[str] = None,
    cache: Optional[_Path] = None,
    labeler_version: str = "v1",
    min_confidence: Optional[float] = None,
) -> dict[str, Any]:
    """`strata mine`: writes judgments.jsonl and mining_report.json into `out`, returns the report.
    `labeler`: "unjudged-zero", "judged-only", "cross-encoder=DIR", or a callable taking
    (query, item id, item text) tuples and returning a label (0, 1, 2) or None per pair.
    `min_confidence`: `strata mine --min-confidence` (pairs a cross-encoder labels with a lower
    probability stay unlabeled)."""

def train(config_path: _Path, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """`strata train --config`: the run's summary (summary.json); `model_dir` is the model."""

def mining_corpus(
    catalog_path: _Path, judgments_path: _Path, *, whole_catalog: bool = False
) -> tuple[list[str], list[str]]:
    """(queries, corpus item ids) of a mining run, in the order `mine_from_hits` indexes them."""

def exact_topk(
    queries: npt.NDArray[np.float32], items: npt.NDArray[np.float32], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """strata's exact inner-product top-k: (indices, scores), best first, ties to the lower item."""

def mine_from_hits(
    catalog_path: _Path,
    judgments_path: _Path,
    out: _Path,
    indices: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    *,
    labeler: Union[str, LabelFn, None] = None,
    k: int = 150,
    whole_catalog: bool = False,
    item_text: str = "name+taxonomy",
    cache: Optional[_Path] = None,
    labeler_version: str = "v1",
    min_confidence: Optional[float] = None,
) -> dict[str, Any]:
    """Labels and selects mined pairs from top-k lists found elsewhere; writes what `mine` writes."""

def unjudged_pairs(
    catalog_path: _Path,
    judgments_path: _Path,
    indices: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    *,
    k: int = 150,
    whole_catalog: bool = False,
) -> tuple[list[str], list[str]]:
    """(queries, item ids) of the pairs `mine_from_hits` would ask its labeler about, in order."""

class Labeler:
    """strata's relabeler behind its label cache; `cache` is a file, or a directory shared by
    many workers (each appends to its own `<writer>.jsonl` there and reads everyone's).
    `min_confidence`: as `mine` takes it (a cross-encoder's less probable labels are None)."""

    def __init__(
        self,
        labeler: Union[str, LabelFn],
        catalog_path: _Path,
        cache: _Path,
        *,
        item_text: str = "name+taxonomy",
        labeler_version: str = "v1",
        writer: Optional[str] = None,
        min_confidence: Optional[float] = None,
    ) -> None: ...
    def label(self, pairs: list[tuple[str, str]]) -> list[Optional[int]]:
        """One label (0, 1, 2) or None per (query, item id) pair, from the cache where known."""
    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...
    @property
    def cache_file(self) -> str: ...
    @property
    def policy(self) -> str: ...

class Index:
    """An item index directory (embeddings, HNSW graph, BM25), as `strata serve --index` serves."""

    @staticmethod
    def build(
        path: _Path,
        catalog_path: _Path,
        model: Model,
        *,
        item_text: Optional[str] = None,
        hnsw_m: Optional[int] = None,
        hnsw_ef_construction: Optional[int] = None,
        hnsw_ef_search: Optional[int] = None,
    ) -> "Index": ...
    @staticmethod
    def open(path: _Path, *, candidates: int = 1000) -> "Index": ...
    def search(
        self,
        queries: list[str],
        k: int = 10,
        *,
        model: Optional[Model] = None,
        mode: str = "semantic",
        alpha: float = 0.5,
        exact: bool = False,
    ) -> list[list[dict[str, Any]]]:
        """Per query, the k best items (id, text, score, semantic, lexical), best first."""
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def manifest(self) -> dict[str, Any]: ...

def set_threads(threads: int) -> None:
    """Threads for strata's CPU work in this process; call before any other strata call."""
