"""Settings: `$BGAGENTS_HOME/config.toml`, overridden by `BGAGENTS_*` environment variables.

Every key of the file is also an environment variable: `BGAGENTS_KEY` at top level and
`BGAGENTS_SECTION__KEY` inside a section (`BGAGENTS_CONCURRENCY__DEFAULT=3`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_URL = "http://127.0.0.1:8321"


def default_home() -> Path:
    return Path(os.environ.get("BGAGENTS_HOME") or Path.home() / ".bgagents").expanduser()


class ConcurrencySettings(BaseModel):
    """Running tasks per concurrency key: per model, else per provider, else the default; 0 = unlimited."""

    default: int = Field(5, ge=0)
    providers: dict[str, int] = Field(default_factory=dict)
    models: dict[str, int] = Field(default_factory=dict)


class ProfileSettings(BaseModel):
    """An agent profile written in `[agents.NAME]` of the config file."""

    description: str = ""
    model: str | None = None
    fallback_models: list[str] = Field(default_factory=list)
    tools: list[str] | None = None
    disallowed_tools: list[str] = Field(default_factory=list)
    permissions: dict[str, Any] = Field(default_factory=dict)
    max_turns: int | None = None
    limits: dict[str, float] = Field(default_factory=dict)
    prompt: str = ""
    isolation: Literal["none", "worktree"] = "none"
    runner: Literal["native", "claude-code"] = "native"  # what runs its turns (see bgagents.runners)
    network: bool | None = None  # bash in the sandbox has the network; default: `[sandbox] network`


class LimitSettings(BaseModel):
    """Supervision of running tasks (SPEC 5). Durations are in seconds; None turns a limit off."""

    consecutive_threshold: int = Field(20, ge=1)
    max_tool_calls: int = Field(4000, ge=1)
    stale_timeout: float = Field(600.0, gt=0)
    queue_ttl: float | None = Field(None, gt=0)
    max_runtime: float | None = Field(None, gt=0)
    approval_timeout: float = Field(600.0, gt=0)
    retries: int = Field(2, ge=0)
    retry_backoff: float = Field(1.0, ge=0)
    completion_nudges: int = Field(3, ge=0)
    retention_days: float = Field(30.0, gt=0)
    sweep_interval: float = Field(1.0, gt=0)


class SpawnSettings(BaseModel):
    max_depth: int = Field(3, ge=0)
    max_descendants: int = Field(50, ge=0)


class ConversationSettings(BaseModel):
    """The main conversation (SPEC 4). Durations are in seconds."""

    model: str | None = None  # the main agent's model; default: the top-level `model`
    agent: str = "general"  # the profile whose tools the main agent has
    wait_threshold: float = Field(60.0, ge=0)  # how long a new event waits for a busy main turn
    peek_model: str | None = None  # a small model for peeks and health checks; default: the session's own
    health_check_interval: float = Field(0.0, ge=0)  # 0 = off: progress (SPEC 2.3) already costs nothing
    health_check_timeout: float = Field(120.0, gt=0)


class WebhookSubscriptionSettings(BaseModel):
    """A webhook from the config file: `[[webhooks.subscriptions]] url, events, secret`."""

    url: str
    events: list[str] = Field(default_factory=list)  # empty: every event type
    secret: str = Field(min_length=8)  # whsec_… (base64), as the receiver's Standard Webhooks library expects


class WebhookSettings(BaseModel):
    """Webhooks (Standard Webhooks). Durations are in seconds."""

    allow_private: bool = False  # private and loopback addresses are refused unless this is true
    retry_delays: list[float] = Field(default_factory=lambda: [5.0, 30.0, 300.0, 1800.0])
    timeout: float = Field(10.0, gt=0)  # one try; a receiver that hangs longer fails that try
    poll_interval: float = Field(1.0, gt=0)  # how often other processes' events are looked for
    launch_secret: str | None = None  # signs per-launch webhooks; default: $BGAGENTS_HOME/webhook-secret
    subscriptions: list[WebhookSubscriptionSettings] = Field(default_factory=list)


class SandboxSettings(BaseModel):
    """How `bash` runs: in bubblewrap where it works (`auto`), always (`on`, an error where it can't) or never."""

    mode: Literal["auto", "on", "off"] = "auto"
    network: bool = True  # a profile's `network` key overrides it
    # more paths commands may read (e.g. "~/.nvm"): the sandbox shows the system and PATH, no home
    read_only: list[Path] = Field(default_factory=list)


class TelegramSettings(BaseModel):
    """The Telegram channel: on when `token` is set. Each allowed chat is one conversation."""

    token: SecretStr | None = None  # from @BotFather
    # chat ids; in the environment also "123,-456" or "[123, -456]"
    allowed_chats: Annotated[list[int], NoDecode] = Field(default_factory=list)
    api_url: str = "https://api.telegram.org"  # another Bot API server (self-hosted, or a test one)
    webhook_url: str | None = None  # set: Telegram posts updates to it (it must reach /telegram/webhook)
    webhook_secret: SecretStr | None = None  # checked on every webhook call; default: derived from the token
    poll_timeout: int = Field(30, ge=0, le=50)  # seconds one getUpdates long poll may wait

    @field_validator("allowed_chats", mode="before")
    @classmethod
    def _chat_list(cls, value: Any) -> Any:
        if isinstance(value, int):
            return [value]
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else text.replace(",", " ").split()
        return value


MAX_ZONE_NAME = 128  # the longest IANA name has 32 characters


def iana_zone(value: str) -> str:
    """`value` if it names an IANA time zone (zoneinfo), else a ValueError that says so (quoting at most the
    start of a long value). zoneinfo looks the name up as a file: a name too long for one, a folder (`Europe`)
    or a file that is no zone raise OSError or ValueError, and each is only a name that is not a zone."""
    try:
        if len(value) > MAX_ZONE_NAME:
            raise ValueError(value)
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        shown = value if len(value) <= 60 else value[:60] + f"… ({len(value)} characters)"
        raise ValueError(f"'{shown}' is not an IANA time zone (e.g. 'Europe/Berlin', 'UTC')") from None
    return value


class ScheduleSettings(BaseModel):
    """Schedules (SPEC 6). Durations are in seconds."""

    timezone: str = "UTC"  # of a schedule that names none
    catch_up: Literal["none", "once", "all"] = "once"  # missed cron runs of a schedule that says nothing
    max_missed_age: float = Field(7 * 86400.0, gt=0)  # older missed runs are dropped (and logged)
    grace: float = Field(60.0, ge=0)  # a run later than this is "missed" (fires with missed_by)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return iana_zone(value)


class ProcessSettings(BaseModel):
    """How processes sharing one PostgreSQL database tell the live from the dead (seconds)."""

    lock_check_interval: float = Field(0.5, gt=0)  # how often a process checks it still holds its lock
    takeover_interval: float = Field(2.0, gt=0)  # how often it looks for work of processes that are gone
    # how long an executor's lock must be seen free before its work is taken over: a live process whose lock
    # connection dropped takes its lock again meanwhile
    takeover_grace: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _grace_covers_a_check(self) -> ProcessSettings:
        if self.takeover_grace <= self.lock_check_interval:
            raise ValueError("takeover_grace must be longer than lock_check_interval, or a live process whose "
                             "lock connection dropped could be taken for dead before it takes its lock again")
        return self


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8321
    access_log: bool = False  # a line per HTTP request in the server's log


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BGAGENTS_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None
    model: str | None = None
    workspace: Path | None = None
    token: str | None = None
    url: str = DEFAULT_URL
    queue_polling_interval: float = Field(0.03, gt=0)  # launch->running p50 ~25 ms; each poll costs CPU
    concurrency: ConcurrencySettings = Field(default_factory=ConcurrencySettings)
    agents: dict[str, ProfileSettings] = Field(default_factory=dict)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    spawn: SpawnSettings = Field(default_factory=SpawnSettings)
    conversation: ConversationSettings = Field(default_factory=ConversationSettings)
    schedules: ScheduleSettings = Field(default_factory=ScheduleSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    processes: ProcessSettings = Field(default_factory=ProcessSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        home = getattr(init_settings, "init_kwargs", {}).get("home") or default_home()
        toml = TomlConfigSettingsSource(settings_cls, toml_file=Path(home).expanduser() / "config.toml")
        return (init_settings, env_settings, toml)

    @property
    def workspace_path(self) -> Path:
        return (self.workspace or self.home / "workspace").expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgres://"):
                url = "postgresql://" + url.removeprefix("postgres://")
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            return url
        return f"sqlite:///{self.home.expanduser().resolve() / 'bgagents.db'}"

    def resolve_token(self, *, create: bool) -> str | None:
        """The API token: `BGAGENTS_TOKEN`, else `$BGAGENTS_HOME/token`, generated (0600) when asked."""
        if self.token:
            return self.token
        path = self.home.expanduser() / "token"
        if path.exists():
            with contextlib.suppress(OSError):
                path.chmod(0o600)
            return path.read_text().strip() or None
        if not create:
            return None
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
