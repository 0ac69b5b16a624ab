"""The main conversation (SPEC 4) on the real runtime: a scripted main agent, injected thresholds."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bgagents import Runtime, Settings
from bgagents.conversation import tables
from bgagents.conversation.orchestrator import response_of
from bgagents.errors import InvalidInput, NotFound
from bgagents.settings import ConcurrencySettings, ConversationSettings
from tests.conftest import make_settings, user_texts

CID = "default"
Handler = Callable[[ET.Element, list[ModelMessage]], Awaitable[Any] | Any]


def send(message: str | None, **kw: Any) -> dict[str, Any]:
    return {"action": "send", "action_reason": "test", "message": message, **kw}


def silent(**kw: Any) -> dict[str, Any]:
    return {"action": "silent", "action_reason": "test", **kw}


@dataclass
class Brain:
    """A scripted model for every session of a conversation: it reads the `<event>` of its prompt and
    answers with `handler(event, messages)`; `hold(name)` keeps that event's turn running until released."""

    handler: Handler
    seen: list[ET.Element] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    histories: list[list[ModelMessage]] = field(default_factory=list)

    def hold(self, text: str) -> asyncio.Event:
        self.gates[text] = asyncio.Event()
        return self.gates[text]

    async def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        prompt = user_texts(messages)[-1]
        event = ET.fromstring(prompt)
        self.seen.append(event)
        self.histories.append(list(messages))
        gate = self.gates.get(event.findtext("text") or "")
        if gate is not None:  # peeks and health checks have no <text>, so they never wait
            await gate.wait()
        answer = self.handler(event, messages)
        if asyncio.iscoroutine(answer):
            answer = await answer
        if info.output_tools:
            return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])
        return ModelResponse(parts=[TextPart(str(answer))])

    def events(self, type_: str | None = None) -> list[ET.Element]:
        return [e for e in self.seen if type_ is None or e.get("type") == type_]


def echo(event: ET.Element, messages: list[ModelMessage]) -> Any:
    kind = event.get("type")
    if kind == "user-message":
        return send(f"echo: {event.findtext('text')}")
    if kind == "background-agent-result":
        result = event.find("result")
        assert result is not None
        if result.get("action") == "silent":
            return silent()
        return send(f"relay {event.find('original-event').get('name')}: {result.findtext('text')}")  # type: ignore[union-attr]
    if kind == "background-agent-start":
        return send(f"bg done: {event.findtext('text')}")
    if kind == "button-click":
        return send(f"pressed {event.findtext('button')}")
    if kind == "peek":
        return "halfway there"
    return silent()


@pytest.fixture
async def conv(settings: Settings) -> AsyncIterator[Callable[..., Awaitable[tuple[Runtime, Brain]]]]:
    """Starts a runtime (SQLite, and PostgreSQL when configured) whose every model is a `Brain`."""
    runtimes: list[Runtime] = []

    async def start(handler: Handler = echo, **conversation: Any) -> tuple[Runtime, Brain]:
        brain = Brain(handler)
        rt = Runtime(settings.model_copy(update={
            "model": "brain", "conversation": ConversationSettings(**{"wait_threshold": 5.0, **conversation})}))
        rt.register_model("brain", FunctionModel(brain, model_name="brain"))
        await rt.start()
        runtimes.append(rt)
        return rt, brain

    yield start
    for rt in runtimes:
        await rt.stop()


