"""`$BGAGENTS_HOME/schedules.toml`: schedules kept in a file, read again whenever it changes.

One table per schedule, named by the schedule:

    [morning-inbox]
    cron = "0 8 * * *"
    timezone = "Europe/Berlin"
    prompt = "Summarise my inbox"
    conversation = "default"

A file with any bad entry changes nothing (the error is logged) until it is fixed.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidInput
from .spec import ScheduleSpec

FILE_NAME = "schedules.toml"


def parse(text: str) -> dict[str, tuple[ScheduleSpec, dict[str, Any]]]:
    """Each entry's spec with the entry as written; any bad entry is an InvalidInput naming it."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInput(f"{FILE_NAME} is not valid TOML: {exc}") from None
    out = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise InvalidInput(f"{FILE_NAME}: '{name}' must be a table ([{name}] with cron or at, and prompt)")
        try:
            out[name] = (ScheduleSpec.model_validate({**entry, "name": name}), entry)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise InvalidInput(f"{FILE_NAME}: [{name}] {problems}") from None
    return out


class WatchedFile:
    """Tells when the file changed since the last look (by modification time and size)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | bool | None = False  # False: never looked

    def changed(self) -> bool:
        try:
            stat = self.path.stat()
            now: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            now = None
        if now == self._seen:
            return False
        self._seen = now
        return True

    def read(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None
