"""Where bubblewrap works, the server's git runs in a box of its own: defense in depth behind `core/git.py`.

Should a repository still make git run a program (say a filter a task wrote into the config between
git.py's read of it and the command, from a worktree running beside it), that program finds no secret and
no way out: it sees the system's programs and libraries read-only, the repository and worktrees the
command works on, an empty private /tmp and nothing else (no home, no `$BGAGENTS_HOME`, no database socket),
with no network and no other process. Where bwrap is missing or cannot run, git runs without the box.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/passwd", "/etc/group")


def argv(bwrap: str, command: list[str], writable: Sequence[Path], cwd: Path | None = None) -> list[str]:
    """`command` wrapped in bwrap, with only the system and `writable` (read-write) in sight."""
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--dev", "/dev", "--proc", "/proc",
            "--tmpfs", "/tmp"]
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    args += [arg for name in SYSTEM_FILES if Path(name).exists() for arg in ("--ro-bind", name, name)]
    program = shutil.which(command[0]) if command else None
    if program is not None and not Path(program).resolve().is_relative_to("/usr"):
        folder = str(Path(program).resolve().parent)  # a git installed elsewhere (/opt, /nix, ...)
        args += ["--ro-bind", folder, folder]
    for path in sorted({Path(p).resolve() for p in writable if Path(p).exists()}, key=lambda p: len(p.parts)):
        args += ["--bind", str(path), str(path)]
    if cwd is not None:
        args += ["--chdir", str(cwd)]
    return [*args, "--", *command]


@functools.cache
def bwrap() -> str | None:
    """bwrap's path when a box can be made here (probed once), else None."""
    found = shutil.which("bwrap")
    if found is None:
        return None
    try:
        done = subprocess.run(argv(found, ["git", "--version"], []), capture_output=True, timeout=30,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if done.returncode == 0 else None


def wrap(command: list[str], writable: Sequence[Path], cwd: Path) -> list[str]:
    """`command` in the box where one can be made, else as it is."""
    found = bwrap()
    return command if found is None else argv(found, command, writable, cwd)
