"""The runtime through its Python API: launch, queues, cancel, resume, steer, fork, events, restart."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bgagents import Conflict, InvalidInput, NotFound, Runtime, Settings, UnknownModel
from bgagents.core.db import create_engine
from bgagents.core.store import Store
from bgagents.errors import UnknownAgent
from bgagents.settings import ConcurrencySettings

from .conftest import Script, make_settings, user_texts
from .test_orphans import new_mark, processes


async def test_launch_runs_tools_and_completes(runtime: Runtime) -> None:
    script = Script(steps=[("bash", {"command": "echo hello > out.txt && cat out.txt"}),
                           ("todowrite", {"todos": [{"content": "a", "status": "completed"},
                                                    {"content": "b", "status": "cancelled"}]})],
                    answer="all done")
    runtime.register_model("script", script.model())
    task = await runtime.launch("say hello", model="script")
    assert task.status == "queued" and task.id.startswith("bg_") and task.name == "say-hello"
    done = await runtime.wait(task.id, timeout=20)
    assert done.status == "completed", done.error
    assert done.result and done.result.text == "all done"
    assert done.progress.requests == 3
    assert done.progress.tool_calls == 2
    assert done.progress.last_tool == "todowrite"
    assert done.progress.todos.done == 2 and done.progress.todos.total == 2
    assert (runtime.settings.workspace_path / "out.txt").read_text() == "hello\n"
    entries = await runtime.transcript(task.id)
    roles = [e.role for e in entries]
    assert roles[0] == "user" and roles[-1] == "assistant"
    assert "tool_call" in roles and "tool_result" in roles
    assert any("hello" in e.content for e in entries if e.role == "tool_result")
    without = await runtime.transcript(task.id, tool_results=False)
    assert "tool_result" not in [e.role for e in without]
    page = await runtime.transcript(task.id, since=1, limit=1)
    assert {e.index for e in page} == {1}
    assert await runtime.running_counts() == {}


async def test_demo_model_runs_offline(runtime: Runtime) -> None:
    task = await runtime.launch("Write a note about the workspace", model="demo")
    done = await runtime.wait(task.id, timeout=30)
    assert done.status == "completed", done.error
    assert done.result and done.result.text and "[demo model]" in done.result.text
    assert done.progress.todos.total == 3
    assert list((runtime.settings.workspace_path / "demo-notes").glob("*.md"))
    explore = await runtime.launch("Look around", model="demo", agent="explore")
    done = await runtime.wait(explore.id, timeout=30)
    assert done.status == "completed", done.error


async def test_concurrency_limit_and_fifo(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, concurrency=ConcurrencySettings(default=2))
    running = 0
    peak = 0
    started: list[str] = []

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        started.append(user_texts(messages)[0])
        await asyncio.sleep(0.15)
        running -= 1
        return ModelResponse(parts=[TextPart("ok")])

    async with Runtime(settings) as rt:
        rt.register_model("slow", FunctionModel(slow, model_name="slow"))
        tasks = [await rt.launch(f"job {i}", model="slow") for i in range(6)]
        for t in tasks:
            assert (await rt.wait(t.id, timeout=30)).status == "completed"
        assert peak == 2
        # first in, first out: with two slots a job can start at most one place from its launch order
        assert sorted(started) == [f"job {i}" for i in range(6)]
        assert all(abs(started.index(f"job {i}") - i) <= 1 for i in range(6)), started
        assert await rt.running_counts() == {}


async def test_priority_runs_first_within_queue(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, concurrency=ConcurrencySettings(default=1))
    started: list[str] = []
    gate = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        started.append(user_texts(messages)[0])
        await gate.wait()
        return ModelResponse(parts=[TextPart("ok")])

    async with Runtime(settings) as rt:
        rt.register_model("m", FunctionModel(model, model_name="m"))
        first = await rt.launch("first", model="m")
        while not started:
            await asyncio.sleep(0.01)
        low = await rt.launch("low", model="m")
        high = await rt.launch("high", model="m", priority=10)
        gate.set()
        for t in (first, low, high):
            assert (await rt.wait(t.id, timeout=30)).status == "completed"
        assert started == ["first", "high", "low"]


async def test_a_restart_keeps_the_limit_and_starts_what_waited(tmp_path: Path) -> None:
    """On SQLite waiting turns live in memory: after a stop the resumed turn holds its slot (nothing starts
    beside it over the limit) and the turns that waited are admitted again, in priority order."""
    settings = make_settings(tmp_path, concurrency=ConcurrencySettings(default=1))
    hang = asyncio.Event()

    async def hanging(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await hang.wait()
        return ModelResponse(parts=[TextPart("never")])

    rt = Runtime(settings)
    rt.register_model("m", FunctionModel(hanging, model_name="m"))
    await rt.start()
    first = await rt.launch("first", model="m")
    while (await rt.get(first.id)).status != "running":
        await asyncio.sleep(0.01)
    low = await rt.launch("low", model="m")
    high = await rt.launch("high", model="m", priority=5)
    await rt.stop(grace=0.1)

    in_flight: list[str] = []
    started: list[str] = []
    most = 0

    async def counting(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        nonlocal most
        name = user_texts(messages)[0]
        started.append(name)
        in_flight.append(name)
        most = max(most, len(in_flight))
        await asyncio.sleep(0.05)
        in_flight.remove(name)
        return ModelResponse(parts=[TextPart("ok")])

    async with Runtime(settings) as rt2:
        rt2.register_model("m", FunctionModel(counting, model_name="m"))
        for t in (first, low, high):
            assert (await rt2.wait(t.id, timeout=30)).status == "completed"
        assert most == 1
        assert started == ["first", "high", "low"]
        assert await rt2.running_counts() == {}


async def test_limit_per_model_and_provider(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, concurrency=ConcurrencySettings(default=5, providers={"p": 1},
                                                                       models={"p:fast": 3}))
    async with Runtime(settings) as rt:
        assert rt._concurrency("p:slow") == ("p:slow", 1)
        assert rt._concurrency("p:fast") == ("p:fast", 3)
        assert rt._concurrency("demo") == ("demo", 5)


async def test_every_terminal_path_returns_its_slot(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, concurrency=ConcurrencySettings(default=1))
    hang = asyncio.Event()

    async def failing(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise RuntimeError("model exploded")

    async def hanging(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await hang.wait()
        return ModelResponse(parts=[TextPart("late")])

    async with Runtime(settings) as rt:
        rt.register_model("m", Script().model())
        rt.register_model("m-fail", FunctionModel(failing, model_name="m-fail"))
        rt.register_model("m-hang", FunctionModel(hanging, model_name="m-hang"))
        # all three share one key so each must give the slot back for the next to run
        for name in ("m-fail", "m-hang"):
            rt.settings.concurrency.models[name] = 1
        failed = await rt.launch("fail", model="m-fail")
        assert (await rt.wait(failed.id, timeout=20)).status == "failed"
        running = await rt.launch("hang", model="m-hang")
        queued = await rt.launch("hang too", model="m-hang")
        while (await rt.get(running.id)).status != "running":
            await asyncio.sleep(0.01)
        assert (await rt.get(queued.id)).status == "queued"
        await rt.cancel(queued.id)
        await rt.cancel(running.id)
        ok = await rt.launch("fine", model="m-hang")
        hang.set()
        assert (await rt.wait(ok.id, timeout=20)).status == "completed"
        done = await rt.launch("fine", model="m")
        assert (await rt.wait(done.id, timeout=20)).status == "completed"
        assert await rt.running_counts() == {}
        failed_task = await rt.get(failed.id)
        assert failed_task.end_reason == "model_error" and "model exploded" in (failed_task.error or "")
        for t in (running, queued):
            cancelled = await rt.get(t.id)
            assert cancelled.status == "cancelled" and cancelled.end_reason == "user"
        # on SQLite a turn waits for its slot in memory (core/admission.py): cancelled while waiting, it never
        # became a workflow, and it does not start when the slot frees
        assert await rt.workflow_statuses(queued.id) == ["missing"]
        assert (await rt.get(queued.id)).started_at is None


async def test_cancel_interrupts_model_request_within_a_second(runtime: Runtime) -> None:
    in_flight = asyncio.Event()
    interrupted = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        in_flight.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            interrupted.set()
            raise
        return ModelResponse(parts=[TextPart("never")])

    runtime.register_model("m", FunctionModel(model, model_name="m"))
    task = await runtime.launch("wait forever", model="m")
    await asyncio.wait_for(in_flight.wait(), 10)
    t0 = time.monotonic()
    cancelled = await runtime.cancel(task.id)
    await asyncio.wait_for(interrupted.wait(), 1.0)
    assert time.monotonic() - t0 < 1.0
    assert cancelled.status == "cancelled"
    with pytest.raises(Conflict):
        await runtime.cancel(task.id)
    await asyncio.sleep(0.05)
    assert (await runtime.get(task.id)).status == "cancelled"
    assert await runtime.running_counts() == {}


async def test_cancel_kills_running_bash_within_a_second(runtime: Runtime) -> None:
    mark = new_mark()  # the command runs in the sandbox: found by its command line, not a pid file
    script = Script(steps=[("bash", {"command": f"exec sleep 60.{mark}", "timeout": 120})])
    runtime.register_model("m", script.model())
    task = await runtime.launch("sleep", model="m")
    deadline = time.monotonic() + 10
    while not processes(mark):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await runtime.cancel(task.id)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        if not processes(mark):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the bash process outlived the cancel by a second")


async def test_cancel_all_under_a_parent(runtime: Runtime) -> None:
    gate = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("ok")])

    runtime.register_model("m", FunctionModel(model, model_name="m"))
    parent = await runtime.launch("parent", model="m")
    child = await runtime.launch("child", model="m", parent_id=parent.id)
    grandchild = await runtime.launch("grandchild", model="m", parent_id=child.id)
    other = await runtime.launch("other", model="m")
    assert grandchild.depth == 2 and grandchild.root_id == parent.id
    cancelled = await runtime.cancel_all(parent_id=parent.id)
    assert {t.id for t in cancelled} == {child.id, grandchild.id}
    assert (await runtime.get(other.id)).status in ("queued", "running")
    gate.set()
    assert (await runtime.wait(other.id, timeout=20)).status == "completed"


async def test_resume_keeps_the_session(runtime: Runtime) -> None:
    script = Script(answer="first answer")
    runtime.register_model("m", script.model())
    task = await runtime.launch("first question", model="m")
    await runtime.wait(task.id, timeout=20)
    script.answer = "second answer"
    resumed = await runtime.resume(task.id, "follow-up question")
    assert resumed.id == task.id and resumed.turn == 2 and resumed.status == "queued"
    done = await runtime.wait(task.id, timeout=20)
    assert done.status == "completed" and done.result and done.result.text == "second answer"
    assert user_texts(script.calls[-1]) == ["first question", "follow-up question"]
    entries = await runtime.transcript(task.id)
    assert [e.content for e in entries if e.role == "user"] == ["first question", "follow-up question"]
    assert {e.turn for e in entries} == {1, 2}


async def test_resume_refused_while_running_and_send_refused_when_finished(runtime: Runtime) -> None:
    gate = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("ok")])

    runtime.register_model("m", FunctionModel(model, model_name="m"))
    task = await runtime.launch("x", model="m")
    with pytest.raises(Conflict):
        await runtime.resume(task.id, "more")
    gate.set()
    await runtime.wait(task.id, timeout=20)
    with pytest.raises(Conflict, match="resume"):
        await runtime.send(task.id, "too late")


async def test_send_steers_before_the_next_request(runtime: Runtime) -> None:
    first_seen = asyncio.Event()
    release = asyncio.Event()

    async def before(n: int) -> None:
        if n == 1:
            first_seen.set()
            await release.wait()

    script = Script(steps=[("todoread", {})], before=before)
    runtime.register_model("m", script.model())
    task = await runtime.launch("start", model="m")
    await asyncio.wait_for(first_seen.wait(), 10)
    await runtime.send(task.id, "also check the tests")
    release.set()
    done = await runtime.wait(task.id, timeout=20)
    assert done.status == "completed"
    assert "also check the tests" in user_texts(script.calls[1])
    entries = await runtime.transcript(task.id)
    assert "also check the tests" in [e.content for e in entries if e.role == "user"]


async def test_steering_after_the_last_request_gets_one_more_round(runtime: Runtime) -> None:
    seen = asyncio.Event()
    release = asyncio.Event()

    async def before(n: int) -> None:
        if n == 1:
            seen.set()
            await release.wait()

    script = Script(before=before)
    runtime.register_model("m", script.model())
    task = await runtime.launch("start", model="m")
    await asyncio.wait_for(seen.wait(), 10)
    # the first request is already in flight: this message can only arrive after it
    await runtime.send(task.id, "one more thing")
    release.set()
    await runtime.wait(task.id, timeout=20)
    assert len(script.calls) == 2
    assert user_texts(script.calls[1])[-1] == "one more thing"


async def test_fork_copies_the_session(runtime: Runtime) -> None:
    script = Script(steps=[("todoread", {})], answer="original")
    other = Script(answer="forked")
    runtime.register_model("m", script.model())
    runtime.register_model("other", other.model("other"))
    task = await runtime.launch("the question", model="m")
    await runtime.wait(task.id, timeout=20)
    fork = await runtime.fork(task.id, "now try this", model="other")
    assert fork.id != task.id and fork.model == "other"
    assert fork.forked_from == {"task_id": task.id, "at": 4}
    done = await runtime.wait(fork.id, timeout=20)
    assert done.result and done.result.text == "forked"
    assert user_texts(other.calls[0]) == ["the question", "now try this"]
    partial = await runtime.fork(task.id, "from the start", at=1, model="other")
    await runtime.wait(partial.id, timeout=20)
    assert user_texts(other.calls[-1]) == ["the question", "from the start"]
    assert len(other.calls[-1]) == 1  # the new prompt joins the copied request
    with pytest.raises(InvalidInput):
        await runtime.fork(task.id, "x", at=99)


async def test_fork_at_keeps_its_prompt_and_stores_its_answer_once(runtime: Runtime) -> None:
    """A fork whose copy ends with a request (the prompt, or a tool result): pydantic-ai sends the fork's
    prompt merged into that request; the fork's transcript must still hold it, and its answer once."""
    runtime.register_model("m", Script(steps=[("todoread", {})], answer="original").model())
    runtime.register_model("other", Script(answer="forked").model("other"))
    task = await runtime.launch("the question", model="m")
    await runtime.wait(task.id, timeout=20)
    for at, copied in ((1, ["user"]), (3, ["user", "tool_call", "tool_result"])):
        fork = await runtime.fork(task.id, f"fork at {at}", at=at, model="other")
        done = await runtime.wait(fork.id, timeout=20)
        assert done.status == "completed"
        entries = [(e.role, e.content) for e in await runtime.transcript(fork.id)]
        assert [role for role, _ in entries] == [*copied, "user", "assistant"], entries
        assert entries[-2:] == [("user", f"fork at {at}"), ("assistant", "forked")]
        # a follow-up turn on the fork goes on from that transcript, and stores its own prompt too
        await runtime.resume(fork.id, "and then")
        await runtime.wait(fork.id, timeout=20)
        entries = [(e.role, e.content) for e in await runtime.transcript(fork.id)]
        assert entries[-4:] == [("user", f"fork at {at}"), ("assistant", "forked"), ("user", "and then"),
                                ("assistant", "forked")], entries


