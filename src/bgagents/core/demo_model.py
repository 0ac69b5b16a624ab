"""`demo`: an offline, scripted model that really uses the built-in tools, so bgagents can be tried without a key.

It looks around the workspace, plans with todos, writes a note, reads it back and reports, pausing
between steps like a real model would. Everything it says is labelled as coming from the demo.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import xml.etree.ElementTree as ET
from typing import Any

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

DEMO_MODEL_NAME = "demo"
LABEL = "[demo model]"


def _pause() -> float:
    return float(os.environ.get("BGAGENTS_DEMO_PAUSE", "0.8"))


def _since_prompt(messages: list[ModelMessage]) -> tuple[str, list[str]]:
    """The latest user prompt and the tools whose results came after it, in order."""
    prompt, done = "", list[str]()
    for message in messages:
        if not isinstance(message, ModelRequest):
            continue
        for part in message.parts:
            if isinstance(part, UserPromptPart):
                prompt, done = part.content if isinstance(part.content, str) else str(part.content), []
            elif isinstance(part, ToolReturnPart):
                done.append(part.tool_name)
    return prompt, done


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:4]
    return "-".join(words) or "note"


def _requested_name(instructions: str) -> str | None:
    """The name a person asked for (`/bg` with a name: 'named "do-it"' in the event's instructions)."""
    found = re.search(r'named ("(?:[^"\\]|\\.)*")', instructions)
    return str(json.loads(found[1])) if found else None


def _todos(done: int) -> list[dict[str, str]]:
    items = ["Survey the workspace", "Write a note", "Report back"]
    return [
        {"content": item, "status": "completed" if i < done else "in_progress" if i == done else "pending"}
        for i, item in enumerate(items)
    ]


LONG_WORK = re.compile(r"\b(research|investigate|analy[sz]e|survey|write|draft|plan|build|review|background)\b", re.I)


def _event(prompt: str) -> ET.Element | None:
    """The conversation event of a prompt (SPEC 4.2), if it is one."""
    if not prompt.lstrip().startswith("<event"):
        return None
    try:
        return ET.fromstring(prompt)
    except ET.ParseError:
        return None


def _answer(event: ET.Element) -> dict[str, Any]:
    """The main agent's structured answer to one conversation event."""
    kind, text = event.get("type"), (event.findtext("text") or "").strip()
    if kind == "button-click":
        return _send(f"You chose {event.findtext('button')!r}.")
    if kind == "background-agent-result":
        result = event.find("result")
        if result is None or result.get("action") == "silent":
            return {"action": "silent", "action_reason": "the background agent had nothing to report"}
        origin = event.find("original-event")
        name = origin.get("name") if origin is not None else "a background agent"
        text = (result.findtext("text") or "[No output]").removeprefix(f"{LABEL} ")
        files = [f.get("path") or "" for f in result.iter("file")]
        return _send(f"Background agent {name!r} reports: {text}", files=files)
    if kind == "schedule-trigger":
        schedule = event.find("schedule")
        name = schedule.get("name") if schedule is not None else "a schedule"
        late = schedule.get("missed-by") if schedule is not None else None
        return _send(f"Scheduled ({name}{f', {late} late' if late else ''}): {text}")
    if kind == "background-agent-progress":
        return {"action": "silent", "action_reason": "progress changes nothing for the person"}
    instructions = event.findtext("instructions") or ""
    if LONG_WORK.search(text) or "background agent" in instructions:
        return _send(f"That takes a while, so a background agent is on it: {text!r}. Its result comes here "
                     "when it is done; try /sessions or /peek meanwhile.",
                     background_agents=[{"name": _requested_name(instructions) or _slug(text), "prompt": text}])
    if text.endswith("?"):
        return _send("Only you can decide that. Pick one (type its number):", buttons=["Yes", "No", "Later"])
    return _send(f"You said {text!r}. I answer quick things myself; ask me to research, write or plan "
                 "something to see a background agent at work, or ask me a question.")


def _send(message: str, **kw: Any) -> dict[str, Any]:
    return {"action": "send", "action_reason": "demo", "message": f"{LABEL} {message}", **kw}


def _output(info: AgentInfo, args: dict[str, Any]) -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, args)])


def _progress(messages: list[ModelMessage]) -> str:
    calls = [p.tool_name for m in messages if isinstance(m, ModelResponse) for p in m.parts
             if isinstance(p, ToolCallPart)]
    last = f"; the last was {calls[-1]}" if calls else ""
    return f"{LABEL} {len(calls)} tool calls so far{last}; the rest of the plan is still to do."


async def _demo(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    await asyncio.sleep(_pause())
    prompt, done = _since_prompt(messages)
    event = _event(prompt)
    if event is not None:
        if event.get("type") in ("peek", "health-check"):
            report = _progress(messages)
            if info.output_tools:
                return _output(info, {"finished": False, "progress": report})
            return ModelResponse(parts=[TextPart(report)])
        if event.get("session") == "main" and info.output_tools:
            return _output(info, _answer(event))
        prompt = event.findtext("text") or prompt
    tools = {t.name for t in info.function_tools}
    note = f"demo-notes/{_slug(prompt)}.md"
    script: list[tuple[str, str, dict[str, object]]] = [
        ("todowrite", "Planning the work.", {"todos": _todos(0)}),
        ("bash", "Looking around the workspace.", {"command": "ls -la && echo && uname -sr"}),
        ("glob", "Looking around the workspace.", {"pattern": "*"}),
        ("todowrite", "The survey is done.", {"todos": _todos(1)}),
        ("write", "Writing a note.", {
            "path": note,
            "content": f"# Demo note\n\nTask: {prompt}\n\nWritten by the bgagents {LABEL}.\n",
        }),
        ("read", "Checking the note.", {"path": note}),
        ("todowrite", "Almost done.", {"todos": _todos(3)}),
    ]
    position = 0
    for name in done:  # replay what was done to find where the script stands
        while position < len(script) and script[position][0] != name:
            position += 1
        position += 1
    for tool, text, args in script[position:]:
        if tool not in tools or (tool == "glob" and "bash" in tools) or (tool == "read" and "write" not in tools):
            continue
        return ModelResponse(parts=[TextPart(f"{LABEL} {text}"), ToolCallPart(tool, args)])
    report = (f"{LABEL} Finished: {prompt!r}. I looked around the workspace"
              + (f" and wrote {note}." if "write" in tools else ".")
              + " Point bgagents at a real model (BGAGENTS_MODEL) for real work.")
    if info.output_tools:  # a background agent of a conversation answers in the structured form
        return _output(info, _send(report.removeprefix(f"{LABEL} "), files=[note] if "write" in tools else []))
    return ModelResponse(parts=[TextPart(report)])


def demo_model() -> FunctionModel:
    return FunctionModel(_demo, model_name=DEMO_MODEL_NAME)
