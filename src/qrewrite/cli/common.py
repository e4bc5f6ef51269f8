"""What every command's parser shares: the preset flags, and explicit flags over the preset."""

from __future__ import annotations

import argparse
from typing import Any

# the object ``add_subparsers`` returns; each group adds its commands to it
Subparsers = Any


def add_config_flags(p: argparse.ArgumentParser, section: str) -> None:
    """``--config PRESET`` and repeatable ``--set KEY=VALUE`` for the step's preset section."""
    p.add_argument(
        "--config",
        metavar="PRESET",
        help=f"YAML preset whose '{section}:' section sets this step's options "
        "(e.g. configs/local.yaml)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one option of this step (repeatable); values are YAML scalars",
    )


def with_flags(config: Any, **flags: Any) -> Any:
    """``config`` with every flag the user gave (not None) set on it: flags win over presets."""
    for key, value in flags.items():
        if value is not None:
            setattr(config, key, value)
    return config


def add_progress_flag(p: argparse.ArgumentParser, *, bars: str = "bar") -> None:
    """``--no-progress``: for logs and CI, where a progress bar is noise."""
    p.add_argument("--no-progress", action="store_true", help=f"hide the progress {bars}")
