"""The profiles a runtime uses, its Markdown files read again whenever they change (as `schedules.toml` is).

Each use looks at the profile folders (a directory listing and a `stat` per file, no reading): a file
added, changed or removed is taken into account at once, so a profile written while `serve` runs is used
by the next launch. A broken file is said once in the log (and by `bgagents agents` and `bgagents doctor`)
and changes nothing: its last good version, if any, stays in use until it is fixed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInput
from ..settings import Settings
from ..settings_check import front_matter_warnings
from .profiles import Profile, config_profiles, get_profile, profile_dirs, read_markdown_profile

log = logging.getLogger("bgagents.profiles")

Stamp = tuple[str, int, int]  # path, modification time (ns), size


@dataclass(frozen=True)
class _File:
    stamp: Stamp
    profile: Profile | None  # the last good version
    error: str | None


class ProfileFiles:
    """Built-in profiles, `[agents.NAME]` of the config, then each profile folder's `*.md` (later ones win)."""

    def __init__(self, settings: Settings) -> None:
        self.dirs = profile_dirs(settings)
        self.base, self.config_broken = config_profiles(settings)
        for message in self.config_broken.values():
            log.warning("%s", message)
        self._files: dict[str, _File] = {}
        self._seen: tuple[Stamp, ...] | None = None
        self._profiles: dict[str, Profile] = dict(self.base)
        self._broken: dict[str, str] = dict(self.config_broken)

    def current(self) -> dict[str, Profile]:
        """Every usable profile by name, the files read again if any changed since the last call."""
        stamps = self._stamps()
        if stamps != self._seen:
            self._reload(stamps, first=self._seen is None)
            self._seen = stamps
        return self._profiles

    def broken(self) -> dict[str, str]:
        """Profiles that cannot be used (or not in their latest version): name → what is wrong."""
        self.current()
        return dict(self._broken)

    def get(self, name: str) -> Profile:
        return get_profile(self.current(), name, self._broken)

    def _stamps(self) -> tuple[Stamp, ...]:
        found: list[Stamp] = []
        for folder in self.dirs:
            try:
                entries = sorted((e for e in os.scandir(folder) if e.name.endswith(".md")), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                try:
                    if entry.is_file():
                        stat = entry.stat()
                        found.append((entry.path, stat.st_mtime_ns, stat.st_size))
                except FileNotFoundError:  # removed meanwhile
                    continue
        return tuple(found)

    def _read(self, stamp: Stamp, old: _File | None, first: bool) -> _File:
        path = Path(stamp[0])
        try:
            profile, written = read_markdown_profile(path)
        except InvalidInput as exc:
            kept = old.profile if old is not None else None
            log.warning("%s%s", exc.message, "; its last good version stays in use" if kept else "")
            return _File(stamp, kept, exc.message)
        for line in front_matter_warnings(str(path), written):
            log.warning("%s", line)
        if not first:
            log.info("agent profile '%s' %s from %s", profile.name, "read again" if old else "added", path)
        return _File(stamp, profile, None)

    def _reload(self, stamps: tuple[Stamp, ...], first: bool) -> None:
        files: dict[str, _File] = {}
        for stamp in stamps:
            old = self._files.get(stamp[0])
            files[stamp[0]] = old if old is not None and old.stamp == stamp else self._read(stamp, old, first)
        for gone in self._files.keys() - files.keys():
            log.info("agent profile file %s removed", gone)
        profiles, broken = dict(self.base), dict(self.config_broken)
        for path, file in files.items():
            if file.profile is not None:
                profiles[file.profile.name] = file.profile
            if file.error is not None:
                broken[file.profile.name if file.profile is not None else Path(path).stem] = file.error
        self._files, self._profiles, self._broken = files, profiles, broken
