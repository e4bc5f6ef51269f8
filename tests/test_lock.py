"""The lock of exact versions (requirements.lock, `make lock`): it covers every dependency
pyproject.toml declares, within its range; it locks torch at the version `make setup` installs;
and this environment was installed from it."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[1]
LOCK = ROOT / "requirements.lock"


def locked() -> dict[str, Version]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)$", line.strip())
        if m:
            pins[canonicalize_name(m[1])] = Version(m[2])
    return pins


def test_the_lock_covers_every_declared_dependency_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [
        *project["dependencies"],
        *project["optional-dependencies"]["dev"],
        *project["optional-dependencies"]["server"],
    ]
    pins = locked()
    assert len(pins) > 100
    for spec in map(Requirement, declared):
        name = canonicalize_name(spec.name)
        assert name in pins, f"requirements.lock has no pin for {spec}: run `make lock`"
        assert pins[name] in spec.specifier, f"{name}=={pins[name]} is outside {spec}"


def test_torch_is_locked_at_the_version_make_setup_installs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    torch_version = re.search(r"^TORCH_VERSION \?= (\S+)$", makefile, re.M)[1]
    assert locked()["torch"] == Version(torch_version)
    assert "--constraint $(LOCK)" in makefile  # make setup installs under the lock
    dockerfile = (ROOT / "containers" / "Dockerfile").read_text()
    assert "--constraint /tmp/constraints.txt" in dockerfile  # so do both images
    assert "COPY pyproject.toml requirements.lock /src/" in dockerfile


def test_this_environment_was_installed_from_the_lock() -> None:
    drift = []
    for name, pinned in locked().items():
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            continue  # locked for another extra or platform
        if Version(installed.public) != pinned:
            drift.append(f"{name} {installed} (locked {pinned})")
    assert not drift, "installed versions differ from requirements.lock: " + ", ".join(drift)
