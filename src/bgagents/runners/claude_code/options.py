"""The `ClaudeAgentOptions` of a turn: the task's workspace, model, session, tools, prompt and budgets."""

from __future__ import annotations

from typing import Any

from claude_agent_sdk import ClaudeAgentOptions

from ...core.profiles import Profile
from ...core.runner import Services
from ...core.schema import Progress, Task

PREFIX = "claude-code:"
# bgagents tool names in a profile's `tools` -> the Claude Code tools that do the same
CLAUDE_TOOLS = {"bash": ["Bash"], "read": ["Read"], "write": ["Write"], "edit": ["Edit", "NotebookEdit"],
                "glob": ["Glob"], "grep": ["Grep"], "todowrite": ["TodoWrite", "TaskCreate", "TaskUpdate"],
                "todoread": ["TaskList", "TaskGet"]}
FULL = frozenset({"bash", "read", "write", "edit", "glob", "grep"})
# what a profile with every file and shell tool gets: Claude Code's own set, with its todo tools named,
# since the CLI leaves them out of its default set (names a CLI version lacks are ignored by it)
EVERYTHING = ["Agent", "Bash", "Edit", "Glob", "Grep", "NotebookEdit", "Read", "Write", "WebFetch", "WebSearch",
              "Skill", "ToolSearch", "TodoWrite", "TaskCreate", "TaskUpdate", "TaskList", "TaskGet"]


def claude_model(model: str) -> str | None:
    """`claude-code:sonnet` -> `sonnet`; `claude-code:default` (or nothing) -> the CLI's own default."""
    bare = model.removeprefix(PREFIX).strip()
    return None if bare in ("", "default") else bare


def claude_tools(profile: Profile) -> list[str]:
    """Claude Code's whole tool set for a profile with every file and shell tool, else the Claude Code
    tools matching the profile's list (e.g. a read-only profile gets Read, Glob, Grep)."""
    if FULL <= set(profile.tools):
        return list(EVERYTHING)
    return [name for tool in profile.tools for name in CLAUDE_TOOLS.get(tool, [])]


def build_options(services: Services, task: Task, profile: Profile, plan: dict[str, Any], recovering: bool,
                  baseline: Progress) -> ClaudeAgentOptions:
    options = ClaudeAgentOptions(cwd=str(services.workspace_for(task)), model=claude_model(task.model),
                                 include_partial_messages=True, permission_mode="default",
                                 tools=claude_tools(profile), max_turns=profile.max_turns)
    if recovering or (plan["resume"] and not plan["fork"]):
        options.resume = plan["session_id"]
    elif plan["fork"]:
        options.resume, options.fork_session, options.session_id = plan["resume"], True, plan["session_id"]
        options.resume_session_at = plan["at"]
    else:
        options.session_id = plan["session_id"]
    # the built-in profiles' prompts describe the native tools; a person's own profile prompt is kept
    append = "\n\n".join(p for p in (task.instructions, profile.prompt if profile.source != "builtin" else "") if p)
    if append:
        options.system_prompt = {"type": "preset", "preset": "claude_code", "append": append}
    fallbacks = [m for m in task.fallback_models if m.startswith(PREFIX) and claude_model(m)]
    if fallbacks:
        options.fallback_model = claude_model(fallbacks[0])
    if task.output_schema:
        options.output_format = {"type": "json_schema", "schema": task.output_schema}
    budget = task.limits.get("cost_usd")
    if budget is not None:
        options.max_budget_usd = max(0.0, budget - (baseline.cost_usd or 0.0))
    return options
