"""Supervision (SPEC 5): loop breaker, budgets, fallback models, stale and expired tasks, nested agents,
notifications, approvals, completion checks, retention. Thresholds are injected so the suite stays fast."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel

from bgagents import Runtime
from bgagents.core.model_errors import classify
from bgagents.settings import ConcurrencySettings, LimitSettings, ProfileSettings, SpawnSettings

from .conftest import Script, make_settings, tool_returns, user_texts
from .fake_openai import FakeOpenAI, env_for

FAST = LimitSettings(retry_backoff=0.001, stale_timeout=5, sweep_interval=0.05, approval_timeout=10)


def limits(**kw: Any) -> LimitSettings:
    return FAST.model_copy(update=kw)


async def started(rt: Runtime, task_id: str, status: str = "running") -> None:
    while (task := await rt.get(task_id)).status != status:
        assert not task.finished, f"{task_id} ended {task.status} ({task.end_reason}) before it was {status}"
        await asyncio.sleep(0.01)


# -- loop breaker ---------------------------------------------------------------------------------------------


async def test_loop_breaker_fires_on_the_same_call_repeated(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits=limits(consecutive_threshold=4))
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=[("bash", {"command": "echo same"})] * 10).model())
        task = await rt.launch("loop", model="m")
        done = await rt.wait(task.id, timeout=20)
    assert done.status == "cancelled" and done.end_reason == "circuit_breaker"
    assert "bash" in (done.error or "") and "4 times" in (done.error or "")
    assert done.progress.tool_calls == 3  # the fourth identical call never ran


async def test_loop_breaker_ignores_varied_calls_of_one_tool(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits=limits(consecutive_threshold=3))
    steps = [("bash", {"command": f"echo {i}"}) for i in range(6)]
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=steps).model())
        done = await rt.wait((await rt.launch("varied", model="m")).id, timeout=20)
    assert done.status == "completed", done.error
    assert done.progress.tool_calls == 6


async def test_loop_breaker_total_tool_calls(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits=limits(max_tool_calls=3))
    steps = [("todoread", {}), ("bash", {"command": "true"})] * 4
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=steps).model())
        done = await rt.wait((await rt.launch("many", model="m")).id, timeout=20)
    assert done.end_reason == "circuit_breaker" and "4 tool calls in all" in (done.error or "")


# -- budgets --------------------------------------------------------------------------------------------------


async def test_budgets_fail_the_task_with_the_figure(runtime: Runtime) -> None:
    runtime.register_model("m", Script(steps=[("todoread", {})] * 5).model())
    by_requests = await runtime.launch("x", model="m", limits={"requests": 2})
    done = await runtime.wait(by_requests.id, timeout=20)
    assert done.status == "failed" and done.end_reason == "budget"
    assert "request_limit" in (done.error or "") and "2" in (done.error or "")
    by_calls = await runtime.launch("y", model="m", limits={"tool_calls": 1})
    done = await runtime.wait(by_calls.id, timeout=20)
    assert done.end_reason == "budget" and "tool_calls" in (done.error or "")
    by_tokens = await runtime.launch("z", model="m", limits={"total_tokens": 10})
    assert (await runtime.wait(by_tokens.id, timeout=20)).end_reason == "budget"
    assert await runtime.running_counts() == {}


async def test_cost_budget(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    import bgagents.core.progress as progress

    monkeypatch.setattr(progress, "_cost", lambda response: 0.02)
    runtime.register_model("m", Script(steps=[("todoread", {})] * 5).model())
    done = await runtime.wait((await runtime.launch("x", model="m", limits={"cost_usd": 0.05})).id, timeout=20)
    assert done.end_reason == "budget" and "cost_usd 0.06" in (done.error or "")


async def test_profile_limits_apply(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agents={"tight": ProfileSettings(limits={"requests": 1})})
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=[("todoread", {})]).model())
        task = await rt.launch("x", model="m", agent="tight")
        assert task.limits == {"requests": 1}
        assert (await rt.wait(task.id, timeout=20)).end_reason == "budget"


# -- fallback models ------------------------------------------------------------------------------------------


def failing(status: int, body: dict[str, Any] | None = None, calls: list[int] | None = None) -> FunctionModel:
    async def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if calls is not None:
            calls.append(1)
        raise ModelHTTPError(status, "primary", body or {"error": {"type": "rate_limit_error"}})

    return FunctionModel(fn, model_name="primary")


async def test_transient_errors_retry_then_fall_back(tmp_path: Path) -> None:
    calls: list[int] = []
    settings = make_settings(tmp_path, limits=limits(retries=2))
    async with Runtime(settings) as rt:
        rt.register_model("primary", failing(429, calls=calls))
        backup = Script(steps=[("todoread", {})], answer="from backup")
        rt.register_model("backup", backup.model("backup"))
        task = await rt.launch("x", model="primary", fallback_models=["backup"])
        done = await rt.wait(task.id, timeout=20)
        events = [e.type async for e in _until_done(rt, task.id)]
    assert done.status == "completed" and done.result and done.result.text == "from backup"
    assert len(calls) == 3  # one try and two retries on the same model
    assert [a.model for a in done.attempts] == ["primary", "backup"]
    assert done.attempts[0].error and "429" in done.attempts[0].error and "rate_limit_error" in done.attempts[0].error
    assert done.attempts[1].error is None and done.model == "backup"
    assert "task.model_switched" in events


async def _until_done(rt: Runtime, task_id: str) -> AsyncIterator[Any]:
    async for event in rt.events(task_id=task_id):
        yield event
        if event.type in ("task.completed", "task.failed", "task.cancelled"):
            return


async def test_permanent_errors_fail_at_once(runtime: Runtime) -> None:
    calls: list[int] = []
    runtime.register_model("primary", failing(400, {"error": {"code": "context_length_exceeded"}}, calls))
    runtime.register_model("backup", Script().model("backup"))
    task = await runtime.launch("x", model="primary", fallback_models=["backup"])
    done = await runtime.wait(task.id, timeout=20)
    assert done.status == "failed" and done.end_reason == "model_error"
    assert "HTTP 400" in (done.error or "") and "context_length_exceeded" in (done.error or "")
    assert len(calls) == 1 and [a.model for a in done.attempts] == ["primary"]


async def test_fallback_tells_the_parent(runtime: Runtime) -> None:
    gate = asyncio.Event()

    async def parent_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("parent done")])

    runtime.register_model("parent", FunctionModel(parent_model, model_name="parent"))
    runtime.register_model("primary", failing(503))
    runtime.register_model("backup", Script().model("backup"))
    parent = await runtime.launch("parent", model="parent")
    child = await runtime.launch("child", model="primary", fallback_models=["backup"], parent_id=parent.id)
    assert (await runtime.wait(child.id, timeout=20)).status == "completed"
    gate.set()
    await runtime.wait(parent.id, timeout=20)
    rows = await runtime.store.message_rows(parent.id)
    texts = " ".join(str(r["message"]) for r in rows)
    assert "switched from primary to backup" in texts


async def test_model_override_kept_on_resume_fork_and_after_fallback(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agents={"p": ProfileSettings(model="profile-model")},
                             limits=limits(retries=0))
    async with Runtime(settings) as rt:
        profile_model, override = Script(), Script(answer="from override")
        rt.register_model("profile-model", profile_model.model("profile-model"))
        rt.register_model("override", override.model("override"))
        task = await rt.launch("x", agent="p", model="override")
        await rt.wait(task.id, timeout=20)
        await rt.resume(task.id, "again")
        assert (await rt.wait(task.id, timeout=20)).model == "override"
        forked = await rt.fork(task.id, "a fork")
        assert (await rt.wait(forked.id, timeout=20)).model == "override"
        assert len(override.calls) == 3 and profile_model.calls == []
        # after a fallback the task goes on with the model that works, also when resumed
        calls: list[int] = []
        rt.register_model("primary", failing(503, calls=calls))
        backup = Script(answer="from backup")
        rt.register_model("backup", backup.model("backup"))
        fell = await rt.launch("y", agent="p", model="primary", fallback_models=["backup"])
        await rt.wait(fell.id, timeout=20)
        await rt.resume(fell.id, "again")
        done = await rt.wait(fell.id, timeout=20)
    assert done.status == "completed" and done.model == "backup"
    assert len(calls) == 1 and len(backup.calls) == 2 and profile_model.calls == []


def test_classification() -> None:
    rate = classify(ModelHTTPError(429, "m", {"error": {"type": "rate_limit_error"}}), "m")
    assert rate.transient and rate.status == 429 and rate.provider_kind == "rate_limit_error"
    quota = classify(ModelHTTPError(429, "m", {"error": {"code": "insufficient_quota"}}), "m")
    assert quota.status == 429
    assert not classify(ModelHTTPError(401, "m", {}), "m").transient
    assert not classify(ModelHTTPError(404, "m", {"error": {"code": "model_not_found"}}), "m").transient
    assert classify(ModelHTTPError(500, "m", {}), "m").transient
    assert classify(ModelHTTPError(529, "m", {}), "m").transient
    assert classify(ConnectionError("reset"), "m").transient
    # (the shapes of a cut stream and an unreadable body, old and new: tests/test_cut_streams.py)


# -- a fake provider over HTTP: every task ends clearly, its slot back -----------------------------------------


async def test_fake_provider_failures_end_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI() as fake:
        for key, value in env_for(fake.base_url).items():
            monkeypatch.setenv(key, value)
        # (the OpenAI SDK retries a 500 itself, with backoff, inside one of our attempts)
        settings = make_settings(tmp_path, limits=limits(retries=1, stale_timeout=3))
        async with Runtime(settings) as rt:
            flaky = await rt.launch("x", model="openai-chat:flaky-429-1")
            broken = await rt.launch("x", model="openai-chat:error-500")
            hung = await rt.launch("x", model="openai-chat:hang")
            garbage = await rt.launch("x", model="openai-chat:malformed")
            unknown = await rt.launch("x", model="openai-chat:no-such-model")
            results = {name: await rt.wait(t.id, timeout=60) for name, t in
                       [("flaky", flaky), ("broken", broken), ("hung", hung), ("garbage", garbage),
                        ("unknown", unknown)]}
            assert await rt.running_counts() == {}
    assert results["flaky"].status == "completed"
    assert results["broken"].status == "failed" and results["broken"].end_reason == "model_error"
    assert "500" in (results["broken"].error or "")
    assert results["hung"].end_reason == "stale" and "no activity" in (results["hung"].error or "")
    assert fake.count("hang") == 2  # aborted, tried once more, then stale
    assert results["garbage"].status == "failed" and results["garbage"].error
    assert results["unknown"].end_reason == "model_error" and "404" in (results["unknown"].error or "")


async def test_a_cut_off_or_unreadable_answer_is_never_a_result(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream cut mid-answer (no finish_reason, no [DONE]), a connection dropped mid-stream and a body
    that is not JSON are transient: retried, then the fallback model, then `failed` with a classified error."""
    with FakeOpenAI() as fake:
        for key, value in env_for(fake.base_url).items():
            monkeypatch.setenv(key, value)
        async with Runtime(make_settings(tmp_path, limits=limits(retries=1))) as rt:
            retried = {mode: await rt.launch(f"retried {mode}", model=f"openai-chat:cut-1-{mode}")
                       for mode in ("nofinish", "drop", "nonjson")}
            fell_back = await rt.launch("fell back", model="openai-chat:cut-99-nofinish",
                                        fallback_models=["openai-chat:echo"])
            failed = {mode: await rt.launch(f"failed {mode}", model=f"openai-chat:cut-99-{mode}")
                      for mode in ("nofinish", "nonjson")}
            ends = {t.id: await rt.wait(t.id, timeout=60) for t in [*retried.values(), fell_back, *failed.values()]}
    for mode, task in retried.items():
        done = ends[task.id]
        assert (done.status, done.result and done.result.text) == ("completed", f"echo: retried {mode}"), done
        assert fake.count(f"cut-1-{mode}") == 2 and [a.model for a in done.attempts] == [task.model]
    done = ends[fell_back.id]
    assert (done.status, done.result and done.result.text) == ("completed", "echo: fell back")
    assert [a.model for a in done.attempts] == ["openai-chat:cut-99-nofinish", "openai-chat:echo"]
    assert "cut_off_response" in (done.attempts[0].error or "") and fake.count("cut-99-nofinish") >= 2
    for mode, kind in (("nofinish", "cut_off_response"), ("nonjson", "malformed_response")):
        done = ends[failed[mode].id]
        assert (done.status, done.end_reason, done.result) == ("failed", "model_error", None), done
        assert kind in (done.error or ""), done.error
    assert "finish_reason" in (ends[failed["nofinish"].id].error or "")