async def responses(rt: Runtime, count: int, timeout: float = 10.0) -> list[str]:
    """The messages of the first `count` delivered responses, waiting for them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await rt.conversations.responses(CID)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            assert len(found) >= count, f"only {[r.message for r in found]}"
            return [r.message or "" for r in found]
        await rt.conversations.wait_for_response(CID, found[-1].seq if found else 0, 0.5)


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_message_answered_and_second_waits_for_a_quick_turn(conv: Any) -> None:
    rt, brain = await conv()
    gate = brain.hold("first")
    first = await rt.conversations.message(CID, "first")
    second = await rt.conversations.message(CID, "second")
    await asyncio.sleep(0.3)
    gate.set()  # finishes well within the 5 s threshold
    assert await responses(rt, 2) == ["echo: first", "echo: second"]
    events = brain.events("user-message")
    assert [e.findtext("text") for e in events] == ["first", "second"]
    assert events[1].find("backgrounded-event") is None  # it waited, nothing was demoted
    assert [e.get("name") for e in events] == [first.name, second.name]
    history = await rt.conversations.history(CID)
    started = {line["task_id"] for line in history if line["kind"] == "event"}
    assert len(started) == 1  # both turns on one main session (resumed, not forked)


async def test_demotion_after_the_wait_and_the_demoted_answer_returns_as_an_event(conv: Any) -> None:
    rt, brain = await conv(wait_threshold=0.3)
    gate = brain.hold("long job")
    first = await rt.conversations.message(CID, "long job")
    await until(lambda: _held(brain), "the model to hold the first turn's request")
    await rt.conversations.message(CID, "quick question")
    assert await responses(rt, 1) == ["echo: quick question"]
    forked = brain.events("user-message")[-1]
    assert forked.findtext("text") == "quick question"
    assert forked.find("backgrounded-event").get("name") == first.name  # type: ignore[union-attr]
    sessions = await rt.conversations.sessions(CID)
    assert [(s.name, s.main) for s in sessions] == [(first.name, False)]
    gate.set()
    got = await responses(rt, 2)
    assert got[1] == "relay long-job: echo: long job"  # via a background-agent-result event, never directly
    assert "echo: long job" not in got
    result = brain.events("background-agent-result")[-1]
    assert result.find("original-event").get("name") == first.name  # type: ignore[union-attr]


async def _main_turn_queued(rt: Runtime) -> bool:
    """A main turn (priority 10) waits in the queue."""
    return any(t.priority >= 10 for t in await rt.list("queued"))


async def _held(brain: Brain) -> bool:
    """The model has the first request (a turn can be `running` before its request reaches the model)."""
    return bool(brain.events("user-message"))


async def _running(rt: Runtime, name: str | None = None) -> bool:
    return any(s.status == "running" and name in (None, s.name) for s in await rt.conversations.sessions(CID))


async def test_turn_past_the_threshold_is_demoted_at_once(conv: Any) -> None:
    rt, brain = await conv(wait_threshold=0.0)
    gate = brain.hold("slow")
    await rt.conversations.message(CID, "slow")
    await until(lambda: _running(rt), "the first turn to run")
    await rt.conversations.message(CID, "next")
    assert await responses(rt, 1) == ["echo: next"]
    gate.set()
    assert (await responses(rt, 2))[1].startswith("relay slow")


async def test_background_agents_forked_from_the_main_session(conv: Any) -> None:
    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        if event.get("type") == "user-message":
            return send("starting it", background_agents=[{"name": "Research the market", "prompt": "dig deep"}])
        if event.get("type") == "background-agent-start":
            assert "look into the market" in " ".join(user_texts(messages))  # it sees the conversation
            return send("market is big", files=["notes/market.md"])
        return echo(event, messages)

    rt, brain = await conv(handler)
    await rt.conversations.message(CID, "look into the market")
    got = await responses(rt, 2)
    assert got == ["starting it", "relay research-market: market is big"]
    start = brain.events("background-agent-start")[0]
    assert start.get("session") == "background" and start.findtext("text") == "dig deep"
    result = brain.events("background-agent-result")[0].find("result")
    assert result is not None and result.get("action") == "send" and result.get("status") == "completed"
    assert [f.get("path") for f in result.iter("file")] == ["notes/market.md"]


async def test_silent_background_result_stays_silent_and_empty_send_is_no_output(conv: Any) -> None:
    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        kind = event.get("type")
        if kind == "user-message" and event.findtext("text") == "quiet":
            return silent(background_agents=[{"name": "tidy", "prompt": "tidy up"}])
        if kind == "user-message":
            return send("")
        if kind == "background-agent-start":
            return silent()
        return echo(event, messages)

    rt, brain = await conv(handler)
    await rt.conversations.message(CID, "quiet")
    await until(lambda: _has(brain, "background-agent-result"), "the background result")
    result = brain.events("background-agent-result")[0].find("result")
    assert result is not None and result.get("action") == "silent"
    await rt.conversations.message(CID, "say nothing")
    assert await responses(rt, 1) == ["[No output]"]  # the silent ones delivered nothing
    history = await rt.conversations.history(CID)
    silent_lines = [h for h in history if h["kind"] == "response" and not h["delivered"]]
    assert len(silent_lines) == 2


async def _has(brain: Brain, kind: str) -> bool:
    return bool(brain.events(kind))


async def test_peek_kill_and_details(conv: Any) -> None:
    rt, brain = await conv()
    for action in (rt.conversations.peek, rt.conversations.kill, rt.conversations.session):
        with pytest.raises(NotFound):
            await action(CID, "nobody")
    gate = brain.hold("write the <report> & \"more\"")
    first = await rt.conversations.message(CID, "write the <report> & \"more\"")
    await until(lambda: _running(rt), "the turn to run")
    detail = await rt.conversations.session(CID, first.name)
    assert detail.prompt == "write the <report> & \"more\"" and detail.main and "<event" not in detail.prompt
    peeked = await rt.conversations.peek(CID, first.name)
    assert peeked.text == "halfway there" and brain.events("peek")[0].find("target-event") is not None
    killed = await rt.conversations.kill(CID, first.name)
    assert killed.task_id == detail.task_id
    gate.set()
    await rt.wait(detail.task_id, 5)
    await rt.conversations.message(CID, "after")
    assert await responses(rt, 1) == ["echo: after"]  # the killed turn's answer never came
    assert (await rt.get(detail.task_id)).turn == 2  # the next event resumed the session


async def test_result_arriving_after_kill_is_dropped(conv: Any) -> None:
    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        if event.get("type") == "user-message":
            return send("on it", background_agents=[{"name": "crunch", "prompt": "crunch numbers"}])
        return echo(event, messages)

    rt, brain = await conv(handler)
    gate = brain.hold("crunch numbers")
    await rt.conversations.message(CID, "go")
    assert await responses(rt, 1) == ["on it"]
    await until(lambda: _running(rt, "crunch"), "the background agent to run")
    [bg] = await rt.conversations.sessions(CID)
    assert bg.name == "crunch" and not bg.main
    await rt.conversations.kill(CID, "crunch")
    gate.set()
    await rt.wait(bg.task_id, 5)
    await asyncio.sleep(0.3)
    assert not brain.events("background-agent-result")
    assert len(await rt.conversations.responses(CID)) == 1
    history = await rt.conversations.history(CID)
    assert not [h for h in history if h["kind"] == "event" and h["type"] == "background-agent-result"]


async def test_names_unique_history_and_bad_input(conv: Any) -> None:
    rt, _ = await conv()
    a = await rt.conversations.message(CID, "Check the weather")
    b = await rt.conversations.message(CID, "check THE weather!")
    assert (a.name, b.name) == ("check-weather", "check-weather-2")
    await rt.conversations.button(CID, "Yes")
    assert len(await responses(rt, 3)) == 3
    history = await rt.conversations.history(CID)
    kinds = [(h["kind"], h.get("type") or h.get("action")) for h in history]
    assert kinds.count(("event", "user-message")) == 2 and ("event", "button-click") in kinds
    assert sum(1 for k in kinds if k[0] == "response") == 3
    json.dumps(history)
    with pytest.raises(InvalidInput):
        await rt.conversations.message(CID, "  ")
    with pytest.raises(InvalidInput):
        await rt.conversations.message("no spaces allowed", "hi")


async def test_clear_and_push_to_background(conv: Any) -> None:
    rt, brain = await conv()
    gate = brain.hold("big job")
    first = await rt.conversations.message(CID, "big job")
    await until(lambda: _running(rt), "the turn to run")
    pushed = await rt.conversations.background(CID)
    assert pushed.name == first.name and not pushed.main
    await rt.conversations.message(CID, "meanwhile")
    assert await responses(rt, 1) == ["echo: meanwhile"]  # no wait: the pushed turn is not the main one
    assert brain.events("user-message")[-1].find("backgrounded-event") is not None
    gate.set()
    assert (await responses(rt, 2))[1].startswith("relay big-job")
    await rt.conversations.clear(CID)
    await rt.conversations.message(CID, "fresh")
    assert (await responses(rt, 3))[2] == "echo: fresh"
    assert len(user_texts(brain.histories[-1])) == 1  # a fresh main session: only its own event
    history = {h["name"]: h["task_id"] for h in await rt.conversations.history(CID) if h["kind"] == "event"}
    assert history["fresh"] != history["meanwhile"]


async def test_a_push_before_the_first_answer_keeps_what_the_person_asked(conv: Any) -> None:
    """The person's message is stored when its turn starts: pushed to the background (or peeked at) while
    the model still holds the first request, the new main turn and the peek model both see it, and the
    finished session's transcript has it once."""
    rt, brain = await conv()
    gate = brain.hold("paint the fence blue")
    first = await rt.conversations.message(CID, "paint the fence blue")
    await until(lambda: _held(brain), "the model to hold the request")
    assert await rt.conversations.peek(CID, first.name)
    assert "paint the fence blue" in " ".join(user_texts(brain.histories[-1]))  # the peek model saw it
    await rt.conversations.background(CID)
    await rt.conversations.message(CID, "which colour did I say?")
    assert await responses(rt, 1) == ["echo: which colour did I say?"]
    said = " ".join(user_texts(brain.histories[-1]))
    assert "paint the fence blue" in said and "which colour did I say?" in said  # the new main turn saw both
    gate.set()
    await responses(rt, 2)
    pushed = (await rt.conversations.history(CID))[0]["task_id"]
    transcript = await rt.transcript(pushed, limit=1000)
    assert [e.role for e in transcript].count("user") == 1, transcript


