"""The sandbox `bash` runs in: bubblewrap, as Claude Code uses on Linux, and an environment without secrets.

Inside, a new read-only root shows only the system, the programs on PATH outside the homes and the
workspace (writable); `/tmp`, `/var/tmp` and `$HOME` are private and empty; no home, `/run`, `/var` or
socket of the machine is there; the server's own files are hidden wherever a mount would show them;
`/proc` shows only the sandbox's own processes, and the network is there or not (off, abstract sockets
go too). bwrap dies with the server (`--die-with-parent`), and everything in the sandbox with bwrap (it
is the sandbox's process 1).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import BgAgentsError
from .private import ServerFiles, within

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


# what every command may read: the system, never a home, /run (sockets, e.g. PostgreSQL's), /var, /srv, /mnt
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix")
HOMES = (Path("/home"), Path("/root"))


@dataclass(frozen=True)
class Sandbox:
    """How one command is wrapped in bwrap: a new, read-only root holding only `read_only`, a private
    `/tmp` and `$HOME` (empty, gone after the call), and the writable places."""

    bwrap: str
    workspace: Path  # where the command starts
    writable: tuple[Path, ...]  # the workspace, or a task's git worktree and its repository's .git
    server: ServerFiles  # hidden wherever a mount would show them
    read_only: tuple[Path, ...] = ()  # the system, the programs on PATH, [sandbox] read_only
    home: Path | None = None  # $HOME of the command: an empty tmpfs there
    network: bool = True
    shared_tmp: bool = False  # /tmp is the caller's (a sandbox inside another: the outer one's private /tmp)
    covered: tuple[Path, ...] = ()  # folders shown empty (e.g. a sandbox's parent's private state)

    def with_network(self, network: bool | None) -> Sandbox:
        return self if network is None or network == self.network else dataclasses.replace(self, network=network)

    def in_worktree(self, workspace: Path, worktree: Path, git_dir: Path) -> Sandbox:
        """For a task in its own git worktree: that worktree writable, and the .git it commits into."""
        return dataclasses.replace(self, workspace=workspace, writable=(worktree, git_dir))

    def with_read_only(self, *paths: Path) -> Sandbox:
        return dataclasses.replace(self, read_only=(*self.read_only, *paths))

    def with_writable(self, *paths: Path) -> Sandbox:
        return dataclasses.replace(self, writable=(*self.writable, *paths))

    def mounts(self) -> list[list[str]]:
        """The mounts, parents before what is mounted inside them; the server's files inside any of them
        are covered (looked up at each call: a file the server creates later is covered too)."""
        task_area = self.writable[0]
        mounts: list[tuple[Path, list[str]]] = [(p, ["--ro-bind-try", str(p), str(p)]) for p in self.read_only]
        mounts += [(Path("/tmp"), ["--bind", "/tmp", "/tmp"] if self.shared_tmp else ["--tmpfs", "/tmp"]),
                   (Path("/var/tmp"), ["--tmpfs", "/var/tmp"])]
        if self.home is not None:
            mounts.append((self.home, ["--tmpfs", str(self.home)]))
        mounts += [(w, ["--bind", str(w), str(w)]) for w in self.writable]
        covered: set[Path] = set()
        for path in self.covered:
            if any(within(path, root) for root in (*self.read_only, *self.writable, *([self.home] if self.home
                                                                                     else []))):
                covered.add(path)
                mounts.append((path, ["--tmpfs", str(path)]))
        for root in (*self.read_only, *self.writable):
            for path in self.server.hidden_in(root, task_area):
                if path not in covered:
                    covered.add(path)
                    mounts.append((path, ["--tmpfs", str(path)] if path.is_dir() else
                                   ["--ro-bind", "/dev/null", str(path)]))
        # a worktree inside a covered home shows again: deeper paths are mounted later
        mounts.sort(key=lambda m: (len(m[0].parts), m[1][0] == "--bind"))
        return [m for _, m in mounts]

    def argv(self, command: list[str], cwd: str | None = None) -> list[str]:
        """bwrap's command line for `command`, started in `cwd` (default: the workspace)."""
        args = [self.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                "--dev", "/dev", "--proc", "/proc"]
        for mount in self.mounts():
            args += mount
        args += ["--remount-ro", "/"]
        if not self.network:
            args.append("--unshare-net")
        return [*args, "--chdir", cwd or str(self.workspace), "--", *command]


