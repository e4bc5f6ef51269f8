"""Where a benchmark's figures go: its own marked section of ``docs/benchmarks.md``."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path
from typing import Any


def pct(value: float | None) -> str:
    """A share as the tables print it: "61.9%", or "-" when not measured."""
    return "-" if value is None else f"{100 * value:.1f}%"


def markers(name: str) -> tuple[str, str]:
    """The HTML comments that delimit benchmark ``name``'s section."""
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def write_section(doc: Path, name: str, section: str, heading: str) -> None:
    """Replace the section between ``name``'s markers (``section`` includes them); when the
    document has none yet, add it at the end of the part under ``## heading`` (before the next
    ``## ``), or under a new such heading at the end of the document."""
    begin, end = markers(name)
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    title = f"## {heading}\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    elif title in text:
        head, rest = text.split(title, 1)
        cut = rest.find("\n## ")
        part, after = (rest, "") if cut < 0 else (rest[: cut + 1], rest[cut + 1 :])
        text = (
            head + title + part.rstrip() + "\n\n" + section + "\n" + ("\n" + after if after else "")
        )
    else:
        text = text.rstrip() + f"\n\n{title}\n" + section + "\n"
    doc.write_text(text)


def runs_parser(doc: str) -> argparse.ArgumentParser:
    """The options of an analysis of ``make bench-quality``'s runs: which runs, at what commit,
    and the document to write its section to."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="bench-quality run dirs")
    ap.add_argument("--commit", default="", help="the commit the runs were measured at")
    ap.add_argument("--write", type=Path, help="update this Markdown file's section")
    return ap


def publish_table(
    name: str, heading: str, intro: str, table: Any, write: Path | None = None
) -> str:
    """``intro`` and ``table`` (a DataFrame) as benchmark ``name``'s Markdown section: printed,
    and with ``write``, put in that document under ``## heading`` (:func:`write_section`)."""
    begin, end = markers(name)
    lines = [
        begin,
        intro,
        "",
        "| " + " | ".join(str(c) for c in table.columns) + " |",
        "|" + "---|" * len(table.columns),
        *("| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)),
        end,
    ]
    section = "\n".join(lines)
    print(section)
    if write:
        write_section(write, name, section, heading)
        print(f"wrote {write}")
    return section


def current_commit() -> str:
    """The short hash of HEAD, which a benchmark's figures are recorded against."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def write_run_preset(doc: dict, out: Path) -> Path:
    """``doc`` (a parsed preset) as ``out/preset.yaml``, every step tracking into ``out``'s own
    MLflow store: a benchmark run never joins another run's registry."""
    import yaml

    for section in doc.values():
        if isinstance(section, dict) and "tracking_uri" in section:
            section["tracking_uri"] = f"sqlite:///{out.resolve() / 'mlflow' / 'mlflow.db'}"
    path = out / "preset.yaml"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
