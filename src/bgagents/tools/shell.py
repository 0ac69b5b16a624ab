"""`bash`: runs a command in the workspace (in the sandbox when there is one), with a timeout.

No process it starts outlives the call: when the command ends, times out or is cancelled, its process
group and every process carrying its mark (see `processes`) are killed. When the server dies, bwrap
takes the sandbox down with it (`--die-with-parent`); without a sandbox, a guard shell that gets
SIGTERM when the server dies (PR_SET_PDEATHSIG, through util-linux `setpriv`) kills the group, and
what escaped it is ended when the server starts again (`processes.end_orphans`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import uuid

from pydantic_ai import RunContext

from .context import ToolContext
from .processes import MARK, end_run, new_run
from .sandbox import bash_environment

MAX_TIMEOUT = 600.0
# Without a sandbox: runs the command as a child and, on SIGTERM (the server died), kills its whole group.
GUARD = 'trap "kill -KILL 0" TERM; bash -c "$1" & wait $!'


def command_line(deps: ToolContext, command: str) -> list[str]:
    if deps.sandbox is not None:
        return deps.sandbox.argv(["bash", "-c", command])
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return ["bash", "-c", command]
    return [setpriv, "--pdeathsig", "TERM", "--", "bash", "-c", GUARD, "bash", command]


def _kill_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _end(proc: asyncio.subprocess.Process, run: str, sandboxed: bool) -> None:
    """Kills the command's process group; in the sandbox that ends all (bwrap is its process 1), else the
    processes that left the group are found by their mark (a scan of /proc, a few ms)."""
    _kill_group(proc, signal.SIGKILL)
    if not sandboxed:
        end_run(run)


async def bash(ctx: RunContext[ToolContext], command: str, timeout: float | None = None) -> str:
    """Run a shell command with bash in the workspace directory and return its exit code and output.

    Args:
        command: The command line to run (bash syntax; pipes and && work).
        timeout: Seconds before the command is stopped (default 120, at most 600).
    """
    deps = ctx.deps
    limit = min(max(timeout or deps.bash_timeout, 1.0), MAX_TIMEOUT)
    run = new_run()
    proc = await asyncio.create_subprocess_exec(
        *command_line(deps, command), cwd=deps.workspace, env={**bash_environment(os.environ), MARK: run},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
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
        await asyncio.to_thread(_end, proc, run, deps.sandbox is not None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader), timeout=5.0)
    except asyncio.CancelledError:
        await asyncio.shield(asyncio.to_thread(_end, proc, run, deps.sandbox is not None))
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
    deps.outputs_dir.mkdir(parents=True, exist_ok=True)
    path = deps.outputs_dir / f"{deps.task_id}-{uuid.uuid4().hex[:8]}.txt"
    path.write_text(output, encoding="utf-8")
    half = limit // 2
    return (f"{output[:half]}\n\n… [{len(output) - limit} characters cut; the full output is in {path} "
            f"— read it with the read tool] …\n\n{output[-half:]}")
