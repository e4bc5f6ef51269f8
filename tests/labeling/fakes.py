"""A deterministic stand-in for the sentence encoder (no torch, no weights): character-trigram
bags, so texts sharing spelling are close. Teacher tests use it; one test uses the real one.
And a small judged set whose grades follow the words, for the calibrated teacher and the
evaluation on judgments."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd


class TrigramEncoder:
    """Caches what it embeds, as the real one does; ``computed`` counts texts embedded here."""

    load_seconds = 0.0
    identity = "trigram-fake"

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}
        self.computed = 0
        self.used: set[str] = set()

    def encode(self, texts: list[str]) -> np.ndarray:
        self.used.update(texts)
        for t in dict.fromkeys(texts):
            if t not in self._cache:
                v = np.zeros(256)
                s = f"  {t.lower()}  "
                for j in range(len(s) - 2):
                    v[zlib.crc32(s[j : j + 3].encode()) % 256] += 1
                norm = np.linalg.norm(v)
                self._cache[t] = v / (norm if norm else 1)
                self.computed += 1
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 256))

    def cached(self) -> tuple[list[str], np.ndarray]:
        texts = list(self._cache)
        return texts, np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 0))

    def preload(self, texts: list[str], vectors: np.ndarray) -> None:
        self._cache.update(zip(texts, np.asarray(vectors, dtype=np.float64), strict=True))

    def similarity(self, a: list[str], b: list[str]) -> np.ndarray:
        return np.einsum("ij,ij->i", self.encode(a), self.encode(b))


TYPES = ["shoes", "jacket", "lamp", "kettle", "backpack", "blender", "helmet", "pillow"]
COLOURS = ["red", "blue", "black", "green", "white"]


def judged_rows(seed: int = 0) -> pd.DataFrame:
    """Queries "<colour> <type>"; per query, titles of the same type and colour (grade 2), same
    type (1), another type (0), 10% of grades noise, so that grades follow the words."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in COLOURS:
        for t in TYPES:
            q = f"{c} {t}"
            for k in range(9):
                if k < 3:
                    title, grade = f"{c} {t} model {k}", 2
                elif k < 6:
                    other = COLOURS[(COLOURS.index(c) + k) % len(COLOURS)]
                    title, grade = f"{other} {t} model {k}", 1
                else:
                    colour = c if k < 8 else COLOURS[(COLOURS.index(c) + 2) % len(COLOURS)]
                    title, grade = (
                        f"{colour} {TYPES[(TYPES.index(t) + k) % len(TYPES)]} model {k}",
                        0,
                    )
                if rng.random() < 0.1:
                    grade = int(rng.integers(0, 3))
                rows.append((q, f"{c}-{t}-{k}", title, grade))
    return pd.DataFrame(rows, columns=["query", "product_id", "title", "grade"])


def write_judged_tsv(path: Path) -> Path:
    """:func:`judged_rows` as a judged file with grades 1-3, what import-judged reads."""
    with path.open("w") as f:
        f.write("query\tproduct_id\tproduct_title\tgrade\n")
        for r in judged_rows().itertuples():
            f.write(f"{r.query}\t{r.product_id}\t{r.title}\t{r.grade + 1}\n")
    return path
