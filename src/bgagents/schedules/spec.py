"""What a schedule is: the spec a person gives (API body, CLI, schedules.toml, the main agent's tool)
and the stored schedule with its state. A cron string or time zone that does not parse is refused
here, before anything is stored."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from croniter import CroniterError, croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..settings import iana_zone

CatchUp = Literal["none", "once", "all"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ScheduleSpec(BaseModel):
    """A schedule as given: `cron` (with `timezone`) or a one-shot `at`; it starts a plain task
    (`prompt`, `agent`, `model`) or, with `conversation`, sends it a `schedule-trigger` event."""

    model_config = ConfigDict(extra="forbid")  # a typo is an error, not a silently ignored key

    name: str = Field(description="Unique; letters, digits, '-', '_', '.' (at most 64)")
    prompt: str = Field(min_length=1, description="The task's prompt, or the event's text")
    cron: str | None = Field(None, description="A cron expression, e.g. '0 8 * * *' (minute hour day month weekday)")
    at: datetime | None = Field(None, description="A one-shot time (ISO 8601; without an offset, in `timezone`)")
    timezone: str | None = Field(None, description="IANA time zone of `cron` and of an `at` without offset; "
                                                   "default [schedules] timezone")
    conversation: str | None = Field(None, description="Send a schedule-trigger event to this conversation "
                                                       "instead of starting a plain task")
    agent: str | None = None
    model: str | None = None
    catch_up: CatchUp | None = Field(None, description="Missed cron runs: none, once (the latest), all; "
                                                       "default [schedules] catch_up")
    paused: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"'{value}' is not a schedule name: use letters, digits, '-', '_' or '.' (at most 64)")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the prompt is empty")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"'{value}' is not a cron expression: five fields, minute hour day month weekday "
                             "(e.g. '0 8 * * *' for every day at 08:00)")
        try:
            croniter(value, datetime.now(UTC)).get_next(datetime)
        except CroniterError:
            raise ValueError(f"'{value}' never runs (e.g. the 31st of February)") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else iana_zone(value)

    @model_validator(mode="after")
    def _when(self) -> ScheduleSpec:
        if (self.cron is None) == (self.at is None):
            raise ValueError("give either cron (a repeating schedule) or at (a one-shot time), not both or neither")
        return self


class LastRun(BaseModel):
    scheduled_at: float
    fired_at: float
    manual: bool = False
    missed_by: float | None = None
    task_id: str | None = None
    event: str | None = None  # the conversation event's name
    error: str | None = None


class Schedule(BaseModel):
    """A stored schedule: its spec (with defaults filled in), where it came from and its state."""

    name: str
    prompt: str
    cron: str | None = None
    at: float | None = None  # a one-shot time, seconds since the epoch
    timezone: str
    conversation: str | None = None
    agent: str | None = None
    model: str | None = None
    catch_up: CatchUp
    paused: bool
    source: Literal["api", "file", "agent"]
    created_at: float
    done: bool = False  # a one-shot that fired (or was dropped as too old)
    next_run_at: float | None = None
    last_run: LastRun | None = None
