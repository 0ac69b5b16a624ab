"""Every tool call of Claude Code passes here first: the loop breaker, the `tool_calls` budget and the
profile's permissions, and Claude Code's own permission requests become bgagents approvals.

A `PreToolUse` hook sees every call. A file tool's path must lead inside the task's workspace and not to
one of the server's files (as for the native file tools), and with the network off the web tools are
refused; then the profile's `allow` lets it run, `deny` refuses it, `ask`
hands it back to Claude Code as a permission request, which arrives at `can_use_tool` — as do the
requests Claude Code raises itself. Each becomes an approval: the task is `waiting` until a person
decides from any interface, or `approval_timeout` passes (denied).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

from claude_agent_sdk import PermissionResultAllow, PermissionResultDeny, ToolPermissionContext

from ...core import task_log
from ...core.durable import LoopBreaker, TurnStopped
from ...core.permissions import decide
from ...core.runner import Services
from ...core.schema import Approval, Task
from ...tools.workspace import WorkspaceError, resolve_path

# Claude Code's tool names -> the bgagents names profiles use in `permissions` and `tools`
TOOL_NAMES = {"Bash": "bash", "Read": "read", "Write": "write", "Edit": "edit", "MultiEdit": "edit",
              "NotebookEdit": "edit", "Glob": "glob", "Grep": "grep", "TodoWrite": "todowrite",
              "TaskCreate": "todowrite", "TaskUpdate": "todowrite", "TaskList": "todoread", "TaskGet": "todoread"}
# Claude Code's file tools -> the argument naming the file or folder they work on
PATH_ARGS = {"Read": "file_path", "Write": "file_path", "Edit": "file_path", "MultiEdit": "file_path",
             "NotebookEdit": "notebook_path", "Glob": "path", "Grep": "path", "LS": "path"}
NETWORK_TOOLS = ("WebFetch", "WebSearch")
DECIDED = ("task.approved", "task.denied")
POLL = 1.0  # seconds between reads of a pending approval (a decision made in another process)


def permission_args(tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Claude Code's arguments in the shape profile patterns match (`path` for file tools)."""
    if "file_path" in args and "path" not in args:
        return {"path": args["file_path"], **{k: v for k, v in args.items() if k != "file_path"}}
    return args


class ToolGate:
    def __init__(self, services: Services, task: Task, turn: int, permissions: dict[str, Any],
                 breaker: LoopBreaker, max_tool_calls: float | None, network: bool = True) -> None:
        self.services = services
        self.network = network
        self.task = task
        self.workflow = f"{task.id}.{turn}"
        self.permissions = permissions
        self.breaker = breaker
        self.max_tool_calls = max_tool_calls
        self.stopped: TurnStopped | None = None  # set when a call must end the turn
        self.waiting = 0  # approvals being waited for (a waiting turn is never stale)
        self._why: dict[str, str] = {}

    async def pre_tool_use(self, data: Any, tool_use_id: str | None, context: Any) -> dict[str, Any]:
        tool = str(data.get("tool_name", ""))
        args = data.get("tool_input") or {}
        try:
            self.breaker.check(tool, args)
            if self.max_tool_calls is not None and self.breaker.total > self.max_tool_calls:
                raise TurnStopped(f"budget crossed: tool_calls {self.breaker.total} > {self.max_tool_calls:g}",
                                  "failed", "budget")
        except TurnStopped as stop:
            self.stopped = self.stopped or stop
            return _decision("deny", stop.message)
        refused = self.out_of_bounds(tool, args)
        if refused is not None:
            return _decision("deny", refused)
        decision, why = decide(self.permissions, TOOL_NAMES.get(tool, tool), permission_args(tool, args),
                               self.services.workspace_for(self.task))
        if decision == "ask" and tool_use_id:
            self._why[tool_use_id] = why
        return _decision(decision, why)

    def out_of_bounds(self, tool: str, args: dict[str, Any]) -> str | None:
        """Why a call reaches what the task may not (a path outside its workspace, the network), or None."""
        if tool in NETWORK_TOOLS and not self.network:
            return f"{tool} needs the network, and this agent's network is off"
        path = args.get(PATH_ARGS.get(tool, ""))
        if not isinstance(path, str) or not path:
            return None
        try:
            resolve_path(self.services.workspace_for(self.task), path, server=self.services.server_files)
        except WorkspaceError as exc:
            return str(exc)
        return None

    async def can_use_tool(self, tool: str, args: dict[str, Any],
                           context: ToolPermissionContext) -> PermissionResultAllow | PermissionResultDeny:
        call_id = context.tool_use_id or hashlib.sha1(repr((tool, sorted(args.items()))).encode()).hexdigest()
        why = self._why.pop(call_id, None) or context.decision_reason or context.title \
            or f"Claude Code asks before running {tool}"
        approved, reason = await self.ask(call_id, tool, args, why)
        if approved:
            return PermissionResultAllow()
        return PermissionResultDeny(message=f"A person denied this call ({reason}). Do not retry it; find another "
                                            "way or report.")

    async def ask(self, call_id: str, tool: str, args: dict[str, Any], why: str) -> tuple[bool, str]:
        """Stores the approval (the task goes `waiting`), then waits for its decision or its timeout."""
        services, store = self.services, self.services.store
        approval_id = "ap_" + hashlib.sha1(f"{self.workflow}:{call_id}".encode()).hexdigest()[:10]
        approval = Approval(id=approval_id, task_id=self.task.id, tool=tool, args=args, reason=why,
                            status="pending", created_at=services.clock())
        timeout = services.limits.approval_timeout
        self.waiting += 1
        try:
            with services.bus.subscribe(lambda e: e.type in DECIDED and e.data.get("approval_id") == approval_id,
                                        task_id=self.task.id) as decided:
                stored = await store.insert_approval(approval, self.workflow)
                await services.publish(stored)
                if stored is not None:
                    task_log.waiting(self.task, tool, approval_id)
                deadline = time.monotonic() + timeout
                while True:
                    found = await store.approvals(approval_id=approval_id)
                    if found and found[0].status != "pending":
                        return found[0].status == "approved", found[0].decision_reason or found[0].status
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(decided.get(), timeout=min(POLL, remaining))
                    except TimeoutError:
                        pass
            expired = await store.decide_approval(approval_id, "deny", f"no answer within {timeout:g} s")
            if expired is not None:
                await services.publish(expired[0])
                return False, f"no answer within {timeout:g} s"
            found = await store.approvals(approval_id=approval_id)  # decided at the last moment
            return bool(found) and found[0].status == "approved", found[0].decision_reason or "" if found else ""
        finally:
            self.waiting -= 1


def _decision(decision: str, why: str) -> dict[str, Any]:
    return {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": decision,
                                   "permissionDecisionReason": why}}
