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

# The step sections a preset holds, one per step config (tests/test_config.py checks that every
# caller's section is one of them): a misspelt section ("mien:") is an error, not ignored.
SECTIONS = (
    "synth",
    "import_judged",
    "mine",
    "label",
    "build_datasets",
    "pretrain",
    "sft",
    "grpo",
    "evaluate",
    "registry",
    "rewrite",
)
# YAML aliases may share values, but a document that expands to more nodes than this (an alias
# bomb: a few lines, billions of nodes) is refused before anything walks it
MAX_EXPANDED_NODES = 100_000
# values at least 1; other integers at least 0 (or their default, when it is negative: -1 = off)
AT_LEAST_ONE = re.compile(r"(^|_)(k|epochs|batch_size|sessions_per_query|num_generations|folds)$")
# floats that are shares or probabilities: within [0, 1]
UNIT_INTERVAL = re.compile(
    r"(^|_)(fraction|share|tolerance|similarity|confidence)($|_)|_rate$|^min_p_"
    r"|^min_rewrite_relevance$|^min_changed$"
)


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message names a value, it does not
    print a megabyte of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        f"{where}: {name}={_short(value)} is not a valid {getattr(target, '__name__', target)}"
    )


def _check_range(cls: type, name: str, value: Any, where: str) -> None:
    """Counts are not negative, sizes at least 1, shares within [0, 1], numbers finite."""
    if isinstance(value, bool) or value is None:
        return
    field = next(f for f in dataclasses.fields(cls) if f.name == name)  # type: ignore[arg-type]
    if isinstance(value, int):
        default = field.default if isinstance(field.default, int) else 0
        low = 1 if AT_LEAST_ONE.search(name) else min(0, default)
        if value < low:
            raise ConfigError(f"{where}: {name}={value} must be at least {low}")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{where}: {name}={value} is not a finite number")
        if UNIT_INTERVAL.search(name) and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{where}: {name}={value} must be within 0..1")


def _expanded_nodes(node: yaml.Node, counted: dict[int, int], open_: set[int]) -> int:
    """How many nodes ``node`` stands for once every alias is expanded (shared nodes are counted
    once per use, without expanding them)."""
    key = id(node)
    if key in counted:
        return counted[key]
    if key in open_:
        raise ConfigError("a YAML alias refers to itself")
    open_.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_nodes(child, counted, open_) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_nodes(k, counted, open_) + _expanded_nodes(v, counted, open_)
    open_.discard(key)
    counted[key] = total
    return total


def _not_yaml(source: str, error: yaml.YAMLError) -> ConfigError:
    return ConfigError(f"{source}: not valid YAML ({str(error).splitlines()[0][:200]})")


def _load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` with alias expansion bounded (:data:`MAX_EXPANDED_NODES`)."""
    try:
        loader = yaml.SafeLoader(text)  # reading the text can fail already (control characters)
    except yaml.YAMLError as e:
        raise _not_yaml(source, e) from e
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded_nodes(node, {}, set())
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        if size > MAX_EXPANDED_NODES:
            raise ConfigError(
                f"{source}: the YAML expands to more than {MAX_EXPANDED_NODES:,} values through "
                "its aliases; write the values out"
            )
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise _not_yaml(source, e) from e
    finally:
        loader.dispose()


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
    if not path.exists() and PRESET_NAME.fullmatch(str(preset)):
        # a shipped preset by name (``--config local``), from any working directory
        return config_from_preset_text(cls, named_preset(str(preset)), section, overrides)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config preset not found") from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: is a directory; expected a preset YAML file") from e
    except PermissionError as e:
        raise ConfigError(f"{path}: not readable (permission denied)") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); expected a preset") from e
    # a file holds a preset, never the name of a shipped one
    return config_from_preset_text(cls, text, section, overrides, str(path), names=False)


def config_from_preset_text(
    cls: type[T],
    text: str,
    section: str | None = None,
    overrides: list[str] | None = None,
    source: str = "pipeline config",
    *,
    names: bool = True,
) -> T:
    """``load_config`` for a preset held as text: a pipeline's ``config`` parameter carries
    either a whole preset or (``names``) the name of a shipped one (``cluster``, ``local``)."""
    if names and PRESET_NAME.fullmatch(text.strip()):
        source = f"preset {text.strip()}"
        text = named_preset(text.strip())
    values: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    doc = _load_yaml(text, source) or {}
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{source}: expected a mapping of step sections, got {type(doc).__name__}"
        )
    if section:
        unknown = [str(k) for k in doc if k not in SECTIONS]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], SECTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{source}: unknown section {_short(unknown[0])}{hint}; sections: "
                + ", ".join(SECTIONS)
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
        _check_range(cls, key, values[key], f"{source}:{section}")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ConfigError(
                f"--set {_short(item)}: expected KEY=VALUE with KEY one of "
                + ", ".join(sorted(fields))
            )
        values[key] = _coerce(cls, key, _load_yaml(raw, f"--set {key}"), "--set")
        _check_range(cls, key, values[key], "--set")
    return cls(**values)
