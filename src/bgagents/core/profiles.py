"""Agent profiles: the built-in `general` and `explore`, `[agents.NAME]` in config, and Markdown files.

A Markdown profile is YAML front matter (name, description, model, fallback_models, tools,
disallowed_tools, permissions, max_turns, limits) and a body that is the system prompt. Files in
`./.bgagents/agents/` override those in `$BGAGENTS_HOME/agents/`, which override the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from ..errors import InvalidInput, UnknownAgent
from ..settings import ProfileSettings, Settings
from ..tools import BUILTIN_TOOL_NAMES, READ_ONLY_TOOL_NAMES
from .permissions import validate as validate_permissions

GENERAL_PROMPT = """You are a capable background agent working on a task in a workspace directory.
Work autonomously: plan with `todowrite` for multi-step work, use the tools to inspect and change
files, run commands with `bash`, and check your work. Paths are relative to the workspace.
When you are done, answer with a concise report of what you did and what you found."""

EXPLORE_PROMPT = """You are a read-only exploration agent. Investigate the workspace with `read`,
`glob` and `grep` to answer the question you are given. You cannot change files or run commands.
Answer with a concise, well-organised report that cites file paths."""


class Profile(BaseModel):
    name: str
    description: str = ""
    prompt: str = ""
    model: str | None = None
    fallback_models: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=lambda: list(BUILTIN_TOOL_NAMES))
    permissions: dict[str, Any] = Field(default_factory=dict)
    max_turns: int | None = None
    limits: dict[str, float] = Field(default_factory=dict)
    isolation: Literal["none", "worktree"] = "none"
    runner: str = "native"
    network: bool | None = None  # None: the `[sandbox] network` setting
    source: str = "builtin"


BUILTIN_PROFILES: dict[str, Profile] = {
    "general": Profile(name="general", description="A general agent with every built-in tool.",
                       prompt=GENERAL_PROMPT),
    "explore": Profile(name="explore", description="A read-only agent that investigates the workspace.",
                       prompt=EXPLORE_PROMPT, tools=list(READ_ONLY_TOOL_NAMES)),
}


def _from_settings(name: str, spec: ProfileSettings, source: str) -> Profile:
    tools = list(spec.tools) if spec.tools is not None else list(BUILTIN_TOOL_NAMES)
    tools = [t for t in tools if t not in set(spec.disallowed_tools)]
    unknown = [t for t in tools if t not in BUILTIN_TOOL_NAMES]
    if unknown:
        raise InvalidInput(f"agent profile '{name}' ({source}) names unknown tools: {', '.join(unknown)}")
    validate_permissions(spec.permissions, f"agent profile '{name}' ({source})")
    return Profile(
        name=name, description=spec.description, prompt=spec.prompt or GENERAL_PROMPT, model=spec.model,
        fallback_models=spec.fallback_models, tools=tools, permissions=spec.permissions,
        max_turns=spec.max_turns, limits=spec.limits, isolation=spec.isolation, runner=spec.runner,
        network=spec.network,
        source=source,
    )


def read_markdown_profile(path: Path) -> tuple[Profile, dict[str, Any]]:
    """The profile a Markdown file defines, and its front matter as written (to warn of keys nobody reads)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot be read: {exc}") from None
    meta: dict[str, Any] = {}
    body = text
    if text.startswith("---"):
        _, _, rest = text.partition("---")
        front, sep, body = rest.partition("\n---")
        if not sep:
            raise InvalidInput(f"{path}: front matter is not closed with '---'")
        try:
            loaded = yaml.safe_load(front) or {}
        except yaml.YAMLError as exc:
            raise InvalidInput(f"{path}: front matter is not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput(f"{path}: front matter must be a mapping")
        meta = loaded
    written = dict(meta)
    name = str(meta.pop("name", path.stem))
    if isinstance(meta.get("tools"), str):
        meta["tools"] = [t.strip() for t in meta["tools"].split(",") if t.strip()]
    try:
        spec = ProfileSettings.model_validate({**meta, "prompt": body.lstrip("-\n").strip()})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'front matter'}: {e['msg']}"
                             for e in exc.errors(include_url=False))
        raise InvalidInput(f"{path}: {problems}") from None
    return _from_settings(name, spec, str(path)), written


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's complaint in one line: what, and where in the file (its front matter starts on line 1)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        return exc.problem + (f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else "")
    return " ".join(str(exc).split())


def parse_markdown_profile(path: Path) -> Profile:
    return read_markdown_profile(path)[0]


def profile_dirs(settings: Settings) -> list[Path]:
    return [settings.home / "agents", Path.cwd() / ".bgagents" / "agents"]


def config_profiles(settings: Settings) -> tuple[dict[str, Profile], dict[str, str]]:
    """The built-in profiles and those of `[agents.NAME]`, and a one-line error per broken one."""
    profiles, broken = dict(BUILTIN_PROFILES), {}
    for name, spec in settings.agents.items():
        try:
            profiles[name] = _from_settings(name, spec, f"{settings.home / 'config.toml'} [agents.{name}]")
        except InvalidInput as exc:
            broken[name] = exc.message
    return profiles, broken


def load_profiles(settings: Settings) -> dict[str, Profile]:
    """Every profile the settings and profile folders define; a broken one is a clear error."""
    profiles, broken = config_profiles(settings)
    if broken:
        raise InvalidInput(next(iter(broken.values())))
    for folder in profile_dirs(settings):
        if folder.is_dir():
            for path in sorted(folder.glob("*.md")):
                profile = parse_markdown_profile(path)
                profiles[profile.name] = profile
    return profiles


def get_profile(profiles: dict[str, Profile], name: str, broken: dict[str, str] | None = None) -> Profile:
    """The profile `name`; else an error naming the known ones, or what is wrong with a broken one of that name."""
    try:
        return profiles[name]
    except KeyError:
        if broken and name in broken:
            raise UnknownAgent(f"agent '{name}' cannot be used: {broken[name]}") from None
        unusable = f"; not usable: {', '.join(sorted(broken))} (`bgagents agents` says why)" if broken else ""
        raise UnknownAgent(f"unknown agent '{name}'; known agents: {', '.join(sorted(profiles))}{unusable}") from None
