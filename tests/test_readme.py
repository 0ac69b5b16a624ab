"""README's examples run as written: the Python one is extracted from the README and run, twice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


def readme_example(section: str) -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"```python\n(.*?)```", text[text.index(f"## {section}\n"):], re.S)
    assert found, f"no Python example under '## {section}'"
    return found.group(1)


@pytest.mark.slow  # a process of its own, with a runtime
def test_the_python_example_runs_as_written(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example("Python"))
    env = {**os.environ, "BGAGENTS_HOME": str(tmp_path / "home"), "BGAGENTS_DEMO_PAUSE": "0.01"}
    for _ in range(2):  # what it adds it removes: it runs again
        done = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert "Finished: 'Summarise the README'" in lines[0], done.stdout
        assert sum(line.endswith(" completed") for line in lines) == 2, done.stdout
        assert any("background agent" in line for line in lines), done.stdout
        assert any(line.startswith("next inbox run: ") for line in lines), done.stdout
        assert "Asyncio task cancelled" not in done.stderr  # the background agent it leaves is stopped quietly
