"""The server log's line for each moment of a task's life: it starts, waits for a person, ends (and why).

One line each, written by the process that made the change, so a log read top to bottom says what
happened to every task without a single request to the API.
"""

from __future__ import annotations

import logging

from .schema import Progress, Task

log = logging.getLogger("bgagents.tasks")


def _who(task: Task) -> str:
    return f"task {task.id} ({task.name})"


def started(task: Task, turn: int, *, recovered: bool = False) -> None:
    if recovered:
        log.info("%s goes on after a restart: turn %d, model %s", _who(task), turn, task.model)
    else:
        log.info("%s started: turn %d, agent %s, model %s", _who(task), turn, task.agent, task.model)


def waiting(task: Task, tool: str, approval_id: str) -> None:
    log.info("%s waits for a person to allow %s (bgagents approve %s, or deny)", _who(task), tool, approval_id)


def ended(task: Task, status: str, end_reason: str | None = None, error: str | None = None,
          progress: Progress | None = None, exc: BaseException | None = None) -> None:
    """A completed task's line says what it used; a failed one (a warning) or a cancelled one says why.
    `exc`, an error nobody foresaw, adds its traceback."""
    if status == "completed":
        log.info("%s completed%s", _who(task), f": {usage(progress)}" if progress else "")
        return
    level = logging.WARNING if status == "failed" else logging.INFO
    log.log(level, "%s %s (%s)%s", _who(task), status, end_reason or "error", f": {error}" if error else "",
            exc_info=exc)


def usage(progress: Progress) -> str:
    tokens = progress.input_tokens + progress.output_tokens
    cost = "" if progress.cost_usd is None else f", ${progress.cost_usd:.4f}"
    return f"{progress.requests} model request(s), {progress.tool_calls} tool call(s), {tokens:,} tokens{cost}"