async def test_demo_model_answers_and_delegates(tmp_path: Path) -> None:
    async with Runtime(make_settings(tmp_path, model="demo")) as rt:
        await rt.conversations.message(CID, "hello")
        await rt.conversations.message(CID, "research the history of tea")
        got = await responses(rt, 3, timeout=30)
        assert got[0].startswith("[demo model] You said 'hello'")
        assert "background agent is on it" in got[1]
        assert "reports:" in got[2] and "history of tea" in got[2]


def long_job(check: Callable[[ET.Element], Any]) -> Handler:
    """The main agent starts one background agent, `job`; health checks are answered by `check`."""

    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        kind = event.get("type")
        if kind == "user-message":
            return send("started", background_agents=[{"name": "job", "prompt": "long job"}])
        if kind == "health-check":
            return check(event)
        return echo(event, messages)

    return handler


async def test_health_check_finds_the_work_finished(conv: Any) -> None:
    rt, brain = await conv(long_job(lambda e: {"finished": True, "output": send("all done early")}),
                           health_check_interval=0.1)
    brain.hold("long job")  # never released: only the health check can end it
    await rt.conversations.message(CID, "go")
    got = await responses(rt, 2)
    assert got == ["started", "relay job: all done early"]
    check = brain.events("health-check")[0]
    assert check.find("target-event").get("name") == "job"  # type: ignore[union-attr]
    [job] = [t for t in await rt.list() if t.name == "job"]
    assert job.status == "cancelled" and job.end_reason == "health_check"


