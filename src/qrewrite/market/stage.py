"""Put one marketplace (catalog + search log) where a pipeline run reads it.

The pipeline's ``data_source`` is either ``synthetic`` (the embedded simulator, at the preset's
``synth:`` scale) or a directory holding ``catalog.parquet`` and ``search_log.parquet`` in the
schemas of ``docs/data.md`` (what ``qrewrite synth`` or ``qrewrite import-judged`` write, or the
shop's own export on a mounted volume). Either way the run gets its own copy, so a log export
that changes later cannot change what an earlier run trained on.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from qrewrite.errors import ConfigError, DataError
from qrewrite.market.simulate import SynthConfig, synthesize

SYNTHETIC = "synthetic"
REQUIRED_FILES = ("catalog.parquet", "search_log.parquet")
# copied when present: the simulator's ground truth lets evaluation score rewrites by truth;
# a judged set's judgments calibrate the teacher and give rewrite supervision
OPTIONAL = ("manifest.json", "truth", "judgments.parquet")


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as e:  # pyarrow raises several types for a broken file
        raise DataError(f"{path}: not a readable parquet file ({e})") from e


@dataclass
class StagedMarketplace:
    """Where the staged marketplace came from and its row counts; :meth:`to_dict` is what the
    pipeline step records as its output's metadata."""

    source: str  # "synthetic", or the directory copied
    scale: str | None  # the simulator's scale; None for a copy (and no key in the mapping)
    rows: dict[str, int]  # file name -> rows

    def to_dict(self) -> dict[str, Any]:
        """The staged marketplace as a mapping, keys in field order (``scale`` when
        synthesized)."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {k: v for k, v in values if not (k == "scale" and v is None)}

    def summary_lines(self, out_dir: str | Path) -> list[str]:
        """What staging says when it is done: where the data came from and how many rows."""
        what = (
            f"synthesized the {self.scale or ''} marketplace"
            if self.source == SYNTHETIC
            else f"copied {self.source}"
        )
        rows = ", ".join(f"{name} {n:,} rows" for name, n in self.rows.items())
        return [f"stage: {what} -> {out_dir}: {rows}"]


def stage_marketplace(
    *,
    source: str,
    out_dir: str | Path,
    synth: SynthConfig | None = None,
    progress: bool = False,
) -> StagedMarketplace:
    """Write the marketplace of ``source`` under ``out_dir``; return where it came from and its
    row counts."""
    out = Path(out_dir)
    source = (source or "").strip()
    if not source:
        raise ConfigError(
            f"data_source is empty; expected {SYNTHETIC!r} or a directory with "
            + " and ".join(REQUIRED_FILES)
        )
    if source == SYNTHETIC:
        cfg = synth or SynthConfig()
        synthesize(cfg, out_dir=out, progress=progress)
        return StagedMarketplace(
            source=SYNTHETIC,
            scale=cfg.scale,
            rows={f: _rows(out / f) for f in REQUIRED_FILES},
        )
    src = Path(source.removeprefix("file://"))
    if not src.is_dir():
        raise ConfigError(
            f"data_source {source}: not a directory; expected {SYNTHETIC!r} or a directory with "
            + " and ".join(REQUIRED_FILES)
            + " (on a cluster, a path on a mounted volume)"
        )
    missing = [f for f in REQUIRED_FILES if not (src / f).is_file()]
    if missing:
        raise DataError(
            f"data_source {src}: missing {', '.join(missing)}; export the catalog and search log "
            "in the schemas of docs/data.md"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in REQUIRED_FILES:
        shutil.copy2(src / name, out / name)
    for name in OPTIONAL:
        if (src / name).is_dir():
            shutil.copytree(src / name, out / name, dirs_exist_ok=True)
        elif (src / name).is_file():
            shutil.copy2(src / name, out / name)
    return StagedMarketplace(
        source=str(src), scale=None, rows={f: _rows(out / f) for f in REQUIRED_FILES}
    )