async def test_slow_but_active_stream_is_not_stale(tmp_path: Path) -> None:
    async def stream(messages: list[ModelMessage], info: AgentInfo) -> AsyncIterator[str | DeltaToolCalls]:
        for word in ["slow ", "but ", "steady ", "wins"]:
            await asyncio.sleep(0.25)
            yield word

    settings = make_settings(tmp_path, limits=limits(stale_timeout=0.7))
    async with Runtime(settings) as rt:
        rt.register_model("m", FunctionModel(stream_function=stream, model_name="m"))
        done = await rt.wait((await rt.launch("x", model="m")).id, timeout=20)
    assert done.status == "completed" and done.result and done.result.text == "slow but steady wins"
    assert done.progress.last_message == "slow but steady wins"


# -- stale queue, runtime limit, early errors --------------------------------------------------------------------


async def test_queue_ttl_and_max_runtime(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def blocking(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("ok")])

    settings = make_settings(tmp_path, concurrency=ConcurrencySettings(default=1), limits=limits(max_runtime=1.0))
    async with Runtime(settings) as rt:
        rt.register_model("m", FunctionModel(blocking, model_name="m"))
        first = await rt.launch("first", model="m")
        await started(rt, first.id)
        rt.settings.limits.queue_ttl = 0.2  # only now: a slow machine must not expire the first one
        waiting = await rt.launch("second", model="m")
        expired = await rt.wait(waiting.id, timeout=10)
        assert expired.status == "failed" and expired.end_reason == "queue_ttl"
        timed_out = await rt.wait(first.id, timeout=10)
        assert timed_out.status == "failed" and timed_out.end_reason == "max_runtime"
        gate.set()
        assert await rt.running_counts() == {}
        rt.settings.limits.max_runtime = rt.settings.limits.queue_ttl = None
        after = await rt.launch("after", model="m")
        assert (await rt.wait(after.id, timeout=10)).status == "completed"


