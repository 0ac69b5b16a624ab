"""Request bodies of the HTTP API. Unknown fields are refused, so a typo is an error, not a silent no-op.

Numbers and strings are bounded by what the database can hold, so bad input is a 422, never a 500: a
NUL character (PostgreSQL's text cannot hold one), a number that is not finite (JSON columns cannot),
an integer past the database's INTEGER, an id longer than its column.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# PostgreSQL's INTEGER is 32 bits: a sequence number or index given to compare with one stays inside
MAX_INT = 2**31 - 1
# the queue orders by priority in a range this keeps distinct (see core.engine.dbos_priority)
MAX_PRIORITY = 999_999

ModelName = Annotated[str, Field(min_length=1, max_length=256)]


def check_values(data: Any) -> Any:
    """Refuses NUL characters and numbers that are not finite anywhere in a JSON body (iteratively: bodies
    may nest deeply)."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        if isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return data


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return check_values(data)


class LaunchBody(Body):
    prompt: str = Field(min_length=1)
    name: str | None = None
    description: str = ""
    agent: str | None = Field(None, max_length=128)
    model: ModelName | None = None
    fallback_models: list[ModelName] | None = None
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Higher runs first.")
    parent_id: str | None = Field(None, max_length=64)
    limits: dict[str, Annotated[float, Field(ge=0)]] | None = None
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
    at: int | None = Field(None, ge=0, le=MAX_INT, description="Keep the transcript's first `at` messages.")
    model: ModelName | None = None
    name: str | None = None


class CancelAllBody(Body):
    all: bool = True
    parent_id: str | None = Field(None, max_length=64)


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
