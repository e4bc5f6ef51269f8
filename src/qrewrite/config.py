"""Step configs: dataclasses loadable from a YAML preset section and overridable from the CLI.

A preset (``configs/local.yaml``) holds one section per step (``synth:``, ``mine:``, ...). The CLI
applies ``--set key=value`` overrides on top; values are parsed as YAML scalars and checked
against the dataclass field's type, so a typo fails loudly instead of being ignored.

Two top-level keys are not steps:

- ``extends: local`` (a shipped preset's name, or a path: relative to the extending file's
  folder, or to the working directory for a preset given as text) starts from that preset and
  merges this one's sections over it, key by key. A key's value replaces the base's whole, a
  mapping such as ``grpo.reward_weights`` included; a section cannot be removed.
- ``tracking: {tracking_uri: ..., experiment: ...}`` sets those fields of every step config that
  has them; a step's own section and ``--set`` win over it.

Precedence: field defaults < ``tracking:`` < the step's section (the base preset's, then this
one's) < ``--set``.
"""

from __future__ import annotations

import contextlib
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
EXTENDS = "extends"  # the preset a preset starts from
TRACKING = "tracking"  # shared settings applied to every step config with those fields
PRESET_KEYS = (EXTENDS, TRACKING)
# YAML aliases may share values, but a document that expands to more nodes than this (an alias
# bomb: a few lines, billions of nodes) is refused before anything walks it
MAX_EXPANDED_NODES = 100_000
# values at least 1; other integers at least 0 (or their default, when it is negative: -1 = off)
AT_LEAST_ONE = re.compile(
    r"(^|_)(k|epochs|batch_size|sessions_per_query|num_generations|folds|nodes|processes_per_node"
    r"|trainjob_timeout_s)$"
)
# floats that are shares or probabilities: within [0, 1]
UNIT_INTERVAL = re.compile(
    r"(^|_)(fraction|share|tolerance|similarity|confidence)($|_)|_rate$|^min_p_"
    r"|^min_rewrite_relevance$|^min_changed$"
)
# floats that are how many of one thing per another: not negative
NOT_NEGATIVE = re.compile(r"_ratio$")


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message names a value, it does not
    print a megabyte of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


T = TypeVar("T")

# YAML 1.1 (PyYAML) reads "5e-4" and "1E3" as strings: a float needs a dot ("5.0e-4")
SCIENTIFIC_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a number or a number YAML left as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and SCIENTIFIC_NUMBER.fullmatch(value.strip()):
        return float(value)
    return None


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
        if target is float and _number(value) is not None:
            return _number(value)
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
                if number and _number(v) is None:
                    raise TypeError
                out[str(k)] = _number(v) if number else v
            return out
    except (TypeError, ValueError):
        pass
    raise ConfigError(
        f"{where}: {name}={_short(value)} is not a valid {getattr(target, '__name__', target)}"
    )


def _check_range(cls: type, name: str, value: Any, where: str) -> None:
    """Counts and ratios are not negative, sizes at least 1, shares within [0, 1], numbers
    finite."""
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
        if NOT_NEGATIVE.search(name) and value < 0:
            raise ConfigError(f"{where}: {name}={value} must be at least 0")


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


def shipped_presets() -> list[str]:
    """The names of the presets shipped with the package, sorted."""
    from importlib import resources

    shipped = resources.files("qrewrite_presets")
    return sorted(
        p.name.removesuffix(".yaml") for p in shipped.iterdir() if p.name.endswith(".yaml")
    )


def named_preset(name: str) -> str:
    """The text of a preset shipped with the package (``configs/<name>.yaml``), as written (an
    ``extends`` in it not resolved: :func:`preset_document` does that)."""
    from importlib import resources

    path = resources.files("qrewrite_presets") / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"config {name!r}: no such preset; shipped presets: {', '.join(shipped_presets())}"
        )
    return path.read_text(encoding="utf-8")


def _read_preset(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config preset not found") from e
    except IsADirectoryError as e:
        raise ConfigError(f"{path}: is a directory; expected a preset YAML file") from e
    except PermissionError as e:
        raise ConfigError(f"{path}: not readable (permission denied)") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); expected a preset") from e


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


@dataclasses.dataclass(frozen=True)
class _Origin:
    """Where a preset's text came from: what ``extends`` is resolved against."""

    source: str  # for messages: a path, "preset local", "pipeline config"
    key: str | None = None  # identity for cycle detection (None: text, which nothing extends)
    folder: Path | None = None  # a relative ``extends`` path starts here (None: the cwd)
    shipped: bool = False  # a shipped preset extends shipped presets only