async def test_error_before_start_gives_the_slot_back(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def blocking(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("ok")])

    settings = make_settings(tmp_path, concurrency=ConcurrencySettings(default=1))
    async with Runtime(settings) as rt:
        rt.register_model("m", FunctionModel(blocking, model_name="m"))
        first = await rt.launch("first", model="m")
        await started(rt, first.id)
        doomed = await rt.launch("doomed", model="m", agent="explore")
        rt.profiles().pop("explore")  # its profile is gone by the time it starts
        gate.set()
        failed = await rt.wait(doomed.id, timeout=10)
        assert failed.status == "failed" and "unknown agent" in (failed.error or "")
        assert await rt.running_counts() == {}


async def test_fast_task_and_cancel_racing_completion(runtime: Runtime) -> None:
    runtime.register_model("m", Script().model())
    task = await runtime.launch("quick", model="m")
    done = await runtime.wait(task.id, timeout=10)
    types = [e.type async for e in _until_done(runtime, task.id)]
    assert types[0] == "task.queued" and types[-1] == "task.completed" and done.progress.requests == 1
    from bgagents import Conflict

    with pytest.raises(Conflict):
        await runtime.cancel(task.id)
    many = [await runtime.launch(f"q{i}", model="m") for i in range(6)]
    for t in many:  # cancel while each may be finishing: never a leaked or doubled slot
        with contextlib.suppress(Conflict):  # it may have finished first, which is the race under test
            await runtime.cancel(t.id)
    for t in many:
        assert (await runtime.wait(t.id, timeout=10)).finished
    await asyncio.sleep(0.1)
    assert await runtime.running_counts() == {}