async def test_events_are_stored_in_order_and_replayable(runtime: Runtime) -> None:
    runtime.register_model("m", Script(steps=[("todoread", {})]).model())
    task = await runtime.launch("events", model="m")
    await runtime.wait(task.id, timeout=20)
    seen = []
    async for event in runtime.events(task_id=task.id):
        seen.append(event)
        if event.type == "task.completed":
            break
    types = [e.type for e in seen]
    assert types[0] == "task.queued" and types[1] == "task.running" and types[-1] == "task.completed"
    assert "task.tool_call" in types and "task.tool_result" not in types  # only failed calls have one
    seqs = [e.seq for e in seen]
    assert seqs == sorted(seqs)
    later = []
    async for event in runtime.events(since=seqs[2], task_id=task.id):
        later.append(event.seq)
        if event.type == "task.completed":
            break
    assert later == seqs[3:]


async def test_bad_input_is_a_clear_error(runtime: Runtime) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        await runtime.launch("   ", model="demo")
    with pytest.raises(UnknownModel, match="no-such"):
        await runtime.launch("x", model="no-such-provider:x")
    with pytest.raises(UnknownModel, match="OPENAI_API_KEY"):
        os.environ.pop("OPENAI_API_KEY", None)
        await runtime.launch("x", model="openai:gpt-4o")
    with pytest.raises(InvalidInput, match="unknown agent"):
        await runtime.launch("x", model="demo", agent="nobody")
    with pytest.raises(InvalidInput, match="no model"):
        await runtime.launch("x")
    with pytest.raises(InvalidInput, match="unknown limits"):
        await runtime.launch("x", model="demo", limits={"bananas": 1})
    with pytest.raises(NotFound):
        await runtime.launch("x", model="demo", parent_id="bg_00000000")
    with pytest.raises(NotFound):
        await runtime.get("bg_deadbeef")
    with pytest.raises(NotFound):
        await runtime.cancel("nope")
    with pytest.raises(InvalidInput):
        await runtime.list(status="sleeping")
    assert await runtime.list() == []  # nothing was created by the refused launches


