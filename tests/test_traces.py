"""Traces: a span per turn, with pydantic-ai's model-request and tool-call spans inside; links to the parent's
turn, to the previous turn and to the run a restarted turn continues; exported over OTLP/HTTP by `serve`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bgagents import Runtime
from bgagents.traces import provider_from_env

from .conftest import Script, ServerProcess, free_port, make_settings
from .test_durability import wait_for


def in_memory() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def turn_spans(spans: tuple[ReadableSpan, ...], task_id: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith("bgagents.turn") and s.attributes
            and s.attributes.get("bgagents.task.id") == task_id]


async def test_span_tree_of_a_task_with_two_tool_calls_and_a_child(tmp_path: Path) -> None:
    provider, exporter = in_memory()
    lead_done = asyncio.Event()

    async def after_the_lead(n: int) -> None:  # a child that ended first would steer the lead into a second run
        await lead_done.wait()

    async with Runtime(make_settings(tmp_path), tracer_provider=provider) as rt:
        rt.register_model("child", Script(answer="child done", before=after_the_lead).model())
        rt.register_model("lead", Script(steps=[("background_task", {"prompt": "help me", "model": "child"}),
                                                ("glob", {"pattern": "*"}), ("todoread", {})],
                                         answer="lead done").model())
        lead = await rt.wait((await rt.launch("lead the work", model="lead")).id, 30)
        lead_done.set()
        [child] = await rt.list(parent_id=lead.id)
        child = await rt.wait(child.id, 30)
        assert lead.status == child.status == "completed"
    spans = exporter.get_finished_spans()
    [turn] = turn_spans(spans, lead.id)
    assert turn.parent is None and turn.attributes is not None
    assert turn.attributes["bgagents.task.name"] == lead.name and turn.attributes["bgagents.task.agent"] == "general"
    assert turn.attributes["bgagents.task.status"] == "completed"
    [run] = [s for s in spans if s.parent and s.parent.span_id == turn.context.span_id]
    inside = [s for s in spans if s.parent and s.parent.span_id == run.context.span_id]
    tools = sorted(str(s.attributes.get("gen_ai.tool.name")) for s in inside if s.name.startswith("execute_tool")
                   and s.attributes)
    assert tools == ["background_task", "glob", "todoread"]
    chats = [s for s in inside if s.attributes and s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 4 and all(s.attributes and s.attributes["gen_ai.request.model"] == "script" for s in chats)
    assert all(s.context.trace_id == turn.context.trace_id for s in inside)
    [child_turn] = turn_spans(spans, child.id)
    assert child_turn.attributes and child_turn.attributes["bgagents.task.parent_id"] == lead.id
    [link] = child_turn.links
    assert link.context.span_id == turn.context.span_id and link.attributes == {"bgagents.link": "parent"}


async def test_a_turn_links_to_the_run_it_continues_and_to_the_previous_turn(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def wait_for_gate(n: int) -> None:
        if n == 2:
            await gate.wait()

    script = Script(steps=[("todoread", {})], answer="done", before=wait_for_gate)
    first, first_spans = in_memory()
    async with Runtime(make_settings(tmp_path), tracer_provider=first) as rt:
        rt.register_model("s", script.model())
        task = await rt.launch("long work", model="s")
        while len(script.calls) < 2:
            await asyncio.sleep(0.02)
    # stopped mid-turn (at a step boundary): the next start resumes the same turn
    gate.set()
    second, second_spans = in_memory()
    async with Runtime(make_settings(tmp_path), tracer_provider=second) as rt:
        rt.register_model("s", script.model())
        done = await rt.wait(task.id, 30)
        assert done.status == "completed"
        again = await rt.wait((await rt.resume(task.id, "and once more")).id, 30)
        assert again.turn == 2
    [interrupted] = turn_spans(first_spans.get_finished_spans(), task.id)
    resumed, follow_up = turn_spans(second_spans.get_finished_spans(), task.id)
    assert [(k.context.span_id, dict(k.attributes or {})) for k in resumed.links] == [
        (interrupted.context.span_id, {"bgagents.link": "continues"})]
    assert [(k.context.span_id, dict(k.attributes or {})) for k in follow_up.links] == [
        (resumed.context.span_id, {"bgagents.link": "previous_turn"})]


def test_off_without_the_standard_variables(monkeypatch: Any) -> None:
    for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(key, raising=False)
    assert provider_from_env() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert provider_from_env() is None


class Collector:
    """A local OTLP/HTTP receiver: keeps the spans of every POST /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.port = free_port()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            attrs = {a.key: a.value.string_value or a.value.int_value for a in span.attributes}
                            collector.spans.append({"name": span.name, "service": service, "attributes": attrs,
                                                    "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                                                    "parent": span.parent_span_id.hex()})
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_serve_exports_over_otlp_http(server_factory: Callable[..., ServerProcess]) -> None:
    collector = Collector()
    try:
        server = server_factory(BGAGENTS_MODEL="demo", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
                                OTEL_BSP_SCHEDULE_DELAY="100", OTEL_SERVICE_NAME="bgagents-test")
        server.start()
        with server.client() as http:
            tid = http.post("/tasks", json={"prompt": "write a note"}).json()["id"]
            wait_for(lambda: http.get(f"/tasks/{tid}").json()["status"] == "completed", 120, "the task")

        def turn() -> list[dict[str, Any]]:
            return [s for s in collector.spans if s["attributes"].get("bgagents.task.id") == tid]

        wait_for(lambda: bool(turn()), 60, "the turn's span at the collector")
        trace_id = turn()[0]["trace_id"]
        wait_for(lambda: sum(s["trace_id"] == trace_id and s["name"].startswith("execute_tool")
                             for s in collector.spans) >= 5, 60, "the tool spans")
        mine = [s for s in collector.spans if s["trace_id"] == trace_id]
        assert {s["service"] for s in mine} == {"bgagents-test"}
        assert any(s["attributes"].get("gen_ai.tool.name") == "bash" for s in mine)
        assert any(s["attributes"].get("gen_ai.operation.name") == "chat" for s in mine)
    finally:
        collector.server.shutdown()
