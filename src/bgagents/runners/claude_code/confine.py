"""Claude Code runs under the same sandbox promise as native `bash` (see `tools.sandbox`), in two layers of
the task's own bwrap sandbox:

- The CLI itself: the system read-only, the workspace (or the task's worktree) writable, its own config
  folder (`~/.claude`: its sessions, which the server reads back, and its sign-in), a private /tmp and
  $HOME; no other home, no /run, no file of the server's, no other process. The network is on: it talks
  to the model. Its environment is what bash gets, plus `ANTHROPIC_*` and `CLAUDE_*` (and the cloud's
  credentials when it signs in through Bedrock or Vertex): never the API token, another provider's key
  or the Telegram token. Its file tools are kept to the workspace by the gate (`gate.py`).
- Each command of its Bash tool (through `CLAUDE_CODE_SHELL_PREFIX`): the task's bash sandbox again,
  inside the first, in a PID namespace of its own (the CLI, and the key in its environment, out of
  sight), without `~/.claude`, with the profile's network, and the CLI's own credentials unset. It
  shares the CLI's private /tmp, where the CLI learns the command's last working folder.

The SDK starts the CLI through a launcher script (`cli_path`, its public way to name the program), in
the server's `run/` folder, written per turn and removed after it; the scripts hold paths and variable
names, never a value. Where bwrap does not run, the launcher only leaves out what the CLI must not get.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from claude_agent_sdk import ClaudeAgentOptions

from ...tools.sandbox import Sandbox, bash_environment

CLI_PREFIXES = ("ANTHROPIC_", "CLAUDE_")
# signing in through a cloud: the flag, and the variables that cloud's credentials are in
CLOUDS = {"CLAUDE_CODE_USE_BEDROCK": ("AWS_",), "CLAUDE_CODE_USE_VERTEX": ("GOOGLE_", "CLOUD_ML_", "VERTEX_")}
NETWORK_TOOLS = ("WebFetch", "WebSearch")
HERE = "@PWD@"  # where the Bash prefix puts the command's working folder


def cli_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the CLI gets of the server's environment."""
    prefixes = list(CLI_PREFIXES)
    for flag, more in CLOUDS.items():
        if environ.get(flag, "").strip().lower() not in ("", "0", "false"):
            prefixes += more
    return {**bash_environment(environ), **{k: v for k, v in environ.items() if k.startswith(tuple(prefixes))}}


def config_dir(environ: Mapping[str, str]) -> Path:
    """Claude Code's config folder: `CLAUDE_CONFIG_DIR`, else `~/.claude` (where the SDK reads sessions)."""
    configured = environ.get("CLAUDE_CONFIG_DIR")
    home = environ.get("HOME") or str(Path.home())
    return Path(configured).expanduser() if configured else Path(home) / ".claude"


def cli_program(options: ClaudeAgentOptions) -> Path | None:
    """The CLI the SDK would run: `cli_path`, the one bundled in its wheel, else `claude` on PATH."""
    if options.cli_path is not None:
        return Path(options.cli_path)
    import claude_agent_sdk

    bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    if bundled.is_file():
        return bundled
    found = shutil.which("claude")
    return Path(found) if found else None


def confine(options: ClaudeAgentOptions, sandbox: Sandbox | None, folder: Path) -> None:
    """Points `options` at a launcher in `folder` that starts the CLI as the module says (in `sandbox`, the
    task's bash sandbox, when there is one)."""
    program = cli_program(options)
    if program is None:
        return  # the SDK says the CLI is missing
    environ = {**os.environ, **options.env}
    config = config_dir(environ)
    config.mkdir(mode=0o700, parents=True, exist_ok=True)
    options.env = {**options.env, "CLAUDE_CONFIG_DIR": str(config)}
    kept = cli_environment({**environ, **options.env})
    dropped = sorted(set(environ) - set(kept))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    launch = [str(program)]
    if sandbox is not None:
        if not sandbox.network and isinstance(options.tools, list):
            options.tools = [t for t in options.tools if t not in NETWORK_TOOLS]
        shell = folder / "shell"
        credentials = sorted(set(kept) - set(bash_environment(kept)))
        inner = dataclasses.replace(sandbox, shared_tmp=True, covered=(config.resolve(),))
        _script(shell, without(credentials, inner.argv(["bash", "-c"], cwd=HERE)), ' "$1"')
        options.env["CLAUDE_CODE_SHELL_PREFIX"] = str(shell)
        outer = dataclasses.replace(sandbox.with_network(True), server=sandbox.server.showing(config.resolve()))
        outer = outer.with_writable(config.resolve()).with_read_only(program.resolve(), shell)
        launch = outer.argv([str(program.resolve())])
    _script(folder / "launch", without(dropped, launch), ' "$@"')
    options.cli_path = str(folder / "launch")


def without(names: Iterable[str], argv: list[str]) -> list[str]:
    """`argv` run with `names` left out of its environment, bwrap's own included (a sandboxed process can
    read the environment of the sandbox's process 1, bwrap)."""
    return ["env", *[arg for name in names for arg in ("-u", name)], *argv]


def _script(path: Path, argv: list[str], tail: str) -> None:
    words = " ".join('"$PWD"' if arg == HERE else shlex.quote(arg) for arg in argv)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w") as f:
        f.write(f"#!/bin/sh\nexec {words}{tail}\n")
