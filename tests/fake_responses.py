"""The OpenAI Responses API side of `tests/fake_openai.py` (what `openai:` models speak).

A request's `input` items are read as Chat Completions messages (so the fake's behaviours, chosen by model
name, apply unchanged), and a reply is written back as Responses events: `response.created`, an output
item per text or function call with its deltas, and `response.completed` at the end, which a cut stream
never sends. Only what pydantic-ai's Responses model reads is filled in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any


def as_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input items as Chat Completions messages: text turns, and tool results as `tool` messages."""
    items = body.get("input", [])
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    messages: list[dict[str, Any]] = []
    for item in items:
        if item.get("type") == "function_call_output":
            messages.append({"role": "tool", "content": str(item.get("output", ""))})
        elif item.get("type") == "function_call":
            messages.append({"role": "assistant", "content": None, "tool_calls": [item]})
        elif "role" in item:
            messages.append({"role": item["role"], "content": item.get("content")})
    return messages


def usage(text: str | None, calls: int) -> dict[str, Any]:
    out = len((text or "").split()) + 5 * calls
    return {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 10 + out}


def response(model: str, status: str, output: list[dict[str, Any]], use: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": "resp_fake", "object": "response", "created_at": int(time.time()), "status": status,
            "model": model, "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": use}


def message_item(text: str, status: str) -> dict[str, Any]:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"id": "msg_fake", "type": "message", "role": "assistant", "status": status, "content": content}


def call_item(index: int, call: dict[str, Any], arguments: str, status: str) -> dict[str, Any]:
    return {"id": f"fc_fake_{index}", "type": "function_call", "call_id": call["id"], "name": call["name"],
            "arguments": arguments, "status": status}


def events(model: str, text: str | None, calls: list[dict[str, Any]], cut: bool) -> Iterator[dict[str, Any]]:
    """The events of one streamed answer; with `cut`, the stream stops mid-text, before `response.completed`."""
    yield {"type": "response.created", "response": response(model, "in_progress", [], None)}
    yield {"type": "response.in_progress", "response": response(model, "in_progress", [], None)}
    output: list[dict[str, Any]] = []
    if text:
        yield {"type": "response.output_item.added", "output_index": 0, "item": message_item("", "in_progress")}
        yield {"type": "response.content_part.added", "item_id": "msg_fake", "output_index": 0, "content_index": 0,
               "part": {"type": "output_text", "text": "", "annotations": []}}
        words = text.split(" ")
        for i, word in enumerate(words):
            if cut and i == len(words) // 2:
                return
            yield {"type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0,
                   "content_index": 0, "delta": word + (" " if i < len(words) - 1 else ""), "logprobs": []}
        yield {"type": "response.output_text.done", "item_id": "msg_fake", "output_index": 0, "content_index": 0,
               "text": text, "logprobs": []}
        yield {"type": "response.output_item.done", "output_index": 0, "item": message_item(text, "completed")}
        output.append(message_item(text, "completed"))
    for i, call in enumerate(calls):
        index = len(output)
        arguments = json.dumps(call["arguments"])
        yield {"type": "response.output_item.added", "output_index": index,
               "item": call_item(i, call, "", "in_progress")}
        yield {"type": "response.function_call_arguments.delta", "item_id": f"fc_fake_{i}", "output_index": index,
               "delta": arguments}
        yield {"type": "response.function_call_arguments.done", "item_id": f"fc_fake_{i}", "output_index": index,
               "arguments": arguments, "name": call["name"]}
        yield {"type": "response.output_item.done", "output_index": index,
               "item": call_item(i, call, arguments, "completed")}
        output.append(call_item(i, call, arguments, "completed"))
    yield {"type": "response.completed", "response": response(model, "completed", output, usage(text, len(calls)))}


def sse(events: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for number, event in enumerate(events):
        yield f"event: {event['type']}\ndata: {json.dumps({**event, 'sequence_number': number})}\n\n".encode()