def _base_of(name: Any, origin: _Origin) -> tuple[str, _Origin]:
    """The text and origin of the preset ``extends: name`` names, resolved like ``--config``:
    an existing file first, else a shipped preset's name."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"{origin.source}: extends={_short(name)}: expected a shipped preset's name or a path"
        )
    name = name.strip()
    if not origin.shipped:
        path = Path(name)
        with contextlib.suppress(RuntimeError):  # ~user of no such user: the name as written
            path = path.expanduser()
        if not path.is_absolute() and origin.folder is not None:
            path = origin.folder / path
        if _is_file(path):
            return _read_preset(path), _Origin(str(path), str(path.resolve()), path.parent)
    if PRESET_NAME.fullmatch(name):
        try:
            text = named_preset(name)
        except ConfigError:
            pass
        else:
            return text, _Origin(f"preset {name}", f"preset:{name}", shipped=True)
    raise ConfigError(
        f"{origin.source}: extends {_short(name)}: no such preset file, nor a shipped preset of "
        f"that name (shipped: {', '.join(shipped_presets())})"
    )


def _merge(base: dict[Any, Any], doc: dict[Any, Any]) -> dict[Any, Any]:
    """``doc`` over ``base``: sections (mappings on both sides) key by key, anything else (a
    key's value, a mapping such as ``reward_weights`` included) replaced whole."""
    out = dict(base)
    for key, value in doc.items():
        if value is None and isinstance(base.get(key), dict):
            continue  # an empty section (``sft:``) changes nothing
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = {**base[key], **value}
        else:
            out[key] = value
    return out


def _document(text: str, origin: _Origin, chain: tuple[_Origin, ...] = ()) -> dict[Any, Any]:
    """The preset in ``text`` with its ``extends`` chain merged in (no ``extends`` key left);
    ``chain``: the presets that extend this one, for cycle detection."""
    doc = _load_yaml(text, origin.source) or {}
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{origin.source}: expected a mapping of step sections, got {type(doc).__name__}"
        )
    if EXTENDS not in doc:
        return doc
    doc = dict(doc)
    base_text, base = _base_of(doc.pop(EXTENDS), origin)
    path = (*chain, origin)
    if base.key in {o.key for o in path}:
        cycle = " -> ".join(o.source for o in (*path, base))
        raise ConfigError(f"{origin.source}: extends makes a cycle: {cycle}")
    return _merge(_document(base_text, base, path), doc)


def _origin_of(preset: str | Path) -> tuple[str, _Origin]:
    """The text of ``--config PRESET`` (a file, else a shipped preset's name) and its origin."""
    path = Path(preset)
    if not path.exists() and PRESET_NAME.fullmatch(str(preset)):
        # a shipped preset by name (``--config local``), from any working directory
        name = str(preset)
        return named_preset(name), _Origin(f"preset {name}", f"preset:{name}", shipped=True)
    # a file holds a preset, never the name of a shipped one
    return _read_preset(path), _Origin(str(path), str(path.resolve()), path.parent)


def _text_origin(text: str, source: str, names: bool) -> tuple[str, _Origin]:
    """A preset held as text: a whole preset or (``names``) the name of a shipped one."""
    if names and PRESET_NAME.fullmatch(text.strip()):
        name = text.strip()
        return named_preset(name), _Origin(f"preset {name}", f"preset:{name}", shipped=True)
    return text, _Origin(source)


def preset_document(
    preset: str | Path, *, text: bool = False, source: str = "pipeline config"
) -> dict[str, Any]:
    """The whole preset, its ``extends`` chain merged in: ``preset`` is what ``--config`` takes
    (a file, else a shipped preset's name) or, with ``text``, a pipeline's ``config`` parameter
    (a whole preset, or a shipped preset's name)."""
    body, origin = _text_origin(str(preset), source, True) if text else _origin_of(preset)
    return _document(body, origin)


def resolved_preset_text(
    preset: str | Path, *, text: bool = False, source: str = "pipeline config"
) -> str:
    """:func:`preset_document` as YAML with nothing left to resolve (no ``extends``): what a
    pipeline hands its steps when the preset extends a file the steps cannot see."""
    return yaml.safe_dump(preset_document(preset, text=text, source=source), sort_keys=False)


def load_config(
    cls: type[T],
    preset: str | Path | None = None,
    section: str | None = None,
    overrides: list[str] | None = None,
) -> T:
    """Build ``cls`` from defaults, then a preset's ``section``, then ``key=value`` overrides."""
    if preset is None:
        return config_from_preset_text(cls, "", section, overrides)
    body, origin = _origin_of(preset)
    return _config(cls, _document(body, origin), origin.source, section, overrides)


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
    either a whole preset or (``names``) the name of a shipped one (``cluster``, ``local``). An
    ``extends`` path in the text is resolved from the working directory."""
    body, origin = _text_origin(text, source, names)
    return _config(cls, _document(body, origin), origin.source, section, overrides)


def _config(
    cls: type[T],
    doc: dict[Any, Any],
    source: str,
    section: str | None,
    overrides: list[str] | None,
) -> T:
    """``cls`` from a resolved preset document: defaults < ``tracking:`` < ``section`` <
    ``overrides``."""
    values: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if section:
        unknown = [str(k) for k in doc if k not in SECTIONS and k not in PRESET_KEYS]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], (*SECTIONS, *PRESET_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{source}: unknown section {_short(unknown[0])}{hint}; sections: "
                + ", ".join((*SECTIONS, *PRESET_KEYS))
            )
        for key, value in _tracking(doc, source).items():
            if key in fields:
                values[key] = _coerce(cls, key, value, f"{source}:{TRACKING}")
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


def _tracking(doc: dict[Any, Any], source: str) -> dict[Any, Any]:
    """The preset's ``tracking:`` section, checked: only :class:`TrackingOptions` fields."""
    from qrewrite.training.options import TrackingOptions

    shared = doc.get(TRACKING)
    if shared is None:
        return {}
    if not isinstance(shared, dict):
        raise ConfigError(f"{source}: section {TRACKING!r} must be a mapping")
    known = [f.name for f in dataclasses.fields(TrackingOptions)]
    for key in shared:
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key {TRACKING}.{str(key)[:80]}; known keys: {', '.join(known)}"
            )
    return shared
