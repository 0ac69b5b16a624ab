"""The sandbox `bash` runs in: bubblewrap, as Claude Code uses on Linux, and an environment without secrets.

Inside, `/` is read-only, only the workspace is writable, `/tmp` is private, `$BGAGENTS_HOME` (token,
database, config) is hidden except the workspace within it, `/proc` shows only the sandbox's own
processes, and the network is there or not. bwrap dies with the server (`--die-with-parent`), and
everything in the sandbox with bwrap (it is the sandbox's process 1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import BgAgentsError

# Environment rule for bash, sandboxed or not: every variable of the server is passed on except those
# whose name starts with BGAGENTS_ or contains one of SECRET_WORDS, and those whose value holds a
# password in a URL; the names in ALWAYS_KEPT are passed on whatever they contain.
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "AUTH", "COOKIE",
                "PRIVATE")
ALWAYS_KEPT = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR",
                         "COLUMNS", "LINES"})
_URL_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


class SandboxUnavailable(BgAgentsError):
    code = "sandbox_unavailable"
    status = 500


def bash_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The server's environment as bash gets it (the rule above)."""
    return {name: value for name, value in environ.items() if _kept(name, value)}


def _kept(name: str, value: str) -> bool:
    upper = name.upper()
    if upper in ALWAYS_KEPT or upper.startswith("LC_"):
        return True
    if upper.startswith("BGAGENTS_") or any(word in upper for word in SECRET_WORDS):
        return False
    return not _URL_PASSWORD.search(value)


@dataclass(frozen=True)
class Sandbox:
    """How one bash command is wrapped in bwrap."""

    bwrap: str
    workspace: Path  # where the command starts
    writable: tuple[Path, ...]  # the workspace, or a task's git worktree and its repository's .git
    hidden_dirs: tuple[Path, ...] = ()  # covered by an empty tmpfs (e.g. $BGAGENTS_HOME)
    hidden_files: tuple[Path, ...] = ()  # covered by /dev/null (e.g. a database outside the home)
    network: bool = True

    def with_network(self, network: bool | None) -> Sandbox:
        return self if network is None or network == self.network else dataclasses.replace(self, network=network)

    def in_worktree(self, workspace: Path, worktree: Path, git_dir: Path) -> Sandbox:
        """For a task in its own git worktree: that worktree writable, and the .git it commits into."""
        return dataclasses.replace(self, workspace=workspace, writable=(worktree, git_dir))

    def argv(self, command: list[str]) -> list[str]:
        mounts: list[tuple[Path, list[str]]] = [(Path("/tmp"), ["--tmpfs", "/tmp"])]
        mounts += [(d, ["--tmpfs", str(d)]) for d in self.hidden_dirs]
        mounts += [(w, ["--bind", str(w), str(w)]) for w in self.writable]
        # a file hidden inside the workspace is covered after the workspace is mounted: deeper paths last
        mounts += [(f, ["--ro-bind", "/dev/null", str(f)]) for f in self.hidden_files if f.exists()]
        mounts.sort(key=lambda m: len(m[0].parts))
        args = [self.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for _, mount in mounts:
            args += mount
        if not self.network:
            args.append("--unshare-net")
        return [*args, "--chdir", str(self.workspace), "--", *command]


def plan(bwrap: str, workspace: Path, home: Path, secret_files: Iterable[Path], network: bool) -> Sandbox:
    """The sandbox for this runtime: the home hidden, and each secret file not already hidden with it."""
    workspace, home = workspace.resolve(), home.resolve()
    hidden_dirs = () if workspace == home else (home,)
    files = []
    for path in secret_files:
        path = path.resolve()
        exposed_again = path.is_relative_to(workspace) and workspace.is_relative_to(home)
        if not (hidden_dirs and path.is_relative_to(home) and not exposed_again):
            files.append(path)
    return Sandbox(bwrap=bwrap, workspace=workspace, writable=(workspace,), hidden_dirs=hidden_dirs,
                   hidden_files=tuple(files), network=network)


async def probe(sandbox: Sandbox) -> str | None:
    """Runs `true` in the sandbox (with the network off, the strictest form); why it failed, or None."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *sandbox.with_network(False).argv(["true"]), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    except (OSError, TimeoutError) as exc:
        return f"{sandbox.bwrap} could not be run ({exc})"
    if proc.returncode != 0:
        return f"{sandbox.bwrap} failed: {err.decode(errors='replace').strip() or f'exit code {proc.returncode}'}"
    return None


async def choose(mode: str, workspace: Path, home: Path, secret_files: Iterable[Path],
                 network: bool) -> tuple[Sandbox | None, str | None]:
    """The sandbox to use (None: bash runs without one) and, when there is none, a note saying why.

    `auto` uses bwrap where it is installed and works; `on` requires it; `off` never uses it."""
    if mode == "off":
        return None, None
    bwrap = shutil.which("bwrap")
    why = "bwrap is not installed (Debian/Ubuntu: apt install bubblewrap)" if bwrap is None else None
    sandbox = None
    if bwrap is not None:
        sandbox = plan(bwrap, workspace, home, secret_files, network)
        why = await probe(sandbox)
    if why is None:
        return sandbox, None
    if mode == "on":
        raise SandboxUnavailable(f"sandbox mode is 'on' but the bash sandbox cannot run: {why}")
    return None, (f"bash runs without a sandbox: {why}; it can read what the server's user can "
                  "([sandbox] mode = \"off\" or BGAGENTS_SANDBOX__MODE=off silences this note)")
