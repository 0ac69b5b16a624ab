"""The Managed Agents API, driven by the official `anthropic` SDK against a real `bgagents serve` process
whose models are the scripted fake servers (an OpenAI-compatible one and an Anthropic one)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from .conftest import ROOT, ServerProcess, free_port
from .fake_anthropic import FakeAnthropic, Steps, tool
from .fake_openai import FakeOpenAI, env_for

TOOLSET = {"type": "agent_toolset_20260401"}
ASK_BASH = {"type": "agent_toolset_20260401",
            "configs": [{"name": "bash", "permission_policy": {"type": "always_ask"}}]}


def _server(home: Path, **env: str) -> ServerProcess:
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
    full.update({"BGAGENTS_HOME": str(home), "BGAGENTS_TOKEN": "test-token", "BGAGENTS_URL": f"http://127.0.0.1:{port}",
                 "PYTHONPATH": str(ROOT), **env})
    return ServerProcess(home=home, env=full, port=port)


def _client(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=server.token, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeAnthropic]]:
    script = Steps(steps=[tool("bash", command="echo from-claude")], answer="claude is done")
    with FakeOpenAI() as openai_fake, FakeAnthropic(script) as anthropic_fake:
        yield openai_fake, anthropic_fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           fakes: tuple[FakeOpenAI, FakeAnthropic]) -> Iterator[ServerProcess]:
    openai_fake, anthropic_fake = fakes
    proc = _server(tmp_path_factory.mktemp("managed") / "home", **env_for(openai_fake.base_url),
                   ANTHROPIC_BASE_URL=anthropic_fake.url, ANTHROPIC_API_KEY="test-key",
                   BGAGENTS_LIMITS__RETRY_BACKOFF="0.05")
    proc.start()
    yield proc
    proc.stop()


def _session(client: anthropic.Anthropic, model: str, tools: list[dict[str, Any]] | None = None) -> str:
    agent = client.beta.agents.create(name="tester", model=model, tools=tools or [TOOLSET], system="Be brief.")
    environment = client.beta.environments.create(name="here")
    return client.beta.sessions.create(agent=agent.id, environment_id=environment.id, title="a test").id


def _message(text: str) -> dict[str, Any]:
    return {"type": "user.message", "content": [{"type": "text", "text": text}]}


def _until_idle(stream: Any, seen: list[Any]) -> Any:
    for event in stream:
        seen.append(event)
        if event.type == "session.status_idle":
            return event
    raise AssertionError(f"the stream ended before the session went idle: {[e.type for e in seen]}")


def _until_tool_uses(stream: Any, seen: list[Any], count: int) -> None:
    for event in stream:
        seen.append(event)
        if len([e for e in seen if e.type == "agent.tool_use"]) == count:
            return


def test_a_turn_with_tool_use_streams_to_end_turn_and_lists_the_same_events(server: ServerProcess) -> None:
    client = _client(server)
    session_id = _session(client, "openai-chat:steps-2")
    seen: list[Any] = []
    with client.beta.sessions.events.stream(session_id) as stream:
        sent = client.beta.sessions.events.send(session_id, events=[_message("go tag=full")])
        idle = _until_idle(stream, seen)
    assert idle.stop_reason.type == "end_turn"
    types = [e.type for e in seen]
    assert types[:2] == ["user.message", "session.status_running"]
    assert sent.data is not None and sent.data[0].id == seen[0].id
    uses = [e for e in seen if e.type == "agent.tool_use"]
    results = [e for e in seen if e.type == "agent.tool_result"]
    assert [u.name for u in uses] == ["bash", "bash"] and all(u.evaluated_permission == "allow" for u in uses)
    assert [r.tool_use_id for r in results] == [u.id for u in uses]
    assert "full-step-1" in uses[0].input["command"]
    messages = [e for e in seen if e.type == "agent.message"]
    assert messages[-1].content[0].text == "done after 2 steps"
    ends = [e for e in seen if e.type == "span.model_request_end"]
    starts = [e.id for e in seen if e.type == "span.model_request_start"]
    assert len(ends) == 3 and [e.model_request_start_id for e in ends] == starts
    listed = list(client.beta.sessions.events.list(session_id, limit=4))  # pages of 4, as the SDK pages
    assert [e.id for e in listed] == [e.id for e in seen]
    only = list(client.beta.sessions.events.list(session_id, types=["agent.tool_use"]))
    assert [e.id for e in only] == [u.id for u in uses]
    newest = client.beta.sessions.events.list(session_id, order="desc", limit=1)
    assert newest.data[0].id == idle.id
    session = client.beta.sessions.retrieve(session_id)
    assert session.status == "idle" and session.usage.input_tokens and session.title == "a test"
    # a second message resumes the same session: its task's next turn
    with client.beta.sessions.events.stream(session_id) as stream:
        client.beta.sessions.events.send(session_id, events=[_message("and again")])
        again: list[Any] = []
        assert _until_idle(stream, again).stop_reason.type == "end_turn"
    assert again[0].type == "user.message" and again[0].content[0].text == "and again"
    assert server.client().get(f"/tasks/bg_{session_id.removeprefix('sesn_')}").json()["turn"] == 2


def test_always_ask_pauses_for_a_confirmation_allowed_then_one_denied(server: ServerProcess) -> None:
    client = _client(server)
    for result, expected in (("allow", "confirmed-run"), ("deny", "not today")):
        session_id = _session(client, "openai-chat:run", [ASK_BASH])
        seen: list[Any] = []
        with client.beta.sessions.events.stream(session_id) as stream:
            client.beta.sessions.events.send(session_id, events=[_message("run: echo confirmed-run")])
            idle = _until_idle(stream, seen)
            assert idle.stop_reason.type == "requires_action"
            use = next(e for e in seen if e.type == "agent.tool_use")
            assert idle.stop_reason.event_ids == [use.id]
            assert use.evaluated_permission == "ask" and use.evaluation.type == "always_ask"
            assert client.beta.sessions.retrieve(session_id).status == "idle"
            confirmation: dict[str, Any] = {"type": "user.tool_confirmation", "tool_use_id": use.id, "result": result}
            if result == "deny":
                confirmation["deny_message"] = "not today"
            client.beta.sessions.events.send(session_id, events=[confirmation])
            after: list[Any] = []
            assert _until_idle(stream, after).stop_reason.type == "end_turn"
        assert after[0].type == "user.tool_confirmation" and after[0].result == result
        assert after[1].type == "session.status_running"
        tool_result = next(e for e in after if e.type == "agent.tool_result")
        assert tool_result.tool_use_id == use.id and expected in tool_result.content[0].text
        with pytest.raises(anthropic.NotFoundError):  # decided already: nothing waits under that id
            client.beta.sessions.events.send(session_id, events=[confirmation])


def test_an_interrupt_stops_the_turn_and_the_session_goes_on(server: ServerProcess) -> None:
    client = _client(server)
    session_id = _session(client, "openai-chat:steps-20-delay-300")
    seen: list[Any] = []
    with client.beta.sessions.events.stream(session_id) as stream:
        client.beta.sessions.events.send(session_id, events=[_message("long tag=int")])
        _until_tool_uses(stream, seen, 1)
        client.beta.sessions.events.send(session_id, events=[{"type": "user.interrupt"}])
        idle = _until_idle(stream, seen)
    assert idle.stop_reason.type == "end_turn" and "user.interrupt" in [e.type for e in seen]
    assert not [e for e in seen if e.type == "agent.message" and "done after" in e.content[0].text]
    task = server.client().get(f"/tasks/bg_{session_id.removeprefix('sesn_')}").json()
    assert task["status"] == "cancelled"
    assert client.beta.sessions.retrieve(session_id).status == "idle"


def test_a_429_is_a_rate_limited_error_then_a_reschedule_and_the_turn_goes_on(server: ServerProcess) -> None:
    client = _client(server)
    session_id = _session(client, "openai-chat:flaky-429-3")  # the OpenAI SDK tries twice more by itself
    seen: list[Any] = []
    with client.beta.sessions.events.stream(session_id) as stream:
        client.beta.sessions.events.send(session_id, events=[_message("limited")])
        assert _until_idle(stream, seen).stop_reason.type == "end_turn"
    error = next(e for e in seen if e.type == "session.error")
    assert error.error.type == "model_rate_limited_error" and error.error.retry_status.type == "retrying"
    assert seen[seen.index(error) + 1].type == "session.status_rescheduled"
    assert [e for e in seen if e.type == "agent.message"][-1].content[0].text == "echo: limited"


def test_sessions_on_an_anthropic_model_and_on_an_openai_compatible_one(server: ServerProcess) -> None:
    client = _client(server)
    for model, answer in (("anthropic:claude-sonnet-4-5", "claude is done"), ("openai-chat:echo", "echo: hello")):
        session_id = _session(client, model)
        seen: list[Any] = []
        with client.beta.sessions.events.stream(session_id) as stream:
            client.beta.sessions.events.send(session_id, events=[_message("hello")])
            assert _until_idle(stream, seen).stop_reason.type == "end_turn"
        assert [e for e in seen if e.type == "agent.message"][-1].content[0].text == answer
    uses = [e for e in client.beta.sessions.events.list(
        client.beta.sessions.list(limit=2).data[1].id) if e.type == "agent.tool_result"]
    assert "from-claude" in uses[0].content[0].text  # the Anthropic session ran its bash call


def test_what_is_not_served_says_so_in_the_api_error_shape(server: ServerProcess) -> None:
    client = _client(server)
    for call in (client.beta.vaults.list, client.beta.memory_stores.list, client.beta.skills.list,
                 client.beta.files.list, client.beta.deployments.list):
        with pytest.raises(anthropic.NotFoundError) as caught:
            call()
        assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
        assert "not served by bgagents" in caught.value.message
    session_id = _session(client, "openai-chat:echo")
    with pytest.raises(anthropic.NotFoundError, match="session resources"):
        client.beta.sessions.resources.list(session_id)
    with pytest.raises(anthropic.NotFoundError, match="no agent 'agent_nope'"):
        client.beta.agents.retrieve("agent_nope")
    with pytest.raises(anthropic.BadRequestError, match="custom tools") as bad:
        client.beta.agents.create(name="x", model="demo", tools=[{"type": "custom", "name": "f", "description": "d",
                                                                   "input_schema": {"type": "object"}}])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="cannot be used"):
        client.beta.agents.create(name="x", model="nosuchprovider:model")
    with pytest.raises(anthropic.BadRequestError, match="tool_use_id"):
        client.beta.sessions.events.send(session_id, events=[
            {"type": "user.tool_confirmation", "tool_use_id": "sevt_1_0", "result": "allow"}])
    with pytest.raises(anthropic.BadRequestError, match="outcomes"):
        client.beta.sessions.events.send(session_id, events=[
            {"type": "user.define_outcome", "description": "d", "rubric": {"type": "text", "content": "c"}}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0).beta.agents.list()
    assert client.beta.sessions.threads.list(session_id).data == []


def test_agents_and_environments_version_page_and_archive(server: ServerProcess) -> None:
    client = _client(server)
    agent = client.beta.agents.create(name="v", model="demo", tools=[ASK_BASH], metadata={"team": "a"})
    assert agent.version == 1 and agent.tools[0].configs[0].permission_policy.type == "always_ask"
    updated = client.beta.agents.update(agent.id, version=1, system="new prompt", metadata={"team": None, "k": "v"})
    assert updated.version == 2 and updated.system == "new prompt" and updated.metadata == {"k": "v"}
    assert client.beta.agents.update(agent.id, system="new prompt").version == 2  # no change, no version
    assert client.beta.agents.retrieve(agent.id, version=1).system is None
    with pytest.raises(anthropic.BadRequestError, match="current version"):
        client.beta.agents.update(agent.id, version=1, name="stale")
    assert [v.version for v in client.beta.agents.versions.list(agent.id)] == [2, 1]
    made = [client.beta.agents.create(name=f"p{i}", model="demo").id for i in range(3)]
    listed = [a.id for a in client.beta.agents.list(limit=2)]  # every page, two at a time
    assert set(made) <= set(listed) and len(listed) == len(set(listed))
    client.beta.agents.archive(made[0])
    assert made[0] not in [a.id for a in client.beta.agents.list()]
    assert made[0] in [a.id for a in client.beta.agents.list(include_archived=True)]
    with pytest.raises(anthropic.BadRequestError, match="archived"):
        client.beta.sessions.create(agent=made[0], environment_id=client.beta.environments.create(name="e").id)
    env = client.beta.environments.create(name="offline", config={"type": "cloud",
                                                                  "networking": {"type": "limited"}})
    assert env.config.networking.type == "limited"  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError, match="allowed hosts"):
        client.beta.environments.create(name="x", config={"type": "cloud", "networking": {
            "type": "limited", "allowed_hosts": ["example.com"]}})
    renamed = client.beta.environments.update(env.id, name="renamed")
    assert renamed.name == "renamed" and renamed.config.networking.type == "limited"  # type: ignore[union-attr]
    pinned = client.beta.sessions.create(agent={"type": "agent", "id": agent.id, "version": 1},
                                         environment_id=env.id, metadata={"m": "1"})
    assert pinned.agent.version == 1 and pinned.status == "idle" and pinned.metadata == {"m": "1"}
    with pytest.raises(anthropic.ConflictError, match="used by session"):  # 409, not retried by the SDK
        client.beta.environments.delete(env.id)
    assert client.beta.sessions.update(pinned.id, title="t2").title == "t2"
    assert client.beta.sessions.archive(pinned.id).archived_at is not None
    assert pinned.id not in [s.id for s in client.beta.sessions.list(agent_id=agent.id)]
    assert client.beta.sessions.delete(pinned.id).type == "session_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.beta.sessions.retrieve(pinned.id)
    assert client.beta.environments.delete(env.id).type == "environment_deleted"


def test_a_stream_cut_by_kill_9_is_resumed_with_no_event_lost_or_repeated(
        tmp_path: Path, fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    proc = _server(tmp_path / "home", **env_for(fakes[0].base_url))
    proc.start()
    try:
        client = _client(proc)
        session_id = _session(client, "openai-chat:steps-4-delay-300")
        got: list[Any] = []
        with client.beta.sessions.events.stream(session_id) as stream:
            client.beta.sessions.events.send(session_id, events=[_message("durable tag=k9")])
            _until_tool_uses(stream, got, 2)
            proc.kill9()
            with pytest.raises(anthropic.APIConnectionError):  # the stream is cut
                for event in stream:
                    got.append(event)
        proc.start()
        client = _client(proc)
        # reconnect as the API says: open the stream, then list what was stored, skipping what was seen
        seen = {e.id for e in got}
        with client.beta.sessions.events.stream(session_id) as stream:
            for event in client.beta.sessions.events.list(session_id):
                if event.id not in seen:
                    seen.add(event.id)
                    got.append(event)
            finished = got[-1].type == "session.status_idle"
            for event in ([] if finished else stream):
                if event.id not in seen:
                    seen.add(event.id)
                    got.append(event)
                if event.type == "session.status_idle":
                    break
        stored = [e.id for e in client.beta.sessions.events.list(session_id)]
        assert [e.id for e in got] == stored  # nothing lost, nothing twice, in order
        assert got[-1].type == "session.status_idle" and got[-1].stop_reason.type == "end_turn"
        assert [e for e in got if e.type == "agent.message"][-1].content[0].text == "done after 4 steps"
        assert len({e.id for e in got if e.type == "agent.tool_result"}) == 4
        log = (proc.home / "workspace" / "steps.log")
        steps = [line for line in log.read_text().splitlines() if line.startswith("k9-step-")] if log.exists() else []
        assert sorted(set(steps)) == [f"k9-step-{k}" for k in range(1, 5)]
    finally:
        proc.stop()
