"""Schedules (SPEC 6) with an injected clock: cron in a time zone across daylight-saving changes,
missed one-shots, catch-up policies, one run per scheduled time across processes, the file, the
main agent's tool, bad input."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from pydantic import ValidationError
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from bgagents import Runtime, Settings
from bgagents.schedules import tables
from bgagents.schedules.spec import ScheduleSpec
from bgagents.schedules.timing import cron_times, due_runs, late_text
from bgagents.server import create_app
from bgagents.settings import ScheduleSettings
from tests.conftest import ROOT, ServerProcess, tool_returns, user_texts

HOUR, DAY = 3600.0, 86400.0
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()  # a Monday noon, UTC


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


# -- when runs are due (pure) ----------------------------------------------------------------------


def test_cron_keeps_local_time_across_daylight_saving_changes() -> None:
    start = datetime(2026, 3, 27, 12, tzinfo=UTC).timestamp()
    london = [utc(t) for _, t in zip(range(4), cron_times("0 9 * * *", "Europe/London", start), strict=False)]
    assert london == ["2026-03-28 09:00", "2026-03-29 08:00", "2026-03-30 08:00", "2026-03-31 08:00"]
    # the clocks go back: 01:30 happens twice in New York on 1 November 2026, the schedule runs once
    start = datetime(2026, 10, 31, 12, tzinfo=UTC).timestamp()
    ny = [utc(t) for _, t in zip(range(3), cron_times("30 1 * * *", "America/New_York", start), strict=False)]
    assert ny == ["2026-11-01 05:30", "2026-11-02 06:30", "2026-11-03 06:30"]
    # the clocks go forward: 02:30 does not exist on 8 March 2026; that day's run is at 03:00 local
    start = datetime(2026, 3, 7, 12, tzinfo=UTC).timestamp()
    spring = [utc(t) for _, t in zip(range(3), cron_times("30 2 * * *", "America/New_York", start), strict=False)]
    assert spring == ["2026-03-08 07:00", "2026-03-09 06:30", "2026-03-10 06:30"]


def test_catch_up_policies_for_missed_cron_runs() -> None:
    def due(policy: str, now: float) -> Any:
        return due_runs("0 * * * *", None, "UTC", T0, now, catch_up=policy, grace=60, max_missed_age=7 * DAY)

    now = T0 + 5 * HOUR + 30 * 60  # down from just after noon until 17:30: runs 13:00 .. 17:00 missed
    none, once, every = due("none", now), due("once", now), due("all", now)
    assert none.fire == [] and none.skipped == 5
    assert once.fire == [(T0 + 5 * HOUR, 30 * 60)] and once.skipped == 4  # the latest, 30 minutes late
    assert every.fire == [(T0 + h * HOUR, now - T0 - h * HOUR) for h in range(1, 6)] and every.skipped == 0
    on_time = due("once", T0 + 5 * HOUR + 10)  # 17:00 is due now: it fires on time, the missed ones do not
    assert on_time.fire == [(T0 + 5 * HOUR, None)] and on_time.skipped == 4
    assert due("all", T0 + 30 * 60).fire == []  # nothing due yet


def test_missed_runs_older_than_max_missed_age_are_dropped() -> None:
    ten_days = due_runs(None, T0 + 60, "UTC", T0, T0 + 60 + 10 * DAY, catch_up="once", grace=60,
                        max_missed_age=7 * DAY)
    assert ten_days.fire == [] and ten_days.dropped == [T0 + 60]
    hour = due_runs(None, T0 + 60, "UTC", T0, T0 + 60 + HOUR, catch_up="once", grace=60, max_missed_age=7 * DAY)
    assert hour.fire == [(T0 + 60, HOUR)] and late_text(HOUR) == "1h"
    daily = due_runs("0 8 * * *", None, "UTC", T0, T0 + 30 * DAY, catch_up="all", grace=60, max_missed_age=7 * DAY)
    assert len(daily.fire) == 7 and len(daily.dropped) == 23  # a month down: only the last week catches up
    assert late_text(2 * HOUR + 5 * 60) == "2h 5m" and late_text(10 * DAY + 3 * HOUR) == "10d 3h"


def test_bad_cron_or_time_zone_is_refused() -> None:
    for bad in ({"cron": "61 * * * *"}, {"cron": "every day"}, {"cron": "0 8 * * *", "timezone": "Mars/Base"},
                {"cron": "0 8 * * *", "at": "2026-01-01T00:00:00"}, {}):
        with pytest.raises(ValidationError):
            ScheduleSpec.model_validate({"name": "x", "prompt": "p", **bad})
    # zoneinfo reads a zone's name as a file name: too long for one, a folder, a file that is no zone, a NUL
    for zone in ("A" * 3000, "Europe/" + "x" * 300, "Europe", "zone.tab", "../etc/passwd", "Europe/Berlin\0"):
        with pytest.raises(ValidationError, match="is not an IANA time zone"):
            ScheduleSpec.model_validate({"name": "x", "prompt": "p", "cron": "0 8 * * *", "timezone": zone})
        with pytest.raises(ValidationError, match="is not an IANA time zone"):
            ScheduleSettings(timezone=zone)


# -- on the runtime --------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run_rows(rt: Runtime, name: str | None = None) -> list[Any]:
    query = sa.select(tables.runs).order_by(tables.runs.c.scheduled_at)
    if name:
        query = query.where(tables.runs.c.schedule == name)
    with rt.db_engine.connect() as conn:
        return list(conn.execute(query))


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
async def start(settings: Settings, clock: Clock) -> AsyncIterator[Callable[..., Any]]:
    """Starts a runtime on the test database with the injected clock (stop and start it again freely)."""
    runtimes: list[Runtime] = []

    async def make() -> Runtime:
        rt = Runtime(settings.model_copy(update={"model": "demo"}), clock=clock)
        await rt.start()
        runtimes.append(rt)
        return rt

    yield make
    for rt in runtimes:
        await rt.stop()


async def test_one_shot_missed_by_an_hour_fires_once_with_missed_by(start: Any, clock: Clock) -> None:
    rt = await start()
    at = datetime.fromtimestamp(T0 + 60, ZoneInfo("Europe/Berlin")).replace(tzinfo=None)  # local, no offset
    made = await rt.schedules.add(ScheduleSpec(name="call-mom", prompt="remind me to call mom", at=at,
                                               timezone="Europe/Berlin", conversation="default"))
    assert made.at == T0 + 60 and made.next_run_at == T0 + 60
    await rt.stop()
    clock.now = T0 + 60 + HOUR  # down past its time
    rt = await start()  # fires at start
    [run] = run_rows(rt)
    assert run.missed_by == HOUR and run.scheduled_at == T0 + 60 and run.event
    [event] = [line for line in await rt.conversations.history("default") if line["kind"] == "event"]
    assert event["type"] == "schedule-trigger" and event["data"]["text"] == "remind me to call mom"
    assert event["data"]["schedule"] == {"name": "call-mom", "missed_by": "1h",
                                         "scheduled_at": "2026-06-01T14:01:00+02:00"}
    clock.now += HOUR
    assert await rt.schedules.check() == 0  # once only
    assert (await rt.schedules.get("call-mom")).done
    assert len(run_rows(rt)) == 1


async def test_one_shot_missed_by_ten_days_is_dropped_and_logged(start: Any, clock: Clock,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    rt = await start()
    await rt.schedules.add(ScheduleSpec(name="old", prompt="too late", at=datetime.fromtimestamp(T0 + 60, UTC)))
    await rt.stop()
    clock.now = T0 + 10 * DAY
    with caplog.at_level(logging.WARNING, logger="bgagents.schedules"):
        rt = await start()
        await rt.schedules.check()
    assert run_rows(rt) == [] and await rt.list() == []
    assert (await rt.schedules.get("old")).done
    assert any("old" in r.getMessage() and "dropped 1 run" in r.getMessage() for r in caplog.records)


async def test_cron_task_fires_on_time_and_catches_up_once_after_downtime(start: Any, clock: Clock) -> None:
    rt = await start()
    await rt.schedules.add(ScheduleSpec(name="hourly", prompt="summarise my inbox", cron="0 * * * *",
                                        model="demo"))
    clock.now = T0 + HOUR + 5  # 13:00 is due
    await rt.schedules.check()
    [first] = run_rows(rt)
    assert first.scheduled_at == T0 + HOUR and first.missed_by is None and first.task_id
    task = await rt.get(first.task_id)
    assert task.name == "hourly" and task.prompt == "summarise my inbox" and task.model == "demo"
    await rt.stop()
    clock.now = T0 + 4 * HOUR + 20 * 60  # down: 14:00, 15:00, 16:00 missed
    rt = await start()
    runs = run_rows(rt)
    assert [r.scheduled_at for r in runs] == [T0 + HOUR, T0 + 4 * HOUR]  # once: the latest, late
    assert runs[1].missed_by == 20 * 60
    assert "20m late" in ((await rt.get(runs[1].task_id)).instructions or "")
    assert await rt.schedules.check() == 0


async def test_pause_resume_and_run_now(start: Any, clock: Clock) -> None:
    rt = await start()
    await rt.schedules.add(ScheduleSpec(name="nightly", prompt="back up", cron="0 2 * * *", catch_up="all"))
    await rt.schedules.pause("nightly")
    clock.now = T0 + 2 * DAY
    await rt.schedules.check()
    assert run_rows(rt) == []  # paused: nothing
    run = await rt.schedules.run_now("nightly")  # also when paused
    assert run.manual and run.task_id and run.scheduled_at == clock.now
    resumed = await rt.schedules.resume("nightly")
    assert not resumed.paused and resumed.next_run_at == datetime(2026, 6, 4, 2, tzinfo=UTC).timestamp()
    await rt.schedules.check()
    assert len(run_rows(rt)) == 1  # runs skipped while paused do not catch up


async def test_two_schedulers_on_one_database_fire_a_run_once(start: Any, clock: Clock) -> None:
    """Two schedulers (as in two processes) find the same run due at once: one run, one task."""
    rt = await start()
    other = type(rt.schedules)(rt.conversations)
    other.attach(rt)
    await rt.schedules.add(ScheduleSpec(name="race", prompt="once please", cron="*/5 * * * *", catch_up="all"))
    clock.now = T0 + 3600
    await asyncio.gather(*[s.check() for s in (rt.schedules, other) for _ in range(3)])
    runs = run_rows(rt)
    assert len(runs) == 12 and len({r.scheduled_at for r in runs}) == 12
    assert len(await rt.list()) == 12


RACER = """
import asyncio, sys, time
from pathlib import Path
from bgagents import Runtime, Settings

