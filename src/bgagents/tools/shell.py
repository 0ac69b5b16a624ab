"""`bash`: runs a command in the workspace (in the sandbox when there is one), with a timeout.

No process it starts outlives the call: when the command ends, times out or is cancelled, its process
group and every process carrying its mark (see `processes`) are killed. In the sandbox bwrap is the
process 1 of the command's PID namespace, so everything in it dies with bwrap, also when the server dies
(`--die-with-parent`). Without a sandbox the command runs under a guard (see `guard`), a subreaper that
keeps every process the command started as its descendant, even one that left the process group and
dropped the mark, and kills them all at the end of the call or when the server dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path

from pydantic_ai import RunContext

from .context import ToolContext
from .private import person_umask
from .processes import MARK, end_run, new_run
from .sandbox import bash_environment

MAX_TIMEOUT = 600.0
GUARD = Path(__file__).with_name("guard.py")
GUARD_WAIT = 2.0  # seconds the guard gets to end the command's processes before its group is killed


def command_line(deps: ToolContext, command: str) -> list[str]:
    if deps.sandbox is not None:
        return deps.sandbox.argv(["bash", "-c", command])
    return [sys.executable, "-I", "-S", str(GUARD), str(os.getpid()), command]


def _kill_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def _end(proc: asyncio.subprocess.Process, run: str, sandboxed: bool) -> None:
    """Ends every process of the call. In the sandbox, killing the group ends all (bwrap is its process 1);
    without one, the guard ends the command's processes (it has already when the command returned), then
    the group and the processes carrying the mark are killed in case the guard could not."""
    if not sandboxed and proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), GUARD_WAIT)
    _kill_group(proc, signal.SIGKILL)
    if not sandboxed:
        await asyncio.to_thread(end_run, run)


async def bash(ctx: RunContext[ToolContext], command: str, timeout: float | None = None) -> str:
    """Run a shell command with bash in the workspace directory and return its exit code and output.

    Args:
        command: The command line to run (bash syntax; pipes and && work).
        timeout: Seconds before the command is stopped (default 120, at most 600).
    """
    deps = ctx.deps
    limit = min(max(timeout or deps.bash_timeout, 1.0), MAX_TIMEOUT)
    run = new_run()
    umask = person_umask()
    proc = await asyncio.create_subprocess_exec(
        *command_line(deps, command), cwd=deps.workspace, env={**bash_environment(os.environ), MARK: run},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True, umask=-1 if umask is None else umask,
    )
    chunks: list[bytes] = []

    async def collect() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            chunks.append(chunk)

    reader = asyncio.create_task(collect())
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout=limit)
        except TimeoutError:
            timed_out = True
            _kill_group(proc, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout=1.0)
        # what it left running in the background goes too; then the output is whole
        await _end(proc, run, deps.sandbox is not None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), timeout=5.0)
    except asyncio.CancelledError:
        await asyncio.shield(_end(proc, run, deps.sandbox is not None))
        raise
    finally:
        reader.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), timeout=1.0)
    output = b"".join(chunks).decode("utf-8", errors="replace")
    output = _cut(deps, output)
    if timed_out:
        return f"timed out after {limit:g} s; the command was stopped. Output so far:\n{output}"
    code = proc.returncode
    return output if code == 0 else f"exit code: {code}\n{output}"


def _cut(deps: ToolContext, output: str) -> str:
    limit = deps.max_output_chars
    if len(output) <= limit:
        return output
    deps.outputs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = deps.outputs_dir / f"{deps.task_id}-{uuid.uuid4().hex[:8]}.txt"
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
        f.write(output)  # the server's file, its user's alone: the task reads it with the read tool
    half = limit // 2
    return (f"{output[:half]}\n\n… [{len(output) - limit} characters cut; the full output is in {path} "
            f"— read it with the read tool] …\n\n{output[-half:]}")
