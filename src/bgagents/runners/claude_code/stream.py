"""Claude Code's message stream read as progress and as a transcript, at no token cost.

Assistant messages become `ModelResponse`s (one per API message: the CLI sends a message per content
block), tool results become `ModelRequest`s, so the transcript is stored and shown exactly as a
native task's. Each entry keeps the CLI's own uuid in its metadata, which is where a fork at an
earlier message resumes the session. Todos come from `TodoWrite` (the whole list) or from
`TaskCreate` / `TaskUpdate` (one item at a time), whichever the CLI offers.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from claude_agent_sdk import (
    AssistantMessage,
    ResultMessage,
    StreamEvent,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.usage import RequestUsage

from ...core.progress import ProgressTracker

PROVIDER = "claude-code"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(c.get("text", "")) if isinstance(c, dict) else str(c) for c in content)
    return "" if content is None else json.dumps(content, default=str)


class StreamReader:
    """Feeds one turn's messages to the progress tracker and keeps the transcript (`messages`)."""

    def __init__(self, tracker: ProgressTracker, messages: list[ModelMessage], model: str) -> None:
        self.tracker = tracker
        self.messages = messages
        self.model = model
        self.last_activity = time.monotonic()
        self.open_tools: dict[str, str] = {}  # tool_use id -> tool name, until its result comes
        self._tool_inputs: dict[str, dict[str, Any]] = {}
        self._response: ModelResponse | None = None
        self._response_id: str | None = None
        self._usage: dict[str, RequestUsage] = {}
        self._todos: dict[str, dict[str, Any]] = {}
        self._current_id = ""
        self.result: ResultMessage | None = None

    def add_prompt(self, text: str) -> None:
        self.messages.append(ModelRequest(parts=[UserPromptPart(text)]))

    async def feed(self, message: Any) -> None:
        self.last_activity = time.monotonic()
        if isinstance(message, StreamEvent):
            await self._stream_event(message)
        elif isinstance(message, AssistantMessage) and message.parent_tool_use_id is None:
            await self._assistant(message)
        elif isinstance(message, UserMessage) and message.parent_tool_use_id is None:
            await self._user(message)
        elif isinstance(message, ResultMessage):
            await self.flush()
            self.result = message

    async def _stream_event(self, message: StreamEvent) -> None:
        """Live text, and each API message's exact token counts (the assistant messages carry partial ones)."""
        event = message.event
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            usage = msg.get("usage") or {}
            self._usage[str(msg.get("id"))] = RequestUsage(
                input_tokens=int(usage.get("input_tokens") or 0) + int(usage.get("cache_read_input_tokens") or 0)
                + int(usage.get("cache_creation_input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0))
            self._current_id = str(msg.get("id"))
        elif kind == "message_delta" and message.parent_tool_use_id is None:
            usage = event.get("usage") or {}
            current = self._usage.get(self._current_id)
            if current is not None and usage.get("output_tokens") is not None:
                current.output_tokens = int(usage["output_tokens"])
        if message.parent_tool_use_id is not None:
            return
        if kind == "content_block_start" and (event.get("content_block") or {}).get("type") == "text":
            await self.tracker.on_stream_event(PartStartEvent(index=int(event.get("index", 0)), part=TextPart("")))
        elif kind == "content_block_delta" and (event.get("delta") or {}).get("type") == "text_delta":
            delta = TextPartDelta(content_delta=str(event["delta"].get("text", "")))
            await self.tracker.on_stream_event(PartDeltaEvent(index=int(event.get("index", 0)), delta=delta))

    async def _assistant(self, message: AssistantMessage) -> None:
        if self._response is not None and message.message_id != self._response_id:
            await self.flush()
        if self._response is None:
            self._response = ModelResponse(parts=[], model_name=message.model, provider_name=PROVIDER,
                                           provider_response_id=message.message_id, metadata={})
            self._response_id = message.message_id
        assert self._response.metadata is not None
        if message.uuid:
            self._response.metadata["claude_uuid"] = message.uuid
        if message.usage and message.message_id not in self._usage:
            self._usage[str(message.message_id)] = RequestUsage(
                input_tokens=int(message.usage.get("input_tokens") or 0),
                output_tokens=int(message.usage.get("output_tokens") or 0))
        parts = list(self._response.parts)
        for block in message.content:
            if isinstance(block, TextBlock) and block.text:
                parts.append(TextPart(block.text))
            elif isinstance(block, ToolUseBlock):
                parts.append(ToolCallPart(block.name, block.input, tool_call_id=block.id))
                self.open_tools[block.id] = block.name
                self._tool_inputs[block.id] = block.input
                await self.tracker.on_tool_start(block.name, block.input)
        self._response.parts = parts

    async def flush(self) -> None:
        """Stores the finished assistant message with the progress it brings (requests, tokens, text)."""
        response, self._response = self._response, None
        if response is None:
            return
        usage = self._usage.pop(str(self._response_id), None)
        if usage is not None:
            response.usage = usage
        await self.tracker.on_response(self.messages, response)
        self.messages.append(response)

    async def _user(self, message: UserMessage) -> None:
        if not isinstance(message.content, list):
            return
        results = [b for b in message.content if isinstance(b, ToolResultBlock)]
        if not results:
            return
        await self.flush()
        parts: list[ToolReturnPart] = []
        for block in results:
            name = self.open_tools.pop(block.tool_use_id, "tool")
            content = _text(block.content)
            parts.append(ToolReturnPart(name, content, tool_call_id=block.tool_use_id))
            args = self._tool_inputs.pop(block.tool_use_id, {})
            if block.is_error:
                await self.tracker.on_tool_end(name, content[:500])
            else:
                await self._todo_change(name, args, content, message.tool_use_result)
        self.messages.append(ModelRequest(parts=list(parts), metadata={"claude_uuid": message.uuid}
                                          if message.uuid else None))

    async def _todo_change(self, name: str, args: dict[str, Any], content: str, structured: Any) -> None:
        if name == "TodoWrite" and isinstance(args.get("todos"), list):
            todos = [{"content": str(t.get("content", "")), "status": str(t.get("status", "pending"))}
                     for t in args["todos"] if isinstance(t, dict)]
            await self.tracker.on_todos(todos)
        elif name == "TaskCreate":
            found = None
            if isinstance(structured, dict) and isinstance(structured.get("task"), dict):
                found = structured["task"].get("id")
            if found is None and (m := re.search(r"#(\w+)", content)):
                found = m[1]
            key = str(found if found is not None else len(self._todos) + 1)
            self._todos[key] = {"content": str(args.get("subject", "")), "status": "pending"}
            await self.tracker.on_todos(list(self._todos.values()))
        elif name == "TaskUpdate" and str(args.get("taskId")) in self._todos:
            key = str(args["taskId"])
            if args.get("status") == "deleted":
                self._todos.pop(key)
            else:
                self._todos[key] = {**self._todos[key], **{k: str(args[k]) for k in ("status",) if k in args},
                                    **({"content": str(args["subject"])} if "subject" in args else {})}
            await self.tracker.on_todos(list(self._todos.values()))
