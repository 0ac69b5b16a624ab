"""`bgagents doctor`: the settings, agent profiles, schedules and model keys checked without starting a
server, one line per finding; the exit code is 1 when any is an error.

It reads what `serve` would read from here (this shell's environment, `$BGAGENTS_HOME`, `./.bgagents/`):
run it where the server runs.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import typer
from rich.text import Text

from ..errors import BgAgentsError
from ..settings import Settings
from ..settings_check import config_path, config_warnings, describe, env_warnings, front_matter_warnings
from .app import START, app
from .client import Client, ClientError
from .common import JsonOpt, console, emit

Level = Literal["ok", "note", "warning", "error"]
STYLE = {"ok": "green", "note": "dim", "warning": "yellow", "error": "red"}


@dataclass(frozen=True)
class Finding:
    level: Level
    message: str


def _profiles(settings: Settings) -> Iterator[Finding | tuple[str, str | None, str]]:
    """Findings about the profiles, and each usable profile as (name, model, runner) for the model check."""
    from ..core.profiles import config_profiles, profile_dirs, read_markdown_profile

    profiles, broken = config_profiles(settings)
    for message in broken.values():
        yield Finding("error", message)
    files = 0
    for folder in profile_dirs(settings):
        for path in sorted(folder.glob("*.md")) if folder.is_dir() else []:
            files += 1
            try:
                profile, written = read_markdown_profile(path)
            except BgAgentsError as exc:
                yield Finding("error", exc.message)
                continue
            yield from (Finding("warning", line) for line in front_matter_warnings(str(path), written))
            profiles[profile.name] = profile
    where = f" ({files} from files in {' and '.join(str(d) for d in profile_dirs(settings))})" if files else ""
    yield Finding("ok", f"agent profiles: {', '.join(sorted(profiles))}{where}")
    for profile in profiles.values():
        yield profile.name, profile.model, profile.runner
        yield from ((profile.name, fallback, profile.runner) for fallback in profile.fallback_models)


def _schedules(settings: Settings, agents: set[str]) -> Iterator[Finding | tuple[str, str | None, str]]:
    from ..schedules.file import FILE_NAME, parse

    path = settings.home / FILE_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        yield Finding("error", f"{path} cannot be read: {exc}")
        return
    try:
        entries = parse(text)
    except BgAgentsError as exc:
        yield Finding("error", f"{path}: {exc.message.removeprefix(FILE_NAME + ': ')}")
        return
    for name, (spec, _) in entries.items():
        if spec.agent and spec.agent not in agents:
            yield Finding("error", f"{path}: [{name}] names unknown agent '{spec.agent}'")
        elif spec.model:
            yield f"schedule {name}", spec.model, "native"
    yield Finding("ok", f"{path}: {len(entries)} schedule(s)")


def _models(settings: Settings, wanted: list[tuple[str, str | None, str]]) -> Iterator[Finding]:
    from ..core.models import ModelRegistry
    from ..runners import with_runner

    if not settings.model:
        yield Finding("warning", "no default model (BGAGENTS_MODEL, or `model` in config.toml): launches need "
                                 "--model; BGAGENTS_MODEL=demo is the offline demo model")
    named = [("the default model", settings.model, "native"),
             ("[conversation] model", settings.conversation.model, "native"),
             ("[conversation] peek_model", settings.conversation.peek_model, "native"),
             *((f"agent profile '{who}'", model, runner) for who, model, runner in wanted)]
    registry = ModelRegistry()
    checked: dict[str, str | None] = {}
    try:
        for who, model, runner in named:
            if not model:
                continue
            try:
                name = with_runner(model, runner)
                if name not in checked:
                    checked[name] = None
                    registry.check(name)
            except BgAgentsError as exc:
                checked[name] = exc.message
                yield Finding("error", f"{who}: {exc.message}")
    finally:
        asyncio.run(registry.aclose())
    usable = [name for name, error in checked.items() if error is None]
    if usable:
        yield Finding("ok", f"models usable here: {', '.join(usable)} (keys read from this shell's environment; "
                            "the server reads its own)")


def _server(settings: Settings) -> Finding:
    try:
        client = Client.from_settings(settings)
        client.get("/stats")
    except ClientError as exc:
        if exc.code in ("no_server", "timeout"):
            return Finding("note", f"no server answers at {settings.url} (start one with `bgagents serve`)")
        return Finding("error", f"the server at {settings.url}: {exc.message}")
    return Finding("ok", f"a server answers at {settings.url} and takes this token")


def findings() -> Iterator[Finding]:
    try:
        settings = Settings()
    except Exception as exc:
        yield Finding("error", describe(exc))
        return
    path = config_path(settings.home)
    yield Finding("ok", f"settings: home {settings.home}, {path if path.exists() else 'no config.toml'}")
    yield from (Finding("warning", line) for line in config_warnings(settings.home))
    yield from (Finding("warning", line) for line in env_warnings(os.environ))
    wanted: list[tuple[str, str | None, str]] = []
    agents: set[str] = set()
    for item in _profiles(settings):
        if isinstance(item, Finding):
            yield item
        else:
            agents.add(item[0])
            wanted.append(item)
    for item in _schedules(settings, agents):
        if isinstance(item, Finding):
            yield item
        else:
            wanted.append(item)
    yield from _models(settings, wanted)
    yield _server(settings)


@app.command(rich_help_panel=START)
def doctor(json_mode: JsonOpt = False) -> None:
    """Check settings, agent profiles, schedules and model keys, without starting a server.

    Run it where the server runs (it reads this shell's environment): one line per finding, exit code 1 on
    any error."""
    found = list(findings())
    if json_mode:
        emit([{"level": f.level, "message": f.message} for f in found])
    else:
        for f in found:
            console.print(Text.assemble((f"{f.level}:", STYLE[f.level]), " ", f.message))
    if any(f.level == "error" for f in found):
        raise typer.Exit(1)