def in_a_home(path: Path, user_home: Path) -> bool:
    return any(within(path, h) for h in (*HOMES, user_home))


def readable(environ: Mapping[str, str], extra: Iterable[Path], server: ServerFiles) -> tuple[Path, ...]:
    """What commands may read: the system directories; each PATH directory outside the homes, with the
    virtual environment it belongs to and that one's Python; the paths of `[sandbox] read_only`. Nothing
    of the server's home, whatever is asked."""
    user_home = Path(environ.get("HOME") or "/nonexistent").resolve()
    found: list[Path] = [Path(p) for p in SYSTEM_DIRS if Path(p).exists()]
    resolv = Path("/etc/resolv.conf").resolve()  # a link into /run (systemd-resolved) would break DNS
    if not within(resolv, Path("/etc")) and resolv.exists():
        found.append(resolv)
    homes = (*HOMES, user_home, server.home)
    for entry in environ.get("PATH", "").split(os.pathsep):
        path = Path(entry).resolve() if entry.startswith("/") else None
        if path is None or not path.is_dir() or in_a_home(path, user_home) or any(within(h, path) for h in homes):
            continue  # a PATH of `/` or `/home` would show every home
        found.append(path)
        config = path.parent / "pyvenv.cfg"
        base = _venv_base(config) if config.is_file() else None
        found += [p for p in (path.parent, base) if p is not None and not any(within(h, p) for h in homes)]
    found += [p.expanduser().resolve() for p in extra if p.expanduser().exists()]
    kept: list[Path] = []
    for path in found:
        if not within(path, server.home) and path not in kept and not any(within(path, k) for k in kept):
            kept.append(path)
    return tuple(kept)


def _venv_base(config: Path) -> Path | None:
    """The installation a virtual environment's Python comes from (`home = …/bin` in its pyvenv.cfg)."""
    try:
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                return Path(value.strip()).resolve().parent
    except OSError:
        pass
    return None


def plan(bwrap: str, server: ServerFiles, network: bool, read_only: Iterable[Path] = (),
         environ: Mapping[str, str] = os.environ) -> Sandbox:
    """The sandbox of this runtime's workspace."""
    home = Path(environ.get("HOME") or "/").resolve()  # an empty private $HOME there (never over `/`)
    return Sandbox(bwrap=bwrap, workspace=server.workspace, writable=(server.workspace,), server=server,
                   read_only=readable(environ, read_only, server), home=home if len(home.parts) > 1 else None,
                   network=network)


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


async def choose(mode: str, server: ServerFiles, network: bool,
                 read_only: Iterable[Path] = ()) -> tuple[Sandbox | None, str | None]:
    """The sandbox to use (None: bash runs without one) and, when there is none, a note saying why.

    `auto` uses bwrap where it is installed and works; `on` requires it; `off` never uses it."""
    if mode == "off":
        return None, None
    bwrap = shutil.which("bwrap")
    why = "bwrap is not installed (Debian/Ubuntu: apt install bubblewrap)" if bwrap is None else None
    sandbox = None
    if bwrap is not None:
        sandbox = plan(bwrap, server, network, read_only)
        why = await probe(sandbox)
    if why is None:
        return sandbox, None
    if mode == "on":
        raise SandboxUnavailable(f"sandbox mode is 'on' but the bash sandbox cannot run: {why}")
    return None, (f"not protected: bash and Claude Code tasks run unsandboxed ({why}), so a task can read and "
                  "change whatever the server's user can; install bubblewrap, or set [sandbox] mode = \"off\" "
                  "(BGAGENTS_SANDBOX__MODE=off) to silence this note")
