"""A fake OpenAI-compatible Chat Completions server, so tests drive real HTTP through pydantic-ai offline.

Behaviour is chosen by the requested model name, so a separate server process can be driven by model
strings alone:
- `echo`: answers "echo: <last user text>".
- `steps-N[-delay-MS]`: calls the `bash` tool N times (`echo TAG-step-K >> steps.log`, TAG from `tag=TAG`
  in the prompt), then answers "done after N steps";
  waits MS ms mid-answer so a request can be caught in flight.
- `run`: calls the `bash` tool once with what follows `run:` in the first user message as the command,
  then answers with what the tool returned.
- `slow-MS`: answers after MS ms. `hang`: never answers.
- `error-STATUS`: answers that status with an OpenAI-style error. `flaky-STATUS-K`: STATUS K times, then echo.
- `malformed`: a 200 whose body is not JSON. `context-too-long`: a 400 `context_length_exceeded`.
  Any other name: 404 model_not_found.
- `plan-N[-delay-MS]`: a planned run: for each of N items a `todowrite` (that item in progress) and a `bash`
  call, then a last `todowrite` (all done) and the answer "planned N items".
- `cut-K-MODE`: the first K requests to this model name fail mid-answer, then it answers like `echo`.
  MODE `nofinish`: the stream stops cleanly after part of the text, with no finish_reason and no [DONE];
  `drop`: the connection is dropped mid-stream; `nonjson`: a 200 whose body is not JSON (nor SSE).
- `POST /v1/responses` (the Responses API of `openai:` models) streams the same behaviours (text and tool
  calls; `cut-K-nofinish` stops before `response.completed`); errors, `malformed` and `hang` are not served there.
- A suffix `@NAME` (e.g. `plan-2@gpt-4o-mini`) reports NAME as the answering model, so genai-prices
  prices the answer; the behaviour is chosen by the part before `@`.

Every request is recorded with a signature (message count + hash of the last message) and whether it
completed, so a test can assert that no finished request was sent twice. `python -m tests.fake_openai
--port-file F` runs it as a process; `GET /_fake/requests` reads its records, `GET /_fake/stats` the
requests in flight now and the most seen at once (`POST /_fake/reset` starts counting again).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from . import fake_responses
from .background_server import BackgroundServer

ERRORS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "server_error"),
    503: ("server_error", "overloaded"),
}


@dataclass
class Record:
    model: str
    signature: str
    time: float
    stream: bool
    completed: bool = False
    status: int = 200
    closed: float | None = None  # when the client closed a request it had not finished (`hang`)


@dataclass
class Reply:
    text: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0
    malformed: bool = False
    hang: bool = False
    cut: str | None = None  # "nofinish" or "drop": the stream stops part-way
    error_code: str | None = None  # instead of the status's usual OpenAI error code


class DropConnection(Exception):
    """Raised inside a streamed body: uvicorn then drops the connection mid-stream."""


def signature(messages: list[dict[str, Any]]) -> str:
    """Which step of which conversation a request is: its first user text, length and last message."""
    first = next((json.dumps(m, sort_keys=True) for m in messages if m.get("role") == "user"), "")
    last = json.dumps(messages[-1] if messages else {}, sort_keys=True)
    digest = hashlib.sha1((first + "|" + last).encode()).hexdigest()[:12]
    return f"{len(messages)}:{digest}"


def _tag(messages: list[dict[str, Any]]) -> str:
    """`tag=NAME` in the first user message marks a conversation's bash side effects."""
    first = next((_text(m) for m in messages if m.get("role") == "user"), "")
    m = re.search(r"tag=(\w+)", first)
    return m[1] if m else "x"


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    return next((_text(m) for m in reversed(messages) if m.get("role") == "user"), "")


