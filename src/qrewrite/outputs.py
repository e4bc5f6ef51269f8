"""Nothing lost: a step writes its outputs into a fresh sibling folder and moves them into place
only when it has finished, so a failure (a full disk, a bad row, a bug) leaves the previous output
whole, and files the step owns that this run did not write (an earlier run's quarantine) are
removed rather than left beside a report that no longer counts them.

Each file or folder moves with one ``os.replace`` (same filesystem: the stage is a sibling), so the
window in which a reader can see a mix of old and new outputs is a few renames, not the minutes
the step took to write them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from qrewrite.errors import ConfigError


def _overlaps(out: Path, source: Path) -> bool:
    out, source = out.resolve(), source.resolve()
    return out == source or source in out.parents


def check_not_an_input(
    step: str, outputs: Sequence[Path], inputs: Sequence[str | Path | None]
) -> None:
    """Refuse, before any work, an output that is an input or lies inside an input folder."""
    for out in outputs:
        for source in inputs:
            if source is not None and _overlaps(Path(out), Path(source)):
                raise ConfigError(
                    f"{step}: the output {out} is (or is inside) the input {source}; "
                    "write the output somewhere else"
                )


def check_output_folder(step: str, folder: str | Path) -> Path:
    """``folder`` as a Path, refused before any work when it names a file (the user's mistake:
    a config error, not a crash in the middle of writing)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{step}: the output folder {folder} is a file; name a folder")
    return folder


def check_output(
    step: str, directory: str | Path, owned: Sequence[str], *, inputs: Sequence[str | Path | None]
) -> Path:
    """What :func:`staged_output` refuses on entry, for a step to call before its long work: an
    output folder that is a file, an output that is (or is inside) an input."""
    target = check_output_folder(step, directory)
    check_not_an_input(step, [target / name for name in owned], inputs)
    return target


@contextmanager
def staged_output(
    directory: str | Path,
    owned: Sequence[str],
    *,
    step: str,
    inputs: Sequence[str | Path | None] = (),
) -> Iterator[Path]:
    """Yield a stage folder to write the step's outputs into; when the block ends without an
    error, move what it holds into ``directory``, replacing the previous ones, and remove the
    ``owned`` names (files or folders the step writes) that this run did not write; on an
    error, drop the stage and leave ``directory`` as it was."""
    target = check_output(step, directory, owned, inputs=inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.{step}-", dir=target.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    try:
        target.mkdir(parents=True, exist_ok=True)
        replaced = stage / ".replaced"
        replaced.mkdir()
        written = [p.name for p in stage.iterdir() if p.name != replaced.name]
        for name in dict.fromkeys([*owned, *written]):
            new, old = stage / name, target / name
            if old.exists() or old.is_symlink():
                os.replace(old, replaced / name)
            if new.exists():
                os.replace(new, old)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
