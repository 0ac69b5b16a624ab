"""The only way the server runs git, on repositories a task can write (`.git` included): hostile input.

Git runs a program a repository names in four ways; each is closed as a whole, not per string:
1. Hooks: `core.hooksPath=/dev/null` is given on the command line, which has the last word on config, so
   no hook is found whatever `.git/hooks` or the repository's config holds.
2. Config that names a program (filters, diff and merge drivers, textconv, fsmonitor, editors, pagers,
   credential helpers, ssh commands, signing programs, tools, ...): the keys of one name are pinned on the
   command line (`PINNED`); the keys whose name a repository chooses (`filter.<x>.clean`, `merge.<x>.driver`,
   `credential.<url>.helper`, ...) are read first with `git config --list` (it runs nothing, and follows
   `include`/`includeIf` so the included files count too), and each one whose name says it holds a program
   (`program_key`) is emptied on the command line. Attributes only choose among the drivers config defines,
   so with every driver emptied `.gitattributes` selects nothing that runs; a merge that needs an emptied
   merge driver fails rather than run it. Diffs also take `--no-ext-diff --no-textconv`.
3. The environment: built from an allow-list (`KEPT`), with HOME an empty private directory, no system or
   global config and no attributes file of the system, and the GIT_* variables that silence editors,
   pagers and prompts. No secret of the server (provider keys, the API token, ...) is in it, and no
   variable of the server names a program for git.
4. Transports (ssh, `ext::`, remote helpers): `GIT_ALLOW_PROTOCOL` allows none; the server's git never
   fetches, and submodules are not recursed into (their config would be another repository's).
The work tree is pinned too (`GIT_DIR`, `GIT_WORK_TREE`): `core.worktree` cannot send a checkout or a
merge outside the repository, nor a planted bare repository take the place of the real one. Where
bubblewrap works, each command also runs in a box that shows it only the repository (`git_sandbox`).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import git_sandbox

TIMEOUT = 120

# the server's environment variables git may see: none of them holds a secret or names a program
KEPT = ("PATH", "LANG", "LANGUAGE", "TZ")

# single-name keys, pinned whatever the repository (or an include) says: last on the command line
PINNED = (
    ("core.hooksPath", "/dev/null"), ("core.fsmonitor", "false"), ("core.editor", ":"),
    ("sequence.editor", ":"), ("core.pager", "cat"), ("core.askPass", ""), ("core.sshCommand", ""),
    ("core.alternateRefsCommand", ""), ("diff.external", ""), ("interactive.diffFilter", ""),
    ("credential.helper", ""), ("gpg.program", ""), ("commit.gpgSign", "false"), ("tag.gpgSign", "false"),
    ("merge.verifySignatures", "false"), ("log.showSignature", "false"), ("uploadpack.packObjectsHook", ""),
    ("submodule.recurse", "false"), ("diff.ignoreSubmodules", "dirty"), ("status.submoduleSummary", "false"),
    ("fetch.recurseSubmodules", "false"), ("gc.auto", "0"), ("maintenance.auto", "false"),
    ("protocol.allow", "never"), ("safe.bareRepository", "explicit"),
    ("user.name", "bgagents"), ("user.email", "bgagents@localhost"),
)

# A config key holds a program when its last part ends with one of these (`filter.<x>.clean`,
# `diff.<x>.textconv`, `merge.<x>.driver`, `difftool.<x>.cmd`, `tar.<x>.command`, `gpg.<x>.program`,
# `credential.<url>.helper`, `sendemail.tocmd`, `remote.<x>.uploadpack`, `submodule.<x>.update` = `!cmd`, ...),
# or when its section is one whose every key may (`alias.*` = `!cmd`, `pager.<cmd>`).
PROGRAM_SUFFIXES = (
    "cmd", "command", "program", "hook", "helper", "driver", "editor", "pager", "clean", "smudge", "process",
    "textconv", "external", "filter", "askpass", "proxy", "tunnel", "fsmonitor", "hookspath", "smtpserver",
    "browser", "viewer", "httpd", "uploadpack", "receivepack", "vcs", "update",
)
PROGRAM_SECTIONS = frozenset({"alias", "pager"})
TOOL_SECTIONS = frozenset({"difftool", "mergetool", "browser", "man", "guitool"})  # their `path` is a program


class GitError(Exception):
    """A git command failed; its message is git's own."""


