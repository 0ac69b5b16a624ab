"""`demo`: an offline, scripted model that really uses the built-in tools, so bgagents can be tried without a key.

It looks around the workspace, plans with todos, writes a note, reads it back and reports, pausing
between steps like a real model would. Everything it says is labelled as coming from the demo.
"""

from __future__ import annotations

import asyncio
import os
import re

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


def _todos(done: int) -> list[dict[str, str]]:
    items = ["Survey the workspace", "Write a note", "Report back"]
    return [
        {"content": item, "status": "completed" if i < done else "in_progress" if i == done else "pending"}
        for i, item in enumerate(items)
    ]


async def _demo(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    await asyncio.sleep(_pause())
    prompt, done = _since_prompt(messages)
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
    return ModelResponse(parts=[TextPart(
        f"{LABEL} Finished: {prompt!r}. I looked around the workspace"
        + (f" and wrote {note}." if "write" in tools else ".")
        + " Point bgagents at a real model (BGAGENTS_MODEL) for real work."
    )])


def demo_model() -> FunctionModel:
    return FunctionModel(_demo, model_name=DEMO_MODEL_NAME)
