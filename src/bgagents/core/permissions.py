"""Tool permissions of a profile: `allow`, `ask` or `deny` per tool, with patterns for `bash` commands.

    permissions = { bash = { "git *" = "allow", "*" = "ask" }, write = "deny" }

A pattern table is read in order and the first match wins; a call no pattern matches is asked about.
Tools not named are allowed (`"*"` names every other tool).
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any, Literal

from ..errors import InvalidInput

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


def decide(permissions: dict[str, Any], tool: str, args: dict[str, Any]) -> tuple[Decision, str]:
    """The decision for one call and why, in words a person reading an approval request understands."""
    rule = permissions.get(tool, permissions.get("*", "allow"))
    if isinstance(rule, str):
        return rule, f"the agent's permission for {tool} is '{rule}'"  # type: ignore[return-value]
    text = subject(tool, args)
    for pattern, decision in rule.items():
        if fnmatch.fnmatchcase(text, pattern):
            return decision, f"'{text}' matches the {tool} pattern '{pattern}' ({decision})"
    return "ask", f"'{text}' matches none of the agent's {tool} patterns"