def program_key(key: str) -> bool:
    """Whether a config key (`section[.subsection].name`, as `git config --list` prints it) holds a program."""
    section, _, rest = key.partition(".")
    name = rest.rpartition(".")[2].lower()
    section = section.lower()
    if section in PROGRAM_SECTIONS:
        return True
    if section in TOOL_SECTIONS and name == "path":
        return True
    return name.endswith(PROGRAM_SUFFIXES)


@functools.cache
def _empty_home() -> str:
    home = tempfile.mkdtemp(prefix="bgagents-git-home-")  # 0700, and nothing is ever written in it
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


def environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The whole environment the server's git runs with (see point 3 above)."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in KEPT if name in source}
    env.update({name: value for name, value in source.items() if name.startswith("LC_")})
    env.setdefault("PATH", os.defpath)
    home = _empty_home()
    env.update({
        "HOME": home, "XDG_CONFIG_HOME": home, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_SYSTEM": "/dev/null", "GIT_ATTR_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "", "SSH_ASKPASS": "", "GIT_EDITOR": ":", "GIT_SEQUENCE_EDITOR": ":", "GIT_PAGER": "cat",
        "PAGER": "cat", "GIT_ALLOW_PROTOCOL": "none", "GIT_PROTOCOL_FROM_USER": "0", "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_OPTIONAL_LOCKS": "0",
    })
    return env


def _pinned_env(work_tree: Path) -> dict[str, str]:
    return {**environment(), "GIT_DIR": str(work_tree / ".git"), "GIT_WORK_TREE": str(work_tree)}


def _config_args(pairs: list[tuple[str, str]]) -> list[str]:
    return [arg for key, value in pairs for arg in ("-c", f"{key}={value}")]


def _invoke(work_tree: Path, args: list[str], pairs: list[tuple[str, str]],
            box: Sequence[Path] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs git; in the box of `git_sandbox` (with `box` writable) unless `box` is None (what runs nothing)."""
    # on git's command line the last value of a key wins: PINNED (core.hooksPath, core.fsmonitor, ...) comes last
    command = ["git", "--no-pager", *_config_args([*pairs, *PINNED]), *args]  # hooksPath, fsmonitor: PINNED
    if box is not None:
        command = git_sandbox.wrap(command, box, work_tree)
    return subprocess.run(command, cwd=work_tree, env=_pinned_env(work_tree), capture_output=True, text=True,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)


def repository_programs(work_tree: Path) -> list[tuple[str, str]]:
    """The repository's own keys that hold a program, each paired with the empty value that disables it
    (an empty filter, driver, helper or tool is one git does not run)."""
    listing = _invoke(work_tree, ["config", "--list", "--null", "--show-scope", "--includes"], []).stdout
    fields = listing.split("\0")
    pairs = zip(fields[::2], fields[1::2], strict=False)  # scope, "key\nvalue"
    keys = (entry.partition("\n")[0] for scope, entry in pairs if scope != "command")
    found = [key for key in dict.fromkeys(keys) if program_key(key)]
    # a filter marked required would fail every command once emptied: its files pass through unfiltered
    required = [(f"{key.rpartition('.')[0]}.required", "false") for key in found if key.lower().startswith("filter.")]
    return [*((key, "") for key in found), *dict.fromkeys(required)]


def common_dir(work_tree: Path) -> Path | None:
    """The git directory shared by the worktrees of the repository at `work_tree` (read: nothing runs)."""
    done = _invoke(work_tree, ["rev-parse", "--path-format=absolute", "--git-common-dir"], [])
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 and done.stdout.strip() else None


def run(work_tree: Path | str, *args: str, check: bool = True,
        writable: Sequence[Path | str] = ()) -> subprocess.CompletedProcess[str]:
    """`git ARGS` on the repository whose work tree is `work_tree` (its top: `.git` is there); in the box, git
    may write `work_tree`, its git directory (when `.git` is a file pointing to one) and `writable`."""
    top = Path(work_tree)
    box = [top, *map(Path, writable)]
    if (top / ".git").is_file():
        shared = common_dir(top)
        if shared is not None and (shared / "HEAD").is_file() and (shared / "objects").is_dir():
            box.append(shared)
    done = _invoke(top, list(args), repository_programs(top), box)
    if check and done.returncode != 0:
        raise GitError((done.stderr or done.stdout).strip() or f"git {args[0]} failed")
    return done


def top_of(path: Path) -> Path | None:
    """The work tree `path` is in, found as git finds it (the nearest directory holding `.git`)."""
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return None
