"""Asking a running session about itself (peek, SPEC 4.5; health check, SPEC 4.6).

The session is forked in memory (its stored transcript, no new task) and asked once by a small
model with no tools; the running session never sees the question.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic_ai import Agent

from ..core.schema import Task
from ..core.store import continuable, load_messages
from .events import ConversationEvent, EventType, render
from .responses import HealthReport

if TYPE_CHECKING:
    from ..core.runtime import Runtime

T = TypeVar("T")

PEEK_INSTRUCTIONS = ('Only consider the work since the "{name}" event. Give a brief status update: what is done, '
                     "what is in progress, what remains. Two or three sentences, plain text.")
HEALTH_INSTRUCTIONS = ('Only consider the work since the "{name}" event. Is that work finished? Answer finished=true '
                       "with its full result as output if it is, else finished=false and one sentence of progress.")


async def ask(runtime: Runtime, task: Task, name: str, kind: EventType, output_type: type[T],
              instructions: str, model: str | None = None) -> T:
    """Forks `task`'s session with `model` (default: its own) and asks `instructions` once."""
    rows = await runtime.store.message_rows(task.id)
    history = continuable(load_messages(r["message"] for r in rows))
    event = ConversationEvent(name=f"{kind}-{name}", type=kind, session="background",
                              time=datetime.fromtimestamp(runtime.clock(), UTC), target_event=name,
                              instructions=instructions.format(name=name))
    agent: Agent[None, Any] = Agent(runtime.models.resolve(model or task.model), output_type=output_type,
                                    instructions=task.instructions, name=kind)
    result = await agent.run(render(event), message_history=history)
    output: T = result.output
    return output


async def peek(runtime: Runtime, task: Task, name: str, model: str | None) -> str:
    text = await ask(runtime, task, name, "peek", str, PEEK_INSTRUCTIONS, model)
    return text.strip() or "[No output]"


async def health_check(runtime: Runtime, task: Task, name: str, model: str | None) -> HealthReport:
    return await ask(runtime, task, name, "health-check", HealthReport, HEALTH_INSTRUCTIONS, model)