# -- agents that launch agents, and notifications ------------------------------------------------------------------


def spawning_parent(children: list[str], then: str = "wait") -> FunctionModel:
    """A parent that starts `children` (prompts) one by one, then waits for its notice or reads outputs."""

    async def fn(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        done = tool_returns(messages)
        if done < len(children):
            return ModelResponse(parts=[ToolCallPart("background_task", {"prompt": children[done], "model": "child"},
                                                     tool_call_id=f"spawn{done}")])
        texts = user_texts(messages)
        notices = [t for t in texts if "<background-tasks>" in t]
        if then == "wait" and not notices:
            return ModelResponse(parts=[ToolCallPart("bash", {"command": "sleep 0.05"}, tool_call_id=f"w{done}")])
        return ModelResponse(parts=[TextPart("parent saw: " + " | ".join(notices))])

    return FunctionModel(fn, model_name="parent")


async def test_nested_agents_and_one_summary_notice(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits=limits(consecutive_threshold=1000))
    async with Runtime(settings) as rt:
        rt.register_model("parent", spawning_parent(["child one", "child two"]))
        rt.register_model("child", Script(answer="child result", delay=0.05).model("child"))
        parent = await rt.launch("lead", model="parent")
        done = await rt.wait(parent.id, timeout=30)
        children = await rt.list(parent_id=parent.id)
    assert done.status == "completed", done.error
    assert len(children) == 2 and all(c.parent_id == parent.id and c.depth == 1 for c in children)
    text = done.result.text if done.result else ""
    assert text.count("<background-tasks>") == 1  # one summary for both, not one per child
    assert all(c.id in text for c in children) and "completed" in text


async def test_spawn_limits_are_clear_tool_errors(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, spawn=SpawnSettings(max_depth=1, max_descendants=2))
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(answer="ok").model())
        root = await rt.launch("root", model="m")
        child = await rt.launch("child", model="m", parent_id=root.id)
        from bgagents import InvalidInput

        with pytest.raises(InvalidInput, match="max_depth 1"):
            await rt.launch("grandchild", model="m", parent_id=child.id)
        await rt.launch("child 2", model="m", parent_id=root.id)
        with pytest.raises(InvalidInput, match="max_descendants 2"):
            await rt.launch("child 3", model="m", parent_id=root.id)
        # through the tool, the model sees the error and can go on
        rt.register_model("deep", spawning_parent(["too deep"], then="answer"))
        rt.register_model("child", Script(answer="never runs").model("child"))
        rt.settings.spawn.max_descendants = 50
        deep = await rt.launch("deep", model="deep", parent_id=root.id)
        done = await rt.wait(deep.id, timeout=20)
        assert done.status == "completed"
        entries = await rt.transcript(deep.id)
        assert any("max_depth" in e.content for e in entries if e.role in ("tool_result", "retry"))