async def test_health_check_progress_goes_to_the_main_session(conv: Any) -> None:
    rt, brain = await conv(long_job(lambda e: {"finished": False, "progress": "halfway"}), health_check_interval=0.1)
    gate = brain.hold("long job")
    await rt.conversations.message(CID, "go")
    await until(lambda: _count(brain, "background-agent-progress", 2), "two progress events")
    progress = brain.events("background-agent-progress")[0]
    assert progress.findtext("progress") == "halfway" and progress.find("target-event").get("name") == "job"  # type: ignore[union-attr]
    assert await responses(rt, 1) == ["started"]  # the main agent kept the progress to itself
    gate.set()
    assert (await responses(rt, 2))[1] == "relay job: bg done: long job"


async def _count(brain: Brain, kind: str, n: int) -> bool:
    return len(brain.events(kind)) >= n


async def test_unresponsive_session_is_killed_and_the_person_told(conv: Any) -> None:
    async def hang(event: ET.Element) -> Any:
        await asyncio.Event().wait()

    rt, brain = await conv(long_job(hang), health_check_interval=0.1, health_check_timeout=0.2)
    gate = brain.hold("long job")
    await rt.conversations.message(CID, "go")
    got = await responses(rt, 2)
    assert got[0] == "started" and "'job'" in got[1] and "unresponsive" in got[1]
    [job] = [t for t in await rt.list() if t.name == "job"]
    assert (await rt.wait(job.id, 5)).end_reason == "unresponsive"
    gate.set()
    await asyncio.sleep(0.3)
    assert not brain.events("background-agent-result")  # its late answer is dropped
    assert len(await rt.conversations.responses(CID)) == 2


