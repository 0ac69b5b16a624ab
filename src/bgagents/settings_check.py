"""Settings said in a person's words: keys nobody reads (a misspelt one is otherwise silently ignored) and
errors as one line naming the key, its file and its environment variable, without pydantic's internals."""

from __future__ import annotations

import difflib
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from .settings import ProfileSettings, Settings, default_home

CONFIG_FILE = "config.toml"


def config_path(home: Path | None = None) -> Path:
    return (home or default_home()).expanduser() / CONFIG_FILE


def _model_of(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """How a field holds settings models: ("one", M), ("dict", M) for dict[str, M], ("list", M) for list[M]."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            if arg is not type(None) and (found := _model_of(arg)) is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "one", annotation
    args = get_args(annotation)
    if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return "dict", args[1]
    if origin is list and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return "list", args[0]
    return None


def unknown_keys(model: type[BaseModel], data: Mapping[str, Any], path: tuple[str, ...] = (),
                 also: frozenset[str] = frozenset()) -> list[tuple[tuple[str, ...], list[str]]]:
    """Every key of `data` (nested) that `model` does not read, with the keys it reads at that place."""
    known = [*model.model_fields, *also]
    found: list[tuple[tuple[str, ...], list[str]]] = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            if key not in also:
                found.append(((*path, key), known))
            continue
        nested = _model_of(field.annotation)
        if nested is None:
            continue
        kind, sub = nested
        if kind == "one" and isinstance(value, Mapping):
            found += unknown_keys(sub, value, (*path, key))
        elif kind == "dict" and isinstance(value, Mapping):
            for name, item in value.items():
                if isinstance(item, Mapping):
                    found += unknown_keys(sub, item, (*path, key, str(name)))
        elif kind == "list" and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    found += unknown_keys(sub, item, (*path, key, str(i)))
    return found


def toml_key(path: tuple[str, ...]) -> str:
    """`('limits', 'stale_timeout')` as a person finds it in the file: `[limits] stale_timeout`."""
    return path[-1] if len(path) == 1 else f"[{'.'.join(path[:-1])}] {path[-1]}"


def _unknown_line(where: str, path: tuple[str, ...], known: list[str]) -> str:
    close = difflib.get_close_matches(path[-1], known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"{where}: unknown key {toml_key(path)} (ignored){hint}"


def config_warnings(home: Path | None = None) -> list[str]:
    """One line per key of config.toml that no setting reads (nothing when the file is missing or broken:
    loading the settings says what is wrong with it)."""
    path = config_path(home)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    return [_unknown_line(str(path), key, known) for key, known in unknown_keys(Settings, data)]


NOT_SETTINGS = frozenset({"DEMO_PAUSE", "TEST_POSTGRES_URL", "TOOL_RUN"})  # read elsewhere, on purpose


def env_warnings(environ: Mapping[str, str]) -> list[str]:
    """One line per `BGAGENTS_*` environment variable that no setting reads (e.g. BGAGENTS_MODLE)."""
    lines = []
    for key in sorted(environ):
        if not key.upper().startswith("BGAGENTS_") or key[9:].upper() in NOT_SETTINGS:
            continue
        data: dict[str, Any] = {}
        place = data
        parts = key[9:].lower().split("__")
        for part in parts[:-1]:
            place = place.setdefault(part, {})
        place[parts[-1]] = ""
        for path, known in unknown_keys(Settings, data):
            close = difflib.get_close_matches(path[-1], known, n=1)
            hint = f"; did you mean {env_name((*path[:-1], close[0]))}?" if close else ""
            lines.append(f"environment variable {key} is not a setting (ignored){hint}")
    return lines


def front_matter_warnings(where: str, meta: Mapping[str, Any]) -> list[str]:
    """One line per key of a Markdown profile's front matter that no profile setting reads."""
    return [_unknown_line(where, key, known)
            for key, known in unknown_keys(ProfileSettings, meta, also=frozenset({"name"}))]


def env_name(loc: tuple[str | int, ...]) -> str:
    return "BGAGENTS_" + "__".join(str(part).upper() for part in loc)


def describe(exc: Exception, home: Path | None = None) -> str:
    """A settings error as one line: which key, what is wrong, and where it may be set."""
    path = config_path(home)
    if isinstance(exc, tomllib.TOMLDecodeError):
        return f"{path} is not valid TOML: {exc}"
    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            value = error.get("input")
            got = f" (got {value!r})" if isinstance(value, str | int | float) and len(repr(value)) <= 40 else ""
            parts = tuple(str(p) for p in loc)
            section = len(parts) == 1 and _model_of(getattr(Settings.model_fields.get(parts[0]), "annotation", None))
            key = f"[{parts[0]}]" if section else toml_key(parts) if parts else "settings"
            env = env_name(loc) + ("__*" if section else "")
            where = f"set in {path} or {env}" if parts else f"in {path}"
            problems.append(f"{key}: {message}{got} ({where})")
        return "bad setting " + "; ".join(problems)
    if isinstance(exc, SettingsError) and (field := re.search(r'field "([^"]+)" from source "EnvSettingsSource"',
                                                                str(exc))):
        return f"bad setting: the environment variable {env_name((field[1],))} is not valid JSON"
    return f"bad settings: {exc}"
