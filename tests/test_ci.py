"""The test infrastructure itself: constraints.txt pins what pyproject.toml asks for; our own deprecations fail."""

from __future__ import annotations

import runpy
import tomllib
import warnings

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import ROOT


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and ";" not in line, f"constraints.txt pins exact releases only: {line!r}"
        key = canonicalize_name(name)
        assert key not in pins, f"{name} is pinned twice"
        pins[key] = Version(version)
    return pins


def test_constraints_pin_every_dependency_of_the_runtime_and_its_pinned_extras() -> None:
    """A dependency added to pyproject.toml without re-running .ci/lock, or a range the pin no longer satisfies,
    fails here rather than on a user's fresh install."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = runpy.run_path(str(ROOT / ".ci" / "extras.py"))["pinned_extras"]()
    assert "test" in extras and "bench" not in extras
    wanted = list(pyproject["project"]["dependencies"])
    for extra in extras:
        wanted += pyproject["project"]["optional-dependencies"][extra]
    pins = _pins()
    unpinned, outside = [], []
    for text in wanted:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        if pin is None:
            unpinned.append(requirement.name)
        elif not requirement.specifier.contains(pin, prereleases=True):
            outside.append(f"{requirement.name}=={pin} (pyproject: {requirement.specifier})")
    assert not unpinned, f"not in constraints.txt (run `bash .ci/lock`): {unpinned}"
    assert not outside, f"constraints.txt pins releases pyproject.toml excludes (run `bash .ci/lock`): {outside}"


def test_a_deprecation_our_code_triggers_is_an_error() -> None:
    """pyproject's filterwarnings: a deprecated call made from bgagents fails the test that makes it."""
    with pytest.raises(DeprecationWarning):
        warnings.warn_explicit("old API", DeprecationWarning, "bgagents/x.py", 1, module="bgagents.x")
