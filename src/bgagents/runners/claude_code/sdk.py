"""The one place that reaches into claude-agent-sdk's private parts: the CLI process behind a client.

A cancelled turn must end Claude Code at once (its own `disconnect` waits seconds for the CLI), and a
restarted server must find the CLI a dead one left running, so the runner needs the process. The SDK
has no public way to it: it sits at `client._transport._process` (an anyio `Process`). Passing our own
transport (`ClaudeSDKClient(transport=...)`, public) would mean building the CLI's command line, which
is private too. `tests/test_claude_code.py` fails naming the installed version when it is not one
of `CHECKED_WITH`, and checks that the process is found after `connect()` and ended by `close`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from claude_agent_sdk import ClaudeSDKClient

CHECKED_WITH = ("0.2.190",)  # claude-agent-sdk versions whose private parts this module was read against
INTERRUPT_WAIT = 0.2  # seconds the CLI gets to acknowledge an interrupt before its process is ended
TERMINATE_WAIT = 0.3  # seconds it gets to exit on SIGTERM before SIGKILL: a cancel takes well under a second


def cli_process(client: ClaudeSDKClient) -> Any | None:
    """The CLI process of a connected client (None before `connect` or after it ended)."""
    return getattr(getattr(client, "_transport", None), "_process", None)


def cli_pid(client: ClaudeSDKClient) -> int | None:
    pid = getattr(cli_process(client), "pid", None)
    return pid if isinstance(pid, int) else None


async def close(client: ClaudeSDKClient, pump: asyncio.Task[None] | None, graceful: bool) -> None:
    """After its result the CLI closes on its own; a turn stopped midway interrupts it, then ends its
    process at once (the SDK's own close would wait seconds for it)."""
    process = cli_process(client)
    if not graceful:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.interrupt(), INTERRUPT_WAIT)
        if process is not None and getattr(process, "returncode", 0) is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()  # the CLI ends the commands it runs
            try:
                await asyncio.wait_for(process.wait(), TERMINATE_WAIT)
            except (TimeoutError, Exception):
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
    if pump is not None:
        pump.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), 5)