async def main(n, at, go):
    async with Runtime(Settings(), executor_id=f"racer-{n}") as rt:
        Path(go + f".ready{n}").touch()
        while not Path(go).exists():
            await asyncio.sleep(0.01)
        print(await rt.schedules.check(at))

asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]))
"""


@pytest.mark.slow
@pytest.mark.timeout(600)  # three runtimes start one after another, on a loaded machine
async def test_two_processes_racing_for_the_same_run_fire_it_once(settings: Settings, tmp_path: Path) -> None:
    if not settings.database_url:
        pytest.skip("one process per SQLite database (core/identity.py): processes race on PostgreSQL")
    future = datetime.now(UTC).timestamp() + DAY  # out of reach of the real clock the racers start with
    async with Runtime(settings.model_copy(update={"model": "demo"}), clock=lambda: future) as rt:
        await rt.schedules.add(ScheduleSpec(name="raced", prompt="only once", at=datetime.fromtimestamp(
            future + 60, UTC)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGAGENTS_")}
    env.update(BGAGENTS_HOME=str(settings.home), BGAGENTS_MODEL="demo", PYTHONPATH=str(ROOT),
               **({"BGAGENTS_DATABASE_URL": settings.database_url} if settings.database_url else {}))
    go = str(tmp_path / "go")
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(n), str(future + 90), go], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    try:
        deadline = asyncio.get_running_loop().time() + 300
        while not all(Path(f"{go}.ready{n}").exists() for n in (1, 2)):
            assert all(p.poll() is None for p in racers), [p.communicate()[1][-2000:] for p in racers]
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        Path(go).touch()
        outputs = [p.communicate(timeout=300) for p in racers]
    finally:
        for p in racers:
            if p.poll() is None:
                p.kill()
    assert sorted(out.strip().splitlines()[-1] for out, _ in outputs) == ["0", "1"], outputs
    async with Runtime(settings.model_copy(update={"model": "demo"}), clock=lambda: future + 90) as rt:
        assert len(run_rows(rt, "raced")) == 1
        assert [t.name for t in await rt.list()] == ["raced"]


# -- the file --------------------------------------------------------------------------------------


async def test_schedules_file_is_picked_up_when_it_changes(start: Any, clock: Clock,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    rt = await start()
    path = rt.settings.home / "schedules.toml"
    path.write_text('[inbox]\ncron = "0 8 * * *"\ntimezone = "Europe/Berlin"\nprompt = "Summarise my inbox"\n'
                    'conversation = "default"\n')
    [found] = await rt.schedules.list()
    assert (found.name, found.source, found.cron, found.conversation) == ("inbox", "file", "0 8 * * *", "default")
    assert found.next_run_at == datetime(2026, 6, 2, 8, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
    with caplog.at_level(logging.ERROR, logger="bgagents.schedules"):
        path.write_text('[inbox]\ncron = "0 25 * * *"\nprompt = "Summarise my inbox"\n')  # bad: nothing changes
        assert [s.cron for s in await rt.schedules.list()] == ["0 8 * * *"]
    assert any("is not a cron expression" in r.getMessage() for r in caplog.records)
    path.write_text('[inbox]\ncron = "30 7 * * 1-5"\nprompt = "Summarise my inbox"\n\n'
                    '[stretch]\nat = "2026-06-01T15:00:00"\nprompt = "Stand up"\nmodel = "demo"\n')
    assert {s.name: s.cron for s in await rt.schedules.list()} == {"inbox": "30 7 * * 1-5", "stretch": None}
    clock.now = datetime(2026, 6, 1, 15, tzinfo=UTC).timestamp() + 1
    await rt.schedules.check()
    assert [r.schedule for r in run_rows(rt)] == ["stretch"]
    path.unlink()
    assert await rt.schedules.list() == []


# -- the main agent's tool -------------------------------------------------------------------------


async def test_main_agent_makes_a_schedule_for_the_person(settings: Settings, clock: Clock) -> None:
    calls: list[str] = []

    async def brain(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        event = ET.fromstring(user_texts(messages)[-1])
        tools = {t.name for t in info.function_tools}
        calls.append(f"{event.get('type')}:{'schedule_create' in tools}")
        if event.get("type") == "user-message" and tool_returns(messages[-1:]) == 0 and "schedule_create" in tools:
            return ModelResponse(parts=[ToolCallPart("schedule_create", {
                "name": "call-mom", "prompt": "Remind the person to call mom", "at": "2026-06-02T09:00:00",
                "timezone": "Europe/Berlin"}, tool_call_id="c1")])
        text = "Reminder: call mom" if event.get("type") == "schedule-trigger" else "I will remind you."
        answer = {"action": "send", "action_reason": "test", "message": text}
        return ModelResponse(parts=[ToolCallPart(info.output_tools[0].name, answer)])

    rt = Runtime(settings.model_copy(update={"model": "brain"}), clock=clock)
    rt.register_model("brain", FunctionModel(brain, model_name="brain"))
    async with rt:
        await rt.conversations.message("default", "remind me tomorrow at 9 to call mom")
        first = await rt.conversations.wait_for_response("default", 0, 30)
        assert first[0].message == "I will remind you."
        made = await rt.schedules.get("call-mom")
        assert made.source == "agent" and made.conversation == "default"
        assert made.at == datetime(2026, 6, 2, 9, tzinfo=ZoneInfo("Europe/Berlin")).timestamp()
        clock.now = made.at + 1
        await rt.schedules.check()
        second = await rt.conversations.wait_for_response("default", first[0].seq, 30)
        assert second[0].message == "Reminder: call mom"
    assert calls[0] == "user-message:True"  # main turns have the tool


# -- the API and the CLI ---------------------------------------------------------------------------


async def test_api_crud_and_bad_input(runtime: Runtime) -> None:
    runtime.settings.model = "demo"
    app = create_app(runtime, "t", manage_runtime=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1",
                                 headers={"Authorization": "Bearer t"}) as api:
        bad = await api.post("/schedules", json={"name": "x", "prompt": "p", "cron": "0 8 * *"})
        assert bad.status_code == 422 and "is not a cron expression" in bad.json()["error"]["message"]
        bad_zone = await api.post("/schedules", json={"name": "x", "prompt": "p", "cron": "0 8 * * *",
                                                      "timezone": "Nowhere/City"})
        assert bad_zone.status_code == 422 and "IANA time zone" in bad_zone.json()["error"]["message"]
        huge_zone = await api.post("/schedules", json={"name": "x", "prompt": "p", "cron": "0 8 * * *",
                                                       "timezone": "A" * 3000})
        message = huge_zone.json()["error"]["message"]
        assert huge_zone.status_code == 422 and "is not an IANA time zone" in message and len(message) < 300
        past = await api.post("/schedules", json={"name": "x", "prompt": "p", "at": "2000-01-01T00:00:00Z"})
        assert past.status_code == 400 and past.json()["error"]["code"] == "past_time"
        unknown = await api.post("/schedules", json={"name": "x", "prompt": "p", "cron": "0 8 * * *",
                                                     "model": "nope:none"})
        assert unknown.status_code == 400
        assert (await api.get("/schedules")).json() == []  # nothing stored
        made = await api.post("/schedules", json={"name": "daily", "prompt": "p", "cron": "0 8 * * *",
                                                  "timezone": "Asia/Tokyo"})
        assert made.status_code == 201 and made.json()["next_run_at"] and made.json()["catch_up"] == "once"
        again = await api.post("/schedules", json={"name": "daily", "prompt": "p", "cron": "0 9 * * *"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "schedule_exists"
        assert (await api.post("/schedules/daily/pause")).json()["paused"] is True
        assert (await api.post("/schedules/daily/resume")).json()["paused"] is False
        run = (await api.post("/schedules/daily/run-now")).json()
        assert run["manual"] is True and run["task_id"].startswith("bg_")
        assert (await api.get("/schedules/daily")).json()["last_run"]["task_id"] == run["task_id"]
        assert (await api.delete("/schedules/daily")).status_code == 200
        missing = await api.post("/schedules/daily/run-now")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.timeout(400)  # a server and a dozen CLI processes, on a loaded machine
def test_cli_schedules_against_a_server(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BGAGENTS_MODEL="demo")
    server.start(timeout=120)  # a loaded machine starts a server slowly
    bad = server.cli("schedule", "add", "bad", "p", "--cron", "0 8 * *")
    assert bad.returncode == 1 and "is not a cron expression" in bad.stderr
    assert "no schedules" in server.cli("schedule", "ls").stdout  # nothing stored
    added = server.cli("schedule", "add", "inbox", "Summarise my inbox", "--cron", "0 8 * * *", "--tz",
                       "Europe/Berlin")
    assert added.returncode == 0 and "inbox: next run" in added.stdout and "CE" in added.stdout
    (server.home / "schedules.toml").write_text('[walk]\ncron = "0 18 * * *"\nprompt = "Go for a walk"\n')
    listed = server.cli("schedule", "ls")
    rows = {line.split("\t")[0]: line.split("\t") for line in listed.stdout.splitlines()}  # piped: tab-separated
    assert rows["inbox"][-1] == "api" and rows["walk"][-1] == "file", listed.stdout
    assert server.cli("schedule", "pause", "inbox").stdout.strip() == "paused inbox"
    assert "paused" in server.cli("schedule", "ls").stdout
    assert server.cli("schedule", "resume", "inbox").returncode == 0
    started = server.cli("schedule", "run-now", "inbox")
    assert started.returncode == 0 and started.stdout.startswith("started bg_")
    removed = server.cli("schedule", "rm", "walk")
    assert removed.returncode == 1 and "remove it there" in removed.stderr
    assert server.cli("schedule", "rm", "inbox").stdout.strip() == "removed inbox"
    assert "inbox" not in server.cli("schedule", "ls", "--json").stdout