async def test_no_health_checks_when_off_or_after_the_session_ends(conv: Any) -> None:
    rt, brain = await conv(long_job(lambda e: {"finished": False, "progress": "x"}), health_check_interval=0)
    gate = brain.hold("long job")
    await rt.conversations.message(CID, "go")
    await until(lambda: _running(rt, "job"), "the background agent to run")
    await asyncio.sleep(0.3)
    assert not brain.events("health-check")  # interval 0: off
    gate.set()
    await responses(rt, 2)


async def test_no_health_check_after_kill_or_natural_end(conv: Any) -> None:
    rt, brain = await conv(long_job(lambda e: {"finished": False, "progress": "x"}), health_check_interval=0.4)
    gate = brain.hold("long job")
    await rt.conversations.message(CID, "go")
    await until(lambda: _running(rt, "job"), "the background agent to run")
    await rt.conversations.kill(CID, "job")
    await rt.conversations.message(CID, "go")  # a second job that ends on its own, before its first check
    gate.set()
    await responses(rt, 3)
    await asyncio.sleep(0.6)
    assert not brain.events("health-check")


async def test_restart_in_the_middle_loses_and_repeats_nothing(tmp_path: Path) -> None:
    """A graceful stop while a main turn runs and two events wait; the next start answers all, in order."""
    settings = make_settings(tmp_path, model="brain", conversation=ConversationSettings(wait_threshold=30))
    first = Brain(echo)
    first.hold("one")
    rt = Runtime(settings)
    rt.register_model("brain", FunctionModel(first, model_name="brain"))
    await rt.start()
    for text in ("one", "two", "three"):
        await rt.conversations.message(CID, text)
    await until(lambda: _running(rt), "the first turn to run")
    await rt.stop(grace=0.1)

    second = Brain(echo)
    rt = Runtime(settings)
    rt.register_model("brain", FunctionModel(second, model_name="brain"))
    async with rt:
        assert await responses(rt, 3) == ["echo: one", "echo: two", "echo: three"]
        await asyncio.sleep(0.3)
        assert len(await rt.conversations.responses(CID)) == 3
        assert [e.findtext("text") for e in second.events("user-message")] == ["one", "two", "three"]


async def test_retention_keeps_the_main_session(conv: Any) -> None:
    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        if event.get("type") == "user-message":
            return send("ok", background_agents=[{"name": "side", "prompt": "side job"}])
        return echo(event, messages)

    rt, _ = await conv(handler)
    await rt.conversations.message(CID, "start")
    await responses(rt, 2)
    await until(lambda: _all_finished(rt), "every session to end")
    main_id = (await rt.conversations.history(CID))[0]["task_id"]
    assert await rt.prune(rt.clock() + 1) == 1  # the background agent's task, not the main session
    assert await rt.conversations.prune_drains(rt.clock() + 1) >= 2  # finished drains leave DBOS
    assert (await rt.get(main_id)).status == "completed"
    await rt.conversations.message(CID, "again")
    assert (await responses(rt, 4))[3] == "relay side-2: bg done: side job"  # resumed with its context


