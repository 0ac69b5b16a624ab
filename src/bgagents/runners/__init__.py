"""Runners: what runs a task's turns. The native one is pydantic-ai's agent loop (`core/runner.py`);
others run an outside agent in the task's workspace, one folder each (`claude_code/`).

A model string `RUNNER:MODEL` (e.g. `claude-code:sonnet`) picks a runner; anything else is a
pydantic-ai model string and runs natively. Runners are imported only when a task needs one, so
their optional dependencies stay optional.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

from ..errors import InvalidInput

if TYPE_CHECKING:
    from ..core.runner import Services
    from ..core.schema import Task

NATIVE = "native"
# runner name -> "module:attribute" of its Runner, loaded on first use
RUNNERS: dict[str, str] = {"claude-code": "bgagents.runners.claude_code:runner"}


class Runner(Protocol):
    """One way to run a turn. `run_turn` is the body of the `bgagents.turn` workflow after the task is
    `running`, and returns its final status; cancel, shutdown and `max_runtime` are handled around it."""

    name: str

    def check(self, model: str) -> None:
        """Raises `UnknownModel` saying what is missing when `model` cannot run (e.g. an extra not installed)."""

    async def run_turn(self, services: Services, task: Task, turn: int, prompt: str) -> str: ...


def runner_name(model: str) -> str:
    """The runner a model string asks for: its prefix when that names a runner, else native."""
    prefix = model.strip().split(":", 1)[0]
    return prefix if prefix in RUNNERS else NATIVE


def find_runner(model: str) -> Runner | None:
    """The runner of a model string, or None for a native (pydantic-ai) model."""
    name = runner_name(model)
    if name == NATIVE:
        return None
    module, _, attribute = RUNNERS[name].partition(":")
    runner: Runner = getattr(importlib.import_module(module), attribute)
    return runner


def with_runner(model: str, runner: str) -> str:
    """A profile's `runner` applied to a model string: `sonnet` -> `claude-code:sonnet`; native leaves it."""
    if runner == NATIVE or runner_name(model) == runner:
        return model
    if runner not in RUNNERS:
        raise InvalidInput(f"unknown runner '{runner}'; known: {', '.join([NATIVE, *RUNNERS])}")
    bare = model.split(":", 1)[1] if ":" in model else model
    return f"{runner}:{bare or 'default'}"
