"""Tool permissions of a profile: `allow`, `ask` or `deny` per tool, with patterns for `bash` commands.

    permissions = { bash = { "git *" = "allow", "*" = "ask" }, write = "deny" }

A pattern table is read in order and the first match wins; a call no pattern matches is asked about.
A pattern ending in ` *` also matches the bare command (`git *` matches `git`).
Tools not named are allowed (`"*"` names every other tool).

For `bash`, patterns are matched against each simple command of the command line (see
`bash_commands`): the call is allowed only when every one is, denied when any one is, and asked
about when it cannot be parsed.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any, Literal

from ..errors import InvalidInput
from .bash_commands import Part, Unparsable, parts

Decision = Literal["allow", "ask", "deny"]
DECISIONS = ("allow", "ask", "deny")


def validate(permissions: dict[str, Any], where: str) -> None:
    for tool, rule in permissions.items():
        rules = rule.values() if isinstance(rule, dict) else [rule]
        for value in rules:
            if value not in DECISIONS:
                raise InvalidInput(f"{where}: permission for '{tool}' must be allow, ask or deny, not {value!r}")


def subject(tool: str, args: dict[str, Any]) -> str:
    """What a pattern is matched against: the command for bash, the path for file tools."""
    for key in ("command", "path", "pattern"):
        if isinstance(args.get(key), str):
            return str(args[key])
    return json.dumps(args, sort_keys=True)


def matches(text: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(text, pattern) or (pattern.endswith(" *") and text == pattern[:-2])


def first_match(table: dict[str, Decision], text: str) -> tuple[Decision, str | None]:
    for pattern, decision in table.items():
        if matches(text, pattern):
            return decision, pattern
    return "ask", None


def decide(permissions: dict[str, Any], tool: str, args: dict[str, Any],
           workspace: Path) -> tuple[Decision, str]:
    """The decision for one call and why, in words a person reading an approval request understands.

    `workspace` is where the call runs: bash redirections are judged inside or outside it."""
    rule = permissions.get(tool, permissions.get("*", "allow"))
    if isinstance(rule, str):
        return rule, f"the agent's permission for {tool} is '{rule}'"  # type: ignore[return-value]
    text = subject(tool, args)
    if tool == "bash" and isinstance(args.get("command"), str):
        return _decide_bash(rule, text, workspace)
    decision, pattern = first_match(rule, text)
    if pattern is None:
        return "ask", f"'{text}' matches none of the agent's {tool} patterns"
    return decision, f"'{text}' matches the {tool} pattern '{pattern}' ({decision})"


def _decide_bash(table: dict[str, Decision], command: str, workspace: Path) -> tuple[Decision, str]:
    try:
        found = parts(command, workspace)
    except Unparsable as exc:
        decision, pattern = first_match(table, command)
        if decision == "deny":
            return "deny", f"'{command}' matches the bash pattern '{pattern}' (deny)"
        return "ask", f"the command could not be read as bash ({exc}), so a person decides"
    asked: str | None = None
    allowed: list[str] = []
    for part in found:
        decision, why = _decide_part(table, part)
        if decision == "deny":
            return "deny", why
        if decision == "ask" and asked is None:
            asked = why
        elif decision == "allow" and not part.deny_only:
            allowed.append(why)
    if asked is not None:
        return "ask", asked
    if not allowed:
        return "allow", "the command runs nothing"
    return "allow", "; ".join(dict.fromkeys(allowed))


def _decide_part(table: dict[str, Decision], part: Part) -> tuple[Decision, str]:
    decision, pattern = first_match(table, part.text)
    if part.deny_only:
        if decision == "deny":
            return "deny", f"'{part.text}' (run by another command) matches the bash pattern '{pattern}' (deny)"
        return "allow", ""
    if pattern is None:
        return "ask", f"'{part.text}' matches none of the agent's bash patterns"
    if decision == "allow" and part.ask_at_most:
        return "ask", f"'{part.text}' needs a person: {part.ask_at_most}"
    return decision, f"'{part.text}' matches the bash pattern '{pattern}' ({decision})"
