"""`bash`: runs a command in the workspace, with a timeout, killing its whole process group when stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid

from pydantic_ai import RunContext

from .context import ToolContext

MAX_TIMEOUT = 600.0
_SECRET_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_PASSWORD")


def _clean_env() -> dict[str, str]:
    """The environment without keys and tokens: a command must never see the runtime's secrets."""
    return {k: v for k, v in os.environ.items()
            if not k.upper().endswith(_SECRET_SUFFIXES) and "SECRET" not in k.upper()}


def _kill_group(proc: asyncio.subprocess.Process, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


async def bash(ctx: RunContext[ToolContext], command: str, timeout: float | None = None) -> str:
    """Run a shell command with bash in the workspace directory and return its exit code and output.

    Args:
        command: The command line to run (bash syntax; pipes and && work).
        timeout: Seconds before the command is stopped (default 120, at most 600).
    """
    deps = ctx.deps
    limit = min(max(timeout or deps.bash_timeout, 1.0), MAX_TIMEOUT)
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", command, cwd=deps.workspace, env=_clean_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )
    chunks: list[bytes] = []

    async def collect() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            chunks.append(chunk)

    reader = asyncio.create_task(collect())
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.shield(reader), timeout=limit)
        await proc.wait()
    except TimeoutError:
        timed_out = True
        _kill_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=1.0)
        except TimeoutError:
            _kill_group(proc, signal.SIGKILL)
            await proc.wait()
        reader.cancel()
    except asyncio.CancelledError:
        _kill_group(proc, signal.SIGKILL)
        reader.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.wait(), timeout=1.0)
        raise
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
