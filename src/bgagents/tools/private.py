"""The server's own files, which no file tool, download or Telegram upload may reach, whatever the layout.

They are everything in `$BGAGENTS_HOME` that is not a task's place to work: the token, `config.toml`, the
database with its -wal/-shm/lock files, logs, `run/`, `agents/`, other tasks' tool outputs and worktrees.
The default workspace (`$BGAGENTS_HOME/workspace`) and a task's own worktree are the task's. When the
workspace *is* the home, the files a person keeps there are the task's too, and only the entries the server
creates (`HOME_ENTRIES`) are the server's. When the home is inside the workspace (a workspace of `~`
with the home at `~/.bgagents`), all of it is the server's. Secret files kept outside the home (a SQLite
database elsewhere) are named one by one, and so are the server user's credentials (`CREDENTIALS`: ~/.ssh,
~/.aws, ~/.claude...), which a workspace of `~` would otherwise hold.

Paths are judged resolved (symbolic links followed), and opened with `open_resolved`, which follows no
link: a link a task plants between the check and the open makes the open fail.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# what the server creates at the top of its home (a SQLite database's -wal, -shm and .lock files included)
HOME_ENTRIES = ("token", "config.toml", "webhook-secret", "schedules.toml", "agents", "outputs", "run",
                "worktrees", "logs", "*.db", "*.db-*", "*.db.*", "*.log", "*.sqlite*")


# where a person's credentials live in their home: out of reach also when the workspace holds the home
CREDENTIALS = (".ssh", ".aws", ".azure", ".gnupg", ".pgpass", ".netrc", ".git-credentials", ".npmrc", ".pypirc",
               ".docker", ".kube", ".claude", ".claude.json", ".config/gcloud", ".config/gh",
               ".cargo/credentials.toml", ".local/share/keyrings", ".password-store")


def within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


@dataclass(frozen=True)
class ServerFiles:
    home: Path  # $BGAGENTS_HOME, resolved
    workspace: Path  # the configured workspace, resolved
    elsewhere: tuple[Path, ...] = ()  # secret files and folders outside the home, resolved

    @classmethod
    def of(cls, home: Path, workspace: Path, secret_files: Iterable[Path] = (),
           user_home: Path | None = None) -> ServerFiles:
        """`user_home`: the server user's home, whose `CREDENTIALS` are secret files too."""
        home, workspace = home.expanduser().resolve(), workspace.expanduser().resolve()
        secret = [*secret_files, *([user_home / c for c in CREDENTIALS] if user_home is not None else [])]
        elsewhere = tuple(p for p in (f.expanduser().resolve() for f in secret) if not within(p, home))
        return cls(home=home, workspace=workspace, elsewhere=elsewhere)

    def showing(self, *paths: Path) -> ServerFiles:
        """The same, minus secret files within `paths` (a sandbox that must show them: Claude Code's config)."""
        return ServerFiles(self.home, self.workspace,
                           tuple(p for p in self.elsewhere if not any(within(p, s) for s in paths)))

    def owns(self, path: Path, task_area: Path | None = None) -> bool:
        """Whether the resolved `path` is the server's; `task_area` is where the task works (its worktree,
        which lies in the home), counted as the task's."""
        if any(within(path, secret) for secret in self.elsewhere):
            return True
        if not within(path, self.home):
            return False
        for area in (self.workspace, task_area):
            if area is not None and area != self.home and area.is_relative_to(self.home) and within(path, area):
                return False
        if self.workspace != self.home:
            return True
        top = path.relative_to(self.home).parts[:1]
        return bool(top) and any(fnmatch.fnmatchcase(top[0], pattern) for pattern in HOME_ENTRIES)

    def hidden_in(self, root: Path, task_area: Path | None = None) -> Iterator[Path]:
        """The server's files and folders inside `root` (a folder a sandbox shows), to cover one by one."""
        if within(self.home, root):
            if self.home != self.workspace:
                yield self.home
            else:
                with contextlib.suppress(OSError):
                    yield from (entry for entry in self.home.iterdir() if self.owns(entry, task_area))
        yield from (p for p in self.elsewhere if within(p, root) and p.exists())


def open_resolved(path: Path, flags: int, mode: int = 0o600, *, parents: bool = False) -> int:
    """Opens a resolved absolute path without following any symbolic link on the way (each directory is
    opened with O_NOFOLLOW from the one above): a link planted after the path was resolved is refused
    (OSError, ELOOP or ENOTDIR) instead of followed. `parents` creates missing folders the same way."""
    parts = path.parts
    if not path.is_absolute() or len(parts) < 2:
        raise OSError(errno.EINVAL, f"not a resolved file path: {path}")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY)
    try:
        for part in parts[1:-1]:
            nxt = _made_dir(part, fd) if parents else None
            if nxt is None:
                nxt = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
    finally:
        os.close(fd)


def _made_dir(name: str, parent: int) -> int | None:
    """A folder made in `parent` and opened (with the person's umask), or None when it was there already."""
    try:
        os.mkdir(name, 0o777, dir_fd=parent)
    except FileExistsError:
        return None
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    if _person_umask is not None:
        os.fchmod(fd, 0o777 & ~_person_umask)
    return fd


# -- the process's umask ---------------------------------------------------------------------------

_person_umask: int | None = None


def keep_private() -> None:
    """From now on what this process creates is its user's alone (umask 077): the home, the database, logs,
    tool outputs. Tools go on creating workspace files with the umask the person started the server with."""
    global _person_umask
    previous = os.umask(0o077)
    if _person_umask is None:
        _person_umask = previous


def person_umask() -> int | None:
    """The umask for files made in the workspace; None when `keep_private` was not called (the process's own)."""
    return _person_umask
