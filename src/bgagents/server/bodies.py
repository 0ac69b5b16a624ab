"""Request bodies of the HTTP API. Unknown fields are refused, so a typo is an error, not a silent no-op."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LaunchBody(Body):
    prompt: str = Field(min_length=1)
    name: str | None = None
    description: str = ""
    agent: str | None = None
    model: str | None = None
    fallback_models: list[str] | None = None
    priority: int = 0
    parent_id: str | None = None
    limits: dict[str, float] | None = None
    instructions: str | None = None
    output_schema: dict[str, Any] | None = None
    isolation: Literal["none", "worktree"] | None = Field(
        None, description="worktree: the task works in its own git worktree of the workspace (default: the "
                          "profile's, else none)")
    webhook: str | None = Field(None, max_length=2000, description="A URL told (signed, Standard Webhooks) when "
                                                                 "this task ends or waits for approval")


class BatchBody(Body):
    tasks: list[LaunchBody] = Field(min_length=1, max_length=1000, description="launched together, or none")


class ResumeBody(Body):
    prompt: str = Field(min_length=1)


class MessageBody(Body):
    message: str = Field(min_length=1)


class ForkBody(Body):
    prompt: str = Field(min_length=1)
    at: int | None = Field(None, ge=0)
    model: str | None = None
    name: str | None = None


class CancelAllBody(Body):
    all: bool = True
    parent_id: str | None = None


class DecisionBody(Body):
    decision: Literal["approve", "deny"]
    reason: str | None = None


class ChatMessageBody(Body):
    text: str = ""
    files: list[str] = Field(default_factory=list, description="Workspace paths that come with the message.")


class ButtonBody(Body):
    label: str = Field(min_length=1)


class BackgroundAgentBody(Body):
    prompt: str = Field(min_length=1)
    name: str | None = None
