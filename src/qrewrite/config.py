"""Step configs: dataclasses loadable from a YAML preset section and overridable from the CLI.

A preset (``configs/local.yaml``) holds one section per step (``synth:``, ``mine:``, ...). The CLI
applies ``--set key=value`` overrides on top; values are parsed as YAML scalars and checked
against the dataclass field's type, so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from qrewrite.errors import ConfigError

T = TypeVar("T")


def _coerce(cls: type, name: str, value: Any, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    target = hints[name]
    origin = typing.get_origin(target)
    args = typing.get_args(target)
    if value is None and type(None) in args:
        return None
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        target = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(target), typing.get_args(target)
    try:
        if target is bool:
            if isinstance(value, bool):
                return value
            raise TypeError
        if target is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if target is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if target is str and isinstance(value, str | int | float | datetime.date):
            return str(value)
        if origin is tuple and isinstance(value, list | tuple):
            return tuple(float(v) if args and args[0] is float else v for v in value)
        if origin is dict and isinstance(value, dict):
            # e.g. reward weights {name: weight}: keys are names, values numbers
            number = args and args[1] is float
            out = {}
            for k, v in value.items():
                if number and (isinstance(v, bool) or not isinstance(v, int | float)):
                    raise TypeError
                out[str(k)] = float(v) if number else v
            return out
    except (TypeError, ValueError):
        pass
    raise ConfigError(
        f"{where}: {name}={value!r} is not a valid {getattr(target, '__name__', target)}"
    )


PRESET_NAME = re.compile(r"[A-Za-z0-9_-]+")


def named_preset(name: str) -> str:
    """The text of a preset shipped with the package (``configs/<name>.yaml``)."""
    from importlib import resources

    shipped = resources.files("qrewrite_presets")
    path = shipped / f"{name}.yaml"
    if not path.is_file():
        known = sorted(
            p.name.removesuffix(".yaml") for p in shipped.iterdir() if p.name.endswith(".yaml")
        )
        raise ConfigError(f"config {name!r}: no such preset; shipped presets: {', '.join(known)}")
    return path.read_text(encoding="utf-8")


def load_config(
    cls: type[T],
    preset: str | Path | None = None,
    section: str | None = None,
    overrides: list[str] | None = None,
) -> T:
    """Build ``cls`` from defaults, then a preset's ``section``, then ``key=value`` overrides."""
    if preset is None:
        return config_from_preset_text(cls, "", section, overrides)
    path = Path(preset)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config preset not found") from e
    return config_from_preset_text(cls, text, section, overrides, str(path))


def config_from_preset_text(
    cls: type[T],
    text: str,
    section: str | None = None,
    overrides: list[str] | None = None,
    source: str = "pipeline config",
) -> T:
    """``load_config`` for a preset held as text: a pipeline's ``config`` parameter carries
    either a whole preset or the name of a shipped one (``cluster``, ``local``)."""
    if PRESET_NAME.fullmatch(text.strip()):
        source = f"preset {text.strip()}"
        text = named_preset(text.strip())
    values: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{source}: expected a mapping of step sections, got {type(doc).__name__}"
        )
    block = doc.get(section, {}) if section else doc
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise ConfigError(f"{source}: section {section!r} must be a mapping")
    for key, value in block.items():
        if key not in fields:
            raise ConfigError(
                f"{source}: unknown key {section}.{key}; known keys: {', '.join(sorted(fields))}"
            )
        values[key] = _coerce(cls, key, value, f"{source}:{section}")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ConfigError(
                f"--set {item!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}"
            )
        values[key] = _coerce(cls, key, yaml.safe_load(raw), "--set")
    return cls(**values)
