"""A fake Anthropic Messages endpoint, so the real Claude Code CLI runs offline in tests.

`POST /v1/messages` answers with a streamed message (SSE: message_start, content_block_start /
delta / stop for text and tool_use blocks, message_delta with usage, message_stop), or a plain JSON
message when `stream` is false. What it answers is scripted per test: `script(body) -> Reply`. Every
request body is kept (`requests`), and `main_requests()` keeps those of the agent itself (the ones
that offer tools), so a test can check what the CLI sent. Anything else the CLI calls at start
(count_tokens and the like) gets a harmless answer.

`python -m tests.fake_anthropic --port 8765` runs it on its own with a small scripted agent (it plans
two todos, lists the workspace, writes a note), to try the Claude Code runner by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .background_server import BackgroundServer


@dataclass
class Reply:
    """One answer: text and/or tool uses; `delay` pauses mid-stream, `hang` streams nothing more until closed,
    `cut` ends the stream mid-text (no `message_delta`, no `message_stop`)."""

    text: str | None = None
    tool_uses: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delay: float = 0.0
    hang: bool = False
    cut: bool = False
    input_tokens: int = 100
    output_tokens: int = 20


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(str(b.get("text", "")) for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def user_texts(body: dict[str, Any]) -> list[str]:
    """The texts of the user turns of a request (tool results left out)."""
    return [text_of(m) for m in body.get("messages", []) if m.get("role") == "user" and text_of(m).strip()]


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for m in body.get("messages", []) if m.get("role") == "user" and isinstance(m.get("content"), list)
            for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


@dataclass
class Steps:
    """Answers with the next tool use of `steps` for each tool result the conversation has so far, then `answer`.

    A conversation that goes on (a resume, a steer) keeps counting, so `steps` can script several turns."""

    steps: list[Reply] = field(default_factory=list)
    answer: str = "all done"

    def __call__(self, body: dict[str, Any]) -> Reply:
        done = len(tool_results(body))
        if done < len(self.steps):
            return self.steps[done]
        return Reply(text=self.answer)


def tool(name: str, **args: Any) -> Reply:
    return Reply(tool_uses=[(name, args)])


class FakeAnthropic:
    def __init__(self, script: Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.script: Callable[[dict[str, Any]], Reply] = script or Steps()
        self.requests: list[dict[str, Any]] = []
        self.finished = 0  # streamed answers sent to the end
        self._ids = 0
        self._server: BackgroundServer | None = None
        self.port = 0
        self.app = Starlette(routes=[
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
            Route("/{path:path}", self.other, methods=["GET", "POST", "HEAD"]),
        ])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def main_requests(self) -> list[dict[str, Any]]:
        """The agent's own requests: those that offer it tools."""
        return [r for r in self.requests if r.get("tools")]

    def env(self) -> dict[str, str]:
        """What points the Claude Code CLI at this endpoint, with no other traffic."""
        return {"ANTHROPIC_BASE_URL": self.url, "ANTHROPIC_API_KEY": "test-key",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}

    # -- routes ------------------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        reply = self.script(body) if body.get("tools") else Reply(text="ok")
        self._ids += 1
        message_id = f"msg_fake_{self._ids}"
        if not body.get("stream"):
            if reply.delay:
                await asyncio.sleep(reply.delay)
            self.finished += 1
            return JSONResponse(self._message(body, reply, message_id))
        return StreamingResponse(self._stream(request, body, reply, message_id), media_type="text/event-stream")

    async def count_tokens(self, request: Request) -> Response:
        return JSONResponse({"input_tokens": 100})

    async def other(self, request: Request) -> Response:
        return JSONResponse({})

    # -- answers -----------------------------------------------------------------------------------

    def _blocks(self, reply: Reply, message_id: str) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if reply.text:
            blocks.append({"type": "text", "text": reply.text})
        for i, (name, args) in enumerate(reply.tool_uses):
            blocks.append({"type": "tool_use", "id": f"toolu_{message_id}_{i}", "name": name, "input": args})
        return blocks

    def _message(self, body: dict[str, Any], reply: Reply, message_id: str) -> dict[str, Any]:
        return {"id": message_id, "type": "message", "role": "assistant", "model": body.get("model", "fake"),
                "content": self._blocks(reply, message_id),
                "stop_reason": "tool_use" if reply.tool_uses else "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens}}

    async def _stream(self, request: Request, body: dict[str, Any], reply: Reply,
                      message_id: str) -> AsyncIterator[bytes]:
        def event(kind: str, **data: Any) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

        start = {**self._message(body, reply, message_id), "content": [], "stop_reason": None,
                 "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1}}
        yield event("message_start", message=start)
        if reply.hang:
            while not await request.is_disconnected():
                await asyncio.sleep(0.05)
            return
        for index, block in enumerate(self._blocks(reply, message_id)):
            if block["type"] == "text":
                yield event("content_block_start", index=index, content_block={"type": "text", "text": ""})
                words = block["text"].split(" ")
                half = len(words) // 2 or 1
                yield event("content_block_delta", index=index,
                            delta={"type": "text_delta", "text": " ".join(words[:half])})
                if reply.cut:
                    return
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                if words[half:]:
                    yield event("content_block_delta", index=index,
                                delta={"type": "text_delta", "text": " " + " ".join(words[half:])})
            else:
                yield event("content_block_start", index=index,
                            content_block={"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}})
                if reply.delay and not reply.text:
                    await asyncio.sleep(reply.delay)
                yield event("content_block_delta", index=index,
                            delta={"type": "input_json_delta", "partial_json": json.dumps(block["input"])})
            yield event("content_block_stop", index=index)
        yield event("message_delta", delta={"stop_reason": "tool_use" if reply.tool_uses else "end_turn",
                                            "stop_sequence": None},
                    usage={"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens})
        yield event("message_stop")
        self.finished += 1

    # -- running -----------------------------------------------------------------------------------

    def __enter__(self) -> FakeAnthropic:
        self._server = BackgroundServer(self.app, "fake Anthropic server")
        self.port = self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()


def demo_script() -> Steps:
    return Steps([
        tool("TaskCreate", subject="Look at the workspace", description="List what is there"),
        tool("TaskCreate", subject="Write a note", description="Say what was found"),
        tool("TaskUpdate", taskId="1", status="in_progress"),
        Reply(tool_uses=[("Bash", {"command": "ls -la", "description": "List the workspace"})], delay=1.0),
        tool("TaskUpdate", taskId="1", status="completed"),
        tool("TaskUpdate", taskId="2", status="in_progress"),
        Reply(tool_uses=[("Write", {"file_path": "note.md", "content": "The workspace was looked at.\n"})],
              delay=1.0),
        tool("TaskUpdate", taskId="2", status="completed"),
    ], answer="I listed the workspace and wrote note.md.")


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Anthropic Messages endpoint with a scripted agent")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    fake = FakeAnthropic(demo_script())
    config = uvicorn.Config(fake.app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")
    print(f"export ANTHROPIC_BASE_URL=http://127.0.0.1:{args.port} ANTHROPIC_API_KEY=test-key "
          "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", flush=True)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