async def _all_finished(rt: Runtime) -> bool:
    return all(t.finished for t in await rt.list())


async def test_main_turns_go_before_queued_background_work(tmp_path: Path) -> None:
    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        if event.get("type") == "user-message" and event.findtext("text") == "go":
            return send("started", background_agents=[{"name": "alpha", "prompt": "job a"},
                                                      {"name": "bravo", "prompt": "job b"}])
        return echo(event, messages)

    brain = Brain(handler)
    gate_a, gate_b = brain.hold("job a"), brain.hold("job b")
    settings = make_settings(tmp_path, model="brain", concurrency=ConcurrencySettings(default=1))
    async with Runtime(settings) as rt:
        rt.register_model("brain", FunctionModel(brain, model_name="brain"))
        await rt.conversations.message(CID, "go")
        assert await responses(rt, 1) == ["started"]
        await until(lambda: _running(rt, "alpha"), "alpha to take the one slot")
        await rt.conversations.message(CID, "hello")
        await until(lambda: _main_turn_queued(rt), "the main turn for 'hello' to queue behind alpha")
        gate_a.set()
        assert (await responses(rt, 2))[1] == "echo: hello"  # before bravo, which was queued first
        [b] = [s for s in await rt.conversations.sessions(CID) if s.name == "bravo"]
        bravo = await rt.get(b.task_id)
        # bravo takes the slot only once the main turn has given it back. That turn's end is read from the
        # events: by now the main session may already be queued again (for alpha's result), or forked.
        [hello] = [r for r in await rt.conversations.responses(CID) if r.message == "echo: hello"]
        assert hello.task_id
        events = await rt.store.events_since(0, task_id=hello.task_id)
        began = max(e.seq for e in events if e.type == "task.running" and e.time <= hello.created_at)
        ended = [e.time for e in events if e.type == "task.completed" and e.seq > began]
        assert bravo.started_at is None or (ended and bravo.started_at >= ended[0])
        gate_b.set()
        await responses(rt, 4)


async def test_replayed_steps_start_and_deliver_nothing_twice(conv: Any) -> None:
    """What DBOS re-runs after a crash inside a step (start a turn, handle an outcome) is a no-op the second time."""
    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        if event.get("type") == "user-message":
            return send("ok", background_agents=[{"name": "side", "prompt": "side job"}])
        return echo(event, messages)

    rt, brain = await conv(handler)
    await rt.conversations.message(CID, "start")
    await responses(rt, 2)
    await until(lambda: _all_finished(rt), "every session to end")
    store = rt.conversations.store
    tasks_before = {t.id: t.turn for t in await rt.list()}
    row = await store.run(store.event_row_sync, CID, 1)
    await rt.conversations._begin(row.plan, row.name)  # the turn's start, replayed
    await rt.conversations._start_turn(CID, 1)
    outcomes = await store.run(lambda: _outcome_ids(rt))
    for outcome_id in outcomes:
        await rt.conversations._handle_outcome(outcome_id)  # delivery and feedback, replayed
        outcome = await store.run(store.outcome_sync, outcome_id)
        await rt.conversations._start_background_agents(outcome, response_of(outcome))
    await asyncio.sleep(0.3)
    assert {t.id: t.turn for t in await rt.list()} == tasks_before
    assert len(await rt.conversations.responses(CID)) == 2
    assert len(brain.events("background-agent-result")) == 1


def _outcome_ids(rt: Runtime) -> list[int]:
    with rt.db_engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.select(tables.conv_outcomes.c.id))]


async def test_background_agent_with_a_wrong_model_is_reported(conv: Any) -> None:
    def handler(event: ET.Element, messages: list[ModelMessage]) -> Any:
        if event.get("type") == "user-message":
            return send("on it", background_agents=[{"name": "odd", "prompt": "x", "model": "nosuch:model"}])
        return echo(event, messages)

    rt, _ = await conv(handler)
    await rt.conversations.message(CID, "go")
    [message] = await responses(rt, 1)
    assert message.startswith("on it\n(Could not start the background agent 'odd':") and "nosuch" in message
    assert await rt.conversations.sessions(CID) == []
