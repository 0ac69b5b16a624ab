"""What the main agent answers with (SPEC 4.4): structured output, so delivery is never a guess."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

NO_OUTPUT = "[No output]"


class BackgroundAgent(BaseModel):
    """A background task to start, forked from the main session."""

    name: str = Field(description="A short name for the work, as a slug (e.g. tea-history); the one the person "
                                  "asked for, if any.")
    prompt: str = Field(description="What the background agent must do; it sees the whole conversation.")
    model: str | None = Field(None, description="A model for this work, if not the main agent's.")
    agent: str | None = Field(None, description="An agent profile, if not the default.")

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a background agent needs a prompt")
        return value


class MainResponse(BaseModel):
    action: Literal["send", "silent"] = Field(
        description="send: deliver message, files and buttons to the person; silent: deliver nothing.")
    action_reason: str = Field(description="Why this action, in a few words (kept in the history, never shown).")
    message: str | None = Field(None, description="The message to the person when action is send.")
    files: list[str] = Field(default_factory=list, description="Workspace paths to deliver with the message.")
    buttons: list[str] = Field(default_factory=list, description="Labels of buttons the person can tap.")
    background_agents: list[BackgroundAgent] = Field(
        default_factory=list, description="Long work to start in the background; each result comes back as an event.")


class Delivery(BaseModel):
    """What reaches the person for one response; None from `delivery` when nothing does."""

    message: str
    files: list[str]
    buttons: list[str]


def delivery(response: MainResponse) -> Delivery | None:
    if response.action == "silent":
        return None
    return Delivery(message=response.message if response.message and response.message.strip() else NO_OUTPUT,
                    files=response.files, buttons=response.buttons)


class HealthReport(BaseModel):
    """A health check's answer about a background session (SPEC 4.6)."""

    finished: bool = Field(description="True if the task is complete, false if it is still being worked on.")
    output: MainResponse | None = Field(None, description="The full result, when finished is true.")
    progress: str | None = Field(None, description="One sentence on where the work stands, when not finished.")
