"""Conversation events and the one `<event>` block each becomes in the main agent's prompt (SPEC 4.2).

Every value is XML-escaped, attributes and text alike, so a message that contains `</event>` or a
quote cannot forge structure the model would trust.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from xml.sax.saxutils import escape

from pydantic import BaseModel, Field

EventType = Literal["user-message", "button-click", "schedule-trigger", "background-agent-result",
                    "background-agent-progress", "background-agent-start", "peek", "health-check"]
# the events a conversation takes from its queue (SPEC 4.1)
EVENT_TYPES: tuple[EventType, ...] = ("user-message", "button-click", "schedule-trigger",
                                      "background-agent-result", "background-agent-progress")
# the prompts of sessions forked from it: a background agent's start, a peek, a health check
FORK_TYPES: tuple[EventType, ...] = ("background-agent-start", "peek", "health-check")
_ENTITIES = {'"': "&quot;", "'": "&apos;"}


class Schedule(BaseModel):
    name: str
    missed_by: str | None = None  # e.g. "2h 5m", set when a one-shot fires late after downtime
    scheduled_at: datetime | None = None


class Result(BaseModel):
    """What a background agent answered; `action` is its own, so a silent result stays silent."""

    action: Literal["send", "silent"] = "send"
    status: str = "completed"
    text: str = ""
    files: list[str] = Field(default_factory=list)


class ConversationEvent(BaseModel):
    name: str
    type: EventType
    session: Literal["main", "background"] = "main"
    time: datetime
    backgrounded_event: str | None = None  # the main turn this event's turn pushed into the background
    schedule: Schedule | None = None
    original_event: str | None = None  # the event whose background work produced this result
    target_event: str | None = None  # the session a progress report is about
    progress: str | None = None
    result: Result | None = None
    button: str | None = None
    text: str | None = None
    files: list[str] = Field(default_factory=list)
    instructions: str | None = None


def esc(value: object) -> str:
    """Escapes for text and for double- or single-quoted attributes alike."""
    return escape(str(value), _ENTITIES)


def _attrs(**values: object) -> str:
    return "".join(f' {key.replace("_", "-")}="{esc(v)}"' for key, v in values.items() if v is not None)


def _files(paths: list[str]) -> str:
    return "<files>" + "".join(f"<file{_attrs(path=p)}/>" for p in paths) + "</files>"


def render(event: ConversationEvent) -> str:
    """The `<event>` block, children in the order SPEC 4.2 gives, each only where present."""
    time = event.time.isoformat(timespec="seconds")
    lines = [f"<event{_attrs(name=event.name, type=event.type, session=event.session, time=time)}>"]
    if event.backgrounded_event:
        lines.append(f"<backgrounded-event{_attrs(name=event.backgrounded_event)}/>")
    if event.schedule:
        s = event.schedule
        at = s.scheduled_at.isoformat(timespec="seconds") if s.scheduled_at else None
        lines.append(f"<schedule{_attrs(name=s.name, missed_by=s.missed_by, scheduled_at=at)}/>")
    if event.original_event:
        lines.append(f"<original-event{_attrs(name=event.original_event)}/>")
    if event.target_event:
        lines.append(f"<target-event{_attrs(name=event.target_event)}/>")
    if event.progress is not None:
        lines.append(f"<progress>{esc(event.progress)}</progress>")
    if event.result:
        r = event.result
        files = _files(r.files) if r.files else ""
        lines.append(f"<result{_attrs(action=r.action, status=r.status)}><text>{esc(r.text)}</text>{files}</result>")
    if event.button is not None:
        lines.append(f"<button>{esc(event.button)}</button>")
    if event.text is not None:
        lines.append(f"<text>{esc(event.text)}</text>")
    if event.files:
        lines.append(_files(event.files))
    if event.instructions:
        lines.append(f"<instructions>{esc(event.instructions)}</instructions>")
    lines.append("</event>")
    return "\n".join(lines)
