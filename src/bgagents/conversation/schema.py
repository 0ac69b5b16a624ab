"""The shapes a conversation shows to interfaces: its events, responses and sessions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from ..core.schema import Progress, TaskStatus


class EventRecord(BaseModel):
    """An event in a conversation's queue, as kept in its history."""

    seq: int
    name: str
    type: str
    time: float
    status: Literal["pending", "started", "done"]
    task_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Response(BaseModel):
    """What the conversation answered; `delivered` is false for a silent one (kept only in the history)."""

    seq: int
    conversation_id: str
    event_name: str | None = None
    task_id: str | None = None
    action: Literal["send", "silent"]
    action_reason: str = ""
    message: str | None = None
    files: list[str] = Field(default_factory=list)
    buttons: list[str] = Field(default_factory=list)
    delivered: bool
    created_at: float


class Session(BaseModel):
    """A running session of a conversation: the main one or a background one."""

    task_id: str
    name: str
    main: bool
    prompt: str  # the person's own words (or the agent's task), never the XML the model saw
    model: str
    status: TaskStatus
    elapsed: float
    progress: Progress


class Peek(BaseModel):
    task_id: str
    name: str
    text: str