async def test_notice_exactly_once_and_early_on_failure(runtime: Runtime) -> None:
    gate = asyncio.Event()

    async def slow(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("slow ok")])

    async def boom(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        raise RuntimeError("child failed")

    runtime.register_model("parent", Script(answer="p").model("parent"))
    runtime.register_model("slow", FunctionModel(slow, model_name="slow"))
    runtime.register_model("boom", FunctionModel(boom, model_name="boom"))
    parent = await runtime.launch("parent", model="parent")
    await runtime.wait(parent.id, timeout=10)
    a = await runtime.launch("a", model="slow", parent_id=parent.id)
    b = await runtime.launch("b", model="boom", parent_id=parent.id)
    await runtime.wait(b.id, timeout=10)
    rows = runtime.store.claim_steering_sync(parent.id)
    assert len(rows) == 1 and b.id in rows[0] and "failed" in rows[0] and "still running" in rows[0]
    gate.set()
    await runtime.wait(a.id, timeout=10)
    rows = runtime.store.claim_steering_sync(parent.id)
    assert len(rows) == 1 and a.id in rows[0] and b.id not in rows[0]
    # a finished parent gets waiting notices when resumed; a second end of a child never notifies twice
    runtime.store.update_task_sync(a.id, {"status": "completed"}, None)
    assert runtime.store.claim_steering_sync(parent.id) == []


async def test_restart_with_a_notice_pending_delivers_it_once(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    parent_model = Script(answer="parent")
    async with Runtime(settings) as rt:
        rt.register_model("m", parent_model.model())
        parent = await rt.launch("parent", model="m")
        await rt.wait(parent.id, timeout=10)
        child = await rt.launch("child", model="m", parent_id=parent.id)
        await rt.wait(child.id, timeout=10)  # the parent has ended: the notice waits for its next turn
    async with Runtime(settings) as rt:
        rt.register_model("m", parent_model.model())
        await rt.resume(parent.id, "what happened?")
        await rt.wait(parent.id, timeout=10)
        await rt.resume(parent.id, "and now?")
        await rt.wait(parent.id, timeout=10)
    seen = [t for call in parent_model.calls for t in user_texts(call) if "<background-tasks>" in t]
    assert len(set(seen)) == 1 and child.id in seen[0]
    last_turn = user_texts(parent_model.calls[-1])
    assert sum("<background-tasks>" in t for t in last_turn) == 1  # kept in history, never sent twice


# -- approvals -----------------------------------------------------------------------------------------------------


async def test_approvals_approve_deny_and_timeout(tmp_path: Path) -> None:
    profile = ProfileSettings(permissions={"bash": {"echo safe*": "allow", "*": "ask"}, "write": "deny"})
    settings = make_settings(tmp_path, agents={"careful": profile}, limits=limits(approval_timeout=30))
    steps = [("bash", {"command": "echo safe"}), ("bash", {"command": "touch approved.txt"}),
             ("bash", {"command": "touch denied.txt"}), ("write", {"path": "w.txt", "content": "x"}),
             ("bash", {"command": "touch timeout.txt"})]
    async with Runtime(settings) as rt:
        rt.register_model("m", Script(steps=steps).model())
        task = await rt.launch("careful work", model="m", agent="careful")
        ws = rt.settings.workspace_path
        for decision in ("approve", "deny"):
            while not (pending := await rt.approvals()):
                await asyncio.sleep(0.01)
            assert (await rt.get(task.id)).status == "waiting"
            assert pending[0].tool == "bash" and "matches" in pending[0].reason
            if decision == "deny":  # the asks still to come time out fast; the ones we answer never race it
                rt.settings.limits.approval_timeout = 0.3
            decided = await rt.decide(pending[0].id, decision, reason="checked")
            assert decided.status == ("approved" if decision == "approve" else "denied")
            from bgagents import Conflict

            with pytest.raises(Conflict):
                await rt.decide(pending[0].id, "approve")
        done = await rt.wait(task.id, timeout=20)
        every = await rt.approvals(None)
    assert done.status == "completed", done.error
    assert (ws / "approved.txt").exists() and not (ws / "denied.txt").exists()
    assert not (ws / "w.txt").exists() and not (ws / "timeout.txt").exists()
    assert [a.status for a in every] == ["approved", "denied", "denied"]
    assert "no answer within" in (every[-1].decision_reason or "")


async def test_a_stop_while_an_approval_waits_is_immediate_and_the_next_start_asks_again(tmp_path: Path) -> None:
    """No step is in flight while a turn waits for a person: a stop ends it at once (not after the drain's
    grace), and after the restart the same approval is still the one to decide; nothing runs twice."""
    settings = make_settings(tmp_path, agents={"careful": ProfileSettings(permissions={"bash": "ask"})})
    script = Script(steps=[("bash", {"command": "touch approved.txt"})])
    rt = Runtime(settings)
    rt.register_model("m", script.model())
    await rt.start()
    task = await rt.launch("careful work", model="m", agent="careful")
    while not (pending := await rt.approvals()):
        await asyncio.sleep(0.01)
    started = asyncio.get_running_loop().time()
    await rt.stop(grace=30)
    assert asyncio.get_running_loop().time() - started < 5
    again = Runtime(settings)
    again.register_model("m", script.model())
    async with again:
        while not (still := await again.approvals()):
            await asyncio.sleep(0.01)
        assert [a.id for a in still] == [pending[0].id]
        await again.decide(still[0].id, "approve")
        done = await again.wait(task.id, timeout=20)
    assert done.status == "completed", done.error
    assert (settings.workspace_path / "approved.txt").exists()
    assert len(script.calls) == 2  # the request that asked for the call, then the answer after it: none again


# -- completion checks and retention -------------------------------------------------------------------------------


async def test_completion_checks(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, limits=limits(completion_nudges=2))
    open_todo = Script(steps=[("todowrite", {"todos": [{"content": "finish", "status": "in_progress"}]})],
                       answer="stopping early")
    silent = Script(answer="")
    async with Runtime(settings) as rt:
        rt.register_model("todo", open_todo.model("todo"))
        rt.register_model("silent", silent.model("silent"))
        t1 = await rt.wait((await rt.launch("a", model="todo")).id, timeout=20)
        t2 = await rt.wait((await rt.launch("b", model="silent")).id, timeout=20)
    assert t1.status == "completed" and len(open_todo.calls) == 4  # the turn, then two nudges
    assert "todos still open: finish" in user_texts(open_todo.calls[2])[-1]
    # a turn with no output is asked once for its result (pydantic-ai's own retry prompt), then ends clearly
    assert len(silent.calls) == 2 and "return text" in user_texts(silent.calls[1])[-1]
    assert t2.status == "failed" and "no usable output" in (t2.error or "")


async def test_retention_keeps_what_an_active_parent_refers_to(runtime: Runtime) -> None:
    gate = asyncio.Event()

    async def waiting(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        await gate.wait()
        return ModelResponse(parts=[TextPart("ok")])

    runtime.register_model("m", Script().model())
    runtime.register_model("wait", FunctionModel(waiting, model_name="wait"))
    old = await runtime.launch("old", model="m")
    parent = await runtime.launch("parent", model="wait")
    kept = await runtime.launch("kept", model="m", parent_id=parent.id)
    for t in (old, kept):
        await runtime.wait(t.id, timeout=10)
    removed = await runtime.prune(runtime.clock() + 1)
    assert removed == 1
    assert not await runtime.engine.workflow_exists(old.id, 1)  # its DBOS workflow went with it
    assert await runtime.engine.workflow_exists(kept.id, 1)
    assert {t.id for t in await runtime.list()} == {parent.id, kept.id}
    assert await runtime.transcript(kept.id)
    gate.set()
    await runtime.wait(parent.id, timeout=10)