async def test_output_waits_and_says_when_it_timed_out(runtime: Runtime) -> None:
    gate = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("result!")])

    runtime.register_model("m", FunctionModel(model, model_name="m"))
    task = await runtime.launch("x", model="m")
    out = await runtime.output(task.id, wait=True, timeout=0.1)
    assert out.timed_out and not out.finished
    gate.set()
    out = await runtime.output(task.id, wait=True, timeout=10)
    assert out.finished and not out.timed_out and out.result and out.result.text == "result!"


async def test_graceful_stop_then_restart_resumes_without_repeating_steps(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    calls: list[int] = []
    block = asyncio.Event()

    async def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        from .conftest import tool_returns

        done = tool_returns(messages)
        calls.append(done)
        if done == 2 and not block.is_set():
            await asyncio.sleep(60)  # in flight when the process stops
        if done < 3:
            return ModelResponse(parts=[ToolCallPart("bash", {"command": f"echo step{done} >> log.txt"},
                                                     tool_call_id=f"c{done}")])
        return ModelResponse(parts=[TextPart("finished")])

    rt = Runtime(settings)
    rt.register_model("m", FunctionModel(model, model_name="m"))
    await rt.start()
    task = await rt.launch("three steps", model="m")
    while calls.count(2) == 0:
        await asyncio.sleep(0.01)
    await rt.stop(grace=0.2)
    stopped = Store(create_engine(settings.sqlalchemy_url)).get_task_sync(task.id)
    assert stopped is not None and stopped.status == "queued" and "shutdown" in (stopped.progress.note or "")
    rt2 = Runtime(settings)
    rt2.register_model("m", FunctionModel(model, model_name="m"))
    block.set()
    async with rt2:
        done = await rt2.wait(task.id, timeout=20)
    assert done.status == "completed", done.error
    # requests 0 and 1 finished before the stop and were not sent again; request 2 was in flight
    assert calls == [0, 1, 2, 2, 3]
    log = (settings.workspace_path / "log.txt").read_text().split()
    assert log == ["step0", "step1", "step2"]


async def test_settings_from_env_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        'model = "demo"\n[concurrency]\ndefault = 7\nproviders = { openai = 2 }\n'
        '[agents.reviewer]\ndescription = "reviews"\ntools = ["read", "grep"]\nprompt = "Review."\n'
    )
    monkeypatch.setenv("BGAGENTS_CONCURRENCY__DEFAULT", "3")
    settings = Settings()
    assert settings.model == "demo"
    assert settings.concurrency.default == 3
    assert settings.concurrency.providers == {"openai": 2}
    assert settings.agents["reviewer"].tools == ["read", "grep"]