class FakeOpenAI:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.in_flight = 0  # requests being answered now, and the most seen at once
        self.max_in_flight = 0
        self._flaky: dict[str, int] = {}
        self._server: BackgroundServer | None = None
        self.port = 0
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self.completions, methods=["POST"]),
            Route("/v1/responses", self.responses, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/_fake/requests", self.requests, methods=["GET"]),
            Route("/_fake/reset", self.reset, methods=["POST"]),
            Route("/_fake/stats", self.stats, methods=["GET"]),
        ])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- behaviour ---------------------------------------------------------------------------------

    def decide(self, model: str, body: dict[str, Any]) -> Reply:
        messages = body.get("messages", [])
        model = model.split("@", 1)[0]
        if model == "echo":
            return Reply(text=f"echo: {_last_user_text(messages)}")
        if m := re.fullmatch(r"steps-(\d+)(?:-delay-(\d+))?", model):
            n, delay = int(m[1]), int(m[2] or 0) / 1000
            done = sum(1 for msg in messages if msg.get("role") == "tool")
            tools = [t["function"]["name"] for t in body.get("tools", [])]
            if done < n and "bash" in tools:
                return Reply(tool_calls=[{"id": f"call_{done + 1}", "name": "bash",
                                          "arguments": {"command": f"echo {_tag(messages)}-step-{done + 1}"
                                                        f" >> steps.log"}}], delay=delay)
            return Reply(text=f"done after {n} steps", delay=delay)
        if model == "run":
            first = next((_text(m) for m in messages if m.get("role") == "user"), "")
            results = [_text(m) for m in messages if m.get("role") == "tool"]
            if not results:
                command = first.split("run:", 1)[1].strip() if "run:" in first else "true"
                return Reply(tool_calls=[{"id": "call_1", "name": "bash", "arguments": {"command": command}}])
            return Reply(text=results[-1])
        if m := re.fullmatch(r"slow-(\d+)", model):
            return Reply(text="slow done", delay=int(m[1]) / 1000)
        if model == "hang":
            return Reply(hang=True)
        if m := re.fullmatch(r"error-(\d+)", model):
            return Reply(status=int(m[1]))
        if m := re.fullmatch(r"flaky-(\d+)-(\d+)", model):
            seen = self._flaky.get(model, 0)
            self._flaky[model] = seen + 1
            if seen < int(m[2]):
                return Reply(status=int(m[1]))
            return Reply(text=f"echo: {_last_user_text(messages)}")
        if model == "malformed":
            return Reply(malformed=True)
        if model == "context-too-long":
            return Reply(status=400, error_code="context_length_exceeded")
        if m := re.fullmatch(r"plan-(\d+)(?:-delay-(\d+))?", model):
            return self._plan(int(m[1]), int(m[2] or 0) / 1000, messages)
        if m := re.fullmatch(r"cut-(\d+)-(nofinish|drop|nonjson)", model):
            seen = self._flaky.get(model, 0)
            self._flaky[model] = seen + 1
            if seen < int(m[1]):
                if m[2] == "nonjson":
                    return Reply(malformed=True)
                return Reply(text=f"a partial answer to {_last_user_text(messages)} that goes on", cut=m[2])
            return Reply(text=f"echo: {_last_user_text(messages)}")
        return Reply(status=404)

    @staticmethod
    def _plan(n: int, delay: float, messages: list[dict[str, Any]]) -> Reply:
        def todos(in_progress: int) -> dict[str, Any]:
            return {"todos": [{"content": f"item {i}", "status": "completed" if i < in_progress
                               else "in_progress" if i == in_progress else "pending"} for i in range(1, n + 1)]}

        calls: list[tuple[str, dict[str, Any]]] = []
        for i in range(1, n + 1):
            calls += [("todowrite", todos(i)), ("bash", {"command": f"echo {_tag(messages)}-item-{i} >> steps.log"})]
        calls.append(("todowrite", todos(n + 1)))
        done = sum(1 for msg in messages if msg.get("role") == "tool")
        if done < len(calls):
            name, args = calls[done]
            return Reply(text=f"working on step {done + 1}", delay=delay,
                         tool_calls=[{"id": f"call_{done + 1}", "name": name, "arguments": args}])
        return Reply(text=f"planned {n} items", delay=delay)

    # -- routes ------------------------------------------------------------------------------------

    async def completions(self, request: Request) -> Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        streaming = False
        try:
            response = await self._answer(request)
            streaming = isinstance(response, StreamingResponse)
            return response
        finally:
            if not streaming:  # a stream is counted until its last chunk
                self.in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model", ""))
        answered_by = model.split("@", 1)[1] if "@" in model else model
        record = Record(model=model, signature=signature(body.get("messages", [])), time=time.time(),
                        stream=bool(body.get("stream")))
        self.records.append(record)
        reply = self.decide(model, body)
        record.status = reply.status
        if reply.hang:
            while not await request.is_disconnected():
                await asyncio.sleep(0.002)
            record.closed = time.time()
            return Response(status_code=499)
        if reply.status != 200:
            kind, code = ERRORS.get(reply.status, ("invalid_request_error", "model_not_found"))
            message = f"The model `{model}` does not exist" if reply.status == 404 else f"fake {reply.status}"
            if reply.error_code == "context_length_exceeded":
                code, message = reply.error_code, "This model's maximum context length is 8 tokens (fake)"
            record.completed = True
            return JSONResponse({"error": {"message": message, "type": kind, "code": code, "param": None}},
                                status_code=reply.status)
        if reply.malformed:
            record.completed = True
            return Response("this is {not json", media_type="application/json")
        if record.stream:
            return StreamingResponse(self._stream(answered_by, reply, record, body), media_type="text/event-stream")
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.cut:  # a whole answer cannot be cut without streaming; a half body is not JSON
            return Response('{"id": "chatcmpl-fake", "choices": [{"index": 0, "mess', media_type="application/json")
        record.completed = True
        return JSONResponse(self._completion(answered_by, reply))

    def _message(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])}}
                for c in reply.tool_calls
            ]
        return message

    def _usage(self, reply: Reply) -> dict[str, int]:
        out = len((reply.text or "").split()) + 5 * len(reply.tool_calls)
        return {"prompt_tokens": 10, "completion_tokens": out, "total_tokens": 10 + out}

    def _completion(self, model: str, reply: Reply) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": self._message(reply),
                         "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
            "usage": self._usage(reply),
        }

    async def _stream(self, model: str, reply: Reply, record: Record, body: dict[str, Any]) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
            data: dict[str, Any] = {
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model, "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage:
                data["usage"] = usage
            return f"data: {json.dumps(data)}\n\n".encode()

        try:
            async for data in self._chunks(reply, record, body, chunk):
                yield data
        finally:
            self.in_flight -= 1

    async def _chunks(self, reply: Reply, record: Record, body: dict[str, Any],
                      chunk: Any) -> AsyncIterator[bytes]:
        yield chunk({"role": "assistant", "content": ""})
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.text:
            words = reply.text.split(" ")
            for i, word in enumerate(words):
                if reply.cut and i == len(words) // 2:
                    if reply.cut == "drop":
                        raise DropConnection("the fake drops the connection mid-stream")
                    return  # "nofinish": the body ends here, without finish_reason or [DONE]
                yield chunk({"content": word + (" " if i < len(words) - 1 else "")})
        for i, call in enumerate(reply.tool_calls):
            yield chunk({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                         "function": {"name": call["name"], "arguments": ""}}]})
            yield chunk({"tool_calls": [{"index": i, "function": {"arguments": json.dumps(call["arguments"])}}]})
        yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
        if (body.get("stream_options") or {}).get("include_usage"):
            yield chunk({}, usage=self._usage(reply))
        yield b"data: [DONE]\n\n"
        record.completed = True

    async def responses(self, request: Request) -> Response:
        """The Responses API (`openai:` models): the same behaviours, streamed as Responses events."""
        body = await request.json()
        model = str(body.get("model", ""))
        messages = fake_responses.as_messages(body)
        record = Record(model=model, signature=signature(messages), time=time.time(), stream=bool(body.get("stream")))
        self.records.append(record)
        reply = self.decide(model, {"messages": messages, "tools": [{"function": t} for t in body.get("tools", [])]})
        record.status = reply.status
        if reply.status != 200 or reply.malformed or reply.hang or not record.stream:
            record.status = 501
            return JSONResponse({"error": {"message": "the fake's Responses API streams text and calls only",
                                           "type": "invalid_request_error", "code": None}}, status_code=501)
        answered_by = model.split("@", 1)[1] if "@" in model else model
        cut = reply.cut is not None

        async def stream() -> AsyncIterator[bytes]:
            for data in fake_responses.sse(fake_responses.events(answered_by, reply.text, reply.tool_calls, cut)):
                yield data
            record.completed = not cut

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "echo", "object": "model", "owned_by": "fake"}]})

    async def requests(self, request: Request) -> Response:
        return JSONResponse([asdict(r) for r in self.records])

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"requests": len(self.records), "in_flight": self.in_flight,
                             "max_in_flight": self.max_in_flight})

    async def reset(self, request: Request) -> Response:
        self.records.clear()
        self._flaky.clear()
        self.max_in_flight = self.in_flight
        return JSONResponse({"ok": True})

    # -- helpers for tests -------------------------------------------------------------------------

    def count(self, model: str | None = None) -> int:
        return sum(1 for r in self.records if model is None or r.model == model)

    def completed_twice(self, model: str | None = None) -> list[str]:
        """Signatures answered to completion more than once: a finished request sent again."""
        seen: dict[str, int] = {}
        for r in self.records:
            if r.completed and r.status == 200 and (model is None or r.model == model):
                seen[r.signature] = seen.get(r.signature, 0) + 1
        return [s for s, n in seen.items() if n > 1]

    # -- running -----------------------------------------------------------------------------------

    def _config(self, port: int) -> uvicorn.Config:
        return uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning",
                              timeout_graceful_shutdown=1, lifespan="off")

    def __enter__(self) -> FakeOpenAI:
        self._server = BackgroundServer(self.app, "fake OpenAI server")
        self.port = self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.stop()


def env_for(base_url: str) -> dict[str, str]:
    """Environment variables that point pydantic-ai's OpenAI providers at the fake."""
    return {"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "test-key"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server for tests")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    args = parser.parse_args()
    fake = FakeOpenAI()
    server = uvicorn.Server(fake._config(args.port))

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        if args.port_file:
            port = str(server.servers[0].sockets[0].getsockname()[1])
            await asyncio.to_thread(Path(args.port_file).write_text, port)
        await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
