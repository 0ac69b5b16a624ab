"""OpenTelemetry spans for task turns; pydantic-ai's instrumentation adds the model-request and tool-call spans
(with the GenAI semantic attributes) inside them.

Off unless the runtime is given a tracer provider (`bgagents serve` makes one from the standard
`OTEL_EXPORTER_OTLP_*` variables when the `otel` extra is installed; see `bgagents/traces.py`). A turn's span is
kept on the task, so a child task's turn links to its parent's, a follow-up turn to the previous one, and a turn
resumed after a restart to the span of the run it continues."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TracerProvider
from opentelemetry.util.types import AttributeValue

from .schema import Task

TRACER = "bgagents"


def ref(span: Span, turn: int) -> dict[str, Any] | None:
    """What is kept on the task of a turn's span, so later spans can link to it."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return {"turn": turn, "trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


def _link(stored: dict[str, Any], why: str) -> Link:
    ctx = SpanContext(int(stored["trace_id"], 16), int(stored["span_id"], 16), is_remote=True,
                      trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return Link(ctx, {"bgagents.link": why})


def links(task: Task, turn: int, parent: Task | None) -> list[Link]:
    """The turn's links: to the run it continues after a restart (same turn) or the previous turn, and to the
    parent task's current turn."""
    found = []
    if task.trace:
        found.append(_link(task.trace, "continues" if task.trace.get("turn") == turn else "previous_turn"))
    if parent is not None and parent.trace:
        found.append(_link(parent.trace, "parent"))
    return found


@contextlib.contextmanager
def turn_span(provider: TracerProvider, task: Task, turn: int, span_links: list[Link]) -> Iterator[Span]:
    """The span of one turn, current while the turn runs (so pydantic-ai's spans nest inside it)."""
    attributes: dict[str, AttributeValue] = {
        "bgagents.task.id": task.id, "bgagents.task.name": task.name, "bgagents.task.agent": task.agent,
        "bgagents.task.model": task.model, "bgagents.task.turn": turn, "bgagents.task.root_id": task.root_id,
        "gen_ai.agent.name": task.agent}
    if task.parent_id:
        attributes["bgagents.task.parent_id"] = task.parent_id
    tracer = provider.get_tracer(TRACER)
    with tracer.start_as_current_span(f"bgagents.turn {task.name}", kind=SpanKind.INTERNAL, attributes=attributes,
                                      links=span_links, record_exception=False,
                                      set_status_on_exception=False) as span:
        yield span


def finish(span: Span, status: str) -> None:
    span.set_attribute("bgagents.task.status", status)
    span.set_status(Status(StatusCode.OK) if status == "completed" else Status(StatusCode.ERROR, status))