async def test_the_host_loop_keeps_working_after_stop(settings: Settings) -> None:
    async with Runtime(settings) as rt:
        rt.register_model("m", Script().model())
        await rt.wait((await rt.launch("x", model="m")).id, timeout=20)
    assert await asyncio.to_thread(lambda: 42) == 42


async def test_attempts_are_recorded_per_turn(runtime: Runtime) -> None:
    runtime.register_model("m", Script().model())
    task = await runtime.launch("x", model="m")
    await runtime.wait(task.id, timeout=20)
    await runtime.resume(task.id, "again")
    done = await runtime.wait(task.id, timeout=20)
    assert [a.model for a in done.attempts] == ["m", "m"]
    assert all(a.finished_at and a.finished_at >= a.started_at and a.error is None for a in done.attempts)


async def test_markdown_and_config_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agents = tmp_path / ".bgagents" / "agents"
    agents.mkdir(parents=True)
    (agents / "reader.md").write_text(
        "---\nname: reader\ndescription: Reads things\nmodel: demo\ntools: read, glob\n---\nYou only read.\n")
    (agents / "broken.md").write_text("---\nname: [unclosed\n---\nx\n")
    settings = make_settings(tmp_path)
    from bgagents.core.profiles import load_profiles, parse_markdown_profile

    reader = parse_markdown_profile(agents / "reader.md")
    assert reader.tools == ["read", "glob"] and reader.prompt == "You only read." and reader.model == "demo"
    with pytest.raises(InvalidInput, match=r"broken\.md: front matter is not valid YAML: .* \(line 2, column 16\)"):
        load_profiles(settings)
    async with Runtime(settings) as rt:  # a broken file is said, not fatal: the others are used
        assert "broken.md" in rt.broken_profiles()["broken"]
        with pytest.raises(UnknownAgent, match=r"agent 'broken' cannot be used: .*broken\.md"):
            await rt.launch("look", agent="broken")
        (agents / "broken.md").unlink()
        assert rt.broken_profiles() == {}
        task = await rt.launch("look", agent="reader")  # the profile's model is used
        assert task.model == "demo" and task.agent == "reader"
        assert (await rt.wait(task.id, timeout=30)).status == "completed"
        (agents / "reader.md").write_text("---\nmodel: [\n---\nx\n")  # broken: its last good version stays
        assert rt.profiles()["reader"].model == "demo" and "reader" in rt.broken_profiles()
        (agents / "writer.md").write_text("---\nmodel: demo\n---\nYou write.\n")  # added: used at once
        assert (await rt.launch("write", agent="writer")).agent == "writer"
