"""Claude Code as a runner (`claude-code:MODEL`): the real Claude Code CLI, driven through
`claude-agent-sdk` (the `bgagents[claude]` extra, whose wheel bundles the CLI), in the task's
workspace, with bgagents' progress, transcript, approvals, budgets and durability around it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import UnknownModel
from .signin import signed_in, why_not

if TYPE_CHECKING:
    from ...core.runner import Services
    from ...core.schema import Task

INSTALL_HINT = "install the Claude Code runner with: pip install 'bgagents[claude]'"


class ClaudeCodeRunner:
    name = "claude-code"

    def check(self, model: str) -> None:
        if not model.startswith("claude-code:"):
            raise UnknownModel(f"model '{model}' is not a Claude Code model (claude-code:MODEL)")
        try:
            import claude_agent_sdk  # noqa: F401
        except ImportError:
            raise UnknownModel(f"model '{model}' cannot be used: claude-agent-sdk is missing; "
                               + INSTALL_HINT) from None
        home = Path.home()
        if signed_in(os.environ, home) is None:
            raise UnknownModel(f"model '{model}' cannot be used: {why_not(home)}")

    async def run_turn(self, services: Services, task: Task, turn: int, prompt: str) -> str:
        from .turn import run_turn

        return await run_turn(services, task, turn, prompt)


runner = ClaudeCodeRunner()
