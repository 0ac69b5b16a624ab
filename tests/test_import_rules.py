"""The import rules of pyproject.toml's [tool.importlinter] hold (`lint-imports`, also run by .ci/run), and the
check does see an import that breaks them: a copy of the package is broken on purpose and must fail."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the `bgagents` found first from `cwd` (import-linter puts the working directory first)."""
    return subprocess.run([str(LINT_IMPORTS), "--no-logo", "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_import_rules_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"Contracts: \d+ kept, 0 broken", result.stdout), result.stdout


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The package and pyproject.toml side by side in a folder of their own, to break."""
    shutil.copytree(ROOT / "src" / "bgagents", tmp_path / "bgagents",
                    ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _append(copy: Path, module: str, text: str) -> None:
    path = copy / "bgagents" / module
    path.write_text(path.read_text() + "\n" + text + "\n")


@pytest.mark.parametrize(("module", "added", "reported"), [
    # the core imports a package built on top of it
    ("core/schema.py", "from ..server import errors", "bgagents.core.schema -> bgagents.server.errors"),
    # ... only for the type checker: it counts too
    ("core/usage.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..conversation import store",
     "bgagents.core.usage -> bgagents.conversation.store"),
    # ... through a module outside the layers (the package's __init__ names the runtime): the chain is found
    ("core/names.py", "import bgagents", "bgagents.core is not allowed to import bgagents.runtime"),
    # DBOS, the Claude Agent SDK and the web framework stay in their one place each
    ("tools/files.py", "import dbos", "bgagents.tools.files -> dbos"),
    ("conversation/prompt.py", "import claude_agent_sdk", "bgagents.conversation.prompt -> claude_agent_sdk"),
    ("schedules/spec.py", "from fastapi import Request", "bgagents.schedules.spec -> fastapi"),
    ("core/usage.py", "import aiogram", "bgagents.core.usage -> aiogram"),
])
def test_an_import_that_breaks_a_rule_fails(copy: Path, module: str, added: str, reported: str) -> None:
    assert lint_imports(copy).returncode == 0
    _append(copy, module, added)
    result = lint_imports(copy)
    assert result.returncode == 1
    assert reported in result.stdout, result.stdout


def test_an_exception_no_longer_needed_must_go(copy: Path) -> None:
    """An `ignore_imports` line that matches no import fails the check, so the line goes with the import it let
    through (each reshape step deletes its own) and the rules only tighten."""
    pyproject = copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + """
[[tool.importlinter.contracts]]
id = "stale"
name = "An exception for an import nobody makes"
type = "forbidden"
source_modules = ["bgagents.tools"]
forbidden_modules = ["bgagents.cli"]
ignore_imports = ["bgagents.tools.files -> bgagents.cli.render"]
""")
    result = lint_imports(copy)
    assert result.returncode == 1
    assert "No matches for ignored import bgagents.tools.files -> bgagents.cli.render" in result.stdout, result.stdout
