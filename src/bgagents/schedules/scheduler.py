"""`Schedules`: the extension that fires schedules (SPEC 6), checked at every sweep of the runtime.

A run fires once per scheduled time: its row in `bg_schedule_runs` (unique per schedule and time)
is written in the transaction that starts it, the task or the conversation event, so a second
process, or this one after a restart, that finds the same run due fails that insert and starts
nothing. A crash after that commit loses nothing either: the core re-enqueues a stored task, the
conversation drains a stored event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic_ai.toolsets import AbstractToolset

from ..conversation.events import ConversationEvent
from ..conversation.events import Schedule as ScheduleElement
from ..conversation.orchestrator import check_id
from ..core.extensions import Extension
from ..core.names import task_id as new_task_id
from ..core.profiles import get_profile
from ..errors import BgAgentsError, InvalidInput
from ..tools import ToolContext
from . import tables
from .file import FILE_NAME, WatchedFile, parse
from .spec import LastRun, Schedule, ScheduleSpec
from .store import Row, ScheduleStore, run_of, schedule_of
from .timing import due_runs, iso, late_text, next_run
from .tools import schedule_toolset

if TYPE_CHECKING:
    from ..conversation.orchestrator import Conversations
    from ..core.runtime import Runtime
    from ..core.schema import Task

log = logging.getLogger("bgagents.schedules")


class Schedules(Extension):
    """The schedules of a runtime. With `conversations`, a schedule may send a conversation its
    `schedule-trigger` events, and main turns get tools to make schedules for the person."""

    name = "schedules"
    metadata = tables.metadata

    def __init__(self, conversations: Conversations | None = None) -> None:
        self.conversations = conversations
        self._lock = asyncio.Lock()

    # -- the core's hooks --------------------------------------------------------------------------

    def attach(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings.schedules
        self.store = ScheduleStore(runtime.store)
        self.file = WatchedFile(runtime.settings.home / FILE_NAME)
        self.toolset = schedule_toolset(self)

    async def start(self) -> None:
        """Runs missed while the runtime was down fire now (each once, as their policy says)."""
        try:
            await self.check()
        except Exception:  # the sweep tries again within a second
            log.exception("checking schedules at start")

    async def sweep(self, now: float) -> None:
        await self.check(now)

    async def toolsets(self, task: Task) -> list[AbstractToolset[ToolContext]]:
        """A conversation's sessions get the schedule tools ("remind me tomorrow at 9"): the main agent,
        and the background agents it forks (a main turn demoted meanwhile keeps them on a replay)."""
        if self.conversations is None:
            return []
        convs = self.conversations
        session = await convs.store.run(convs.store.session_sync, task.id)
        return [self.toolset] if session is not None else []

    # -- firing ------------------------------------------------------------------------------------

    async def check(self, now: float | None = None) -> int:
        """Fires every run due at `now` (default: the runtime's clock); returns how many fired here."""
        async with self._lock:
            now = self.runtime.clock() if now is None else now
            await self._sync_file()
            fired = 0
            for row in await self.store.run(self.store.active_sync):
                try:
                    fired += await self._check_one(row, now)
                except Exception:  # the others still run; this one is tried again at the next sweep
                    log.exception("schedule %s", row.name)
            return fired

    async def _check_one(self, row: Row, now: float) -> int:
        spec = row.spec
        due = due_runs(spec.get("cron"), spec.get("at"), spec["timezone"], row.cursor, now,
                       catch_up=spec["catch_up"], grace=self.settings.grace,
                       max_missed_age=self.settings.max_missed_age)
        if due.dropped:
            log.warning("schedule %s: dropped %d run(s) missed by more than max_missed_age (%s), the first due %s",
                        row.name, len(due.dropped), late_text(self.settings.max_missed_age),
                        iso(due.dropped[0], spec["timezone"]))
        if due.skipped:
            log.info("schedule %s: skipped %d missed run(s) (catch_up = %s)", row.name, due.skipped, spec["catch_up"])
        fired = 0
        for scheduled_at, late in due.fire:
            fired += await self._fire(row, scheduled_at, late) is not None
        done = not spec.get("cron") and spec["at"] <= now
        await self.store.run(self.store.advance_sync, row.name, now, done)
        return fired

    async def _fire(self, row: Row, scheduled_at: float, late: float | None, manual: bool = False) -> LastRun | None:
        """Starts one run; None when it had started already (here or in another process)."""
        name, spec = row.name, row.spec
        if await self.store.run(self.store.has_run_sync, name, scheduled_at):
            return None
        values: dict[str, Any] = {"manual": manual, "missed_by": late}
        try:
            if spec.get("conversation"):
                await self._send_event(name, spec, scheduled_at, late, values)
            else:
                await self._launch(name, spec, scheduled_at, late, values)
        except sa.exc.IntegrityError:
            return None  # another process started this run first
        except BgAgentsError as exc:
            log.warning("schedule %s: the run due %s could not start: %s", name, iso(scheduled_at), exc.message)
            values.update(task_id=None, error=exc.message)
            try:  # recorded, so it is not tried again every second
                await self.store.run(lambda: self.store.insert_run_sync(name, scheduled_at, **values))
            except sa.exc.IntegrityError:
                return None
        else:
            where = f"task {values['task_id']}" if values.get("task_id") else f"event {values.get('event')}"
            log.info("schedule %s fired (due %s%s): %s", name, iso(scheduled_at, spec["timezone"]),
                     f", missed by {late_text(late)}" if late else "", where)
        return run_of(await self.store.run(self.store.run_sync, name, scheduled_at))

    async def _launch(self, name: str, spec: dict[str, Any], scheduled_at: float, late: float | None,
                      values: dict[str, Any]) -> None:
        task_id = values["task_id"] = new_task_id()
        note = None
        if late:
            note = (f"This is a run of the schedule '{name}' that was due {iso(scheduled_at, spec['timezone'])} "
                    f"and starts {late_text(late)} late (the system was down).")
        await self.runtime.launch(spec["prompt"], name=name, description=f"schedule {name}", agent=spec.get("agent"),
                                  model=spec.get("model"), instructions=note, _id=task_id,
                                  _also=lambda conn: self.store.insert_run(conn, name, scheduled_at, **values))

    async def _send_event(self, name: str, spec: dict[str, Any], scheduled_at: float, late: float | None,
                          values: dict[str, Any]) -> None:
        convs = self.conversations
        if convs is None:
            raise InvalidInput("conversations are not attached to this runtime")
        cid = check_id(spec["conversation"])
        convs.main_model()
        when = datetime.fromtimestamp(scheduled_at, ZoneInfo(spec["timezone"]))
        element = ScheduleElement(name=name, missed_by=late_text(late) if late else None,
                                  scheduled_at=when if late else None)

        def build(event_name: str) -> dict[str, Any]:
            event = ConversationEvent(name=event_name, type="schedule-trigger", time=convs.now(), schedule=element,
                                      text=spec["prompt"])
            return event.model_dump(mode="json", exclude_none=True)

        def write() -> Any:
            with self.store.engine.begin() as conn:
                record, stored = convs.store.insert_event(conn, cid, "schedule-trigger", name, build)
                values["event"] = record.name
                self.store.insert_run(conn, name, scheduled_at, **values)
                return stored

        await convs.publish(await self.store.run(write))
        await convs.kick(cid)

    # -- managing ----------------------------------------------------------------------------------

    def _stored(self, spec: ScheduleSpec) -> dict[str, Any]:
        """The spec as stored: defaults filled in, a one-shot time as a timestamp."""
        timezone = spec.timezone or self.settings.timezone
        at = None
        if spec.at is not None:
            try:
                at = (spec.at if spec.at.tzinfo else spec.at.replace(tzinfo=ZoneInfo(timezone))).timestamp()
            except (OverflowError, ValueError):
                raise InvalidInput(f"at {spec.at} is out of range", code="bad_time") from None
        return {"prompt": spec.prompt, "cron": spec.cron, "at": at, "timezone": timezone,
                "conversation": spec.conversation, "agent": spec.agent, "model": spec.model,
                "catch_up": spec.catch_up or self.settings.catch_up}

    def _check_targets(self, stored: dict[str, Any]) -> None:
        """What a run needs exists now: its conversation (and main model), or its agent and model."""
        if stored["at"] is not None and stored["at"] <= self.runtime.clock():
            raise InvalidInput(f"at {iso(stored['at'], stored['timezone'])} is in the past", code="past_time")
        if stored["conversation"]:
            if self.conversations is None:
                raise InvalidInput("conversations are not attached to this runtime")
            check_id(stored["conversation"])
            self.conversations.main_model()
            return
        profile = get_profile(self.runtime.profiles(), stored["agent"] or "general")
        model = (stored["model"] or profile.model or self.runtime.settings.model or "").strip()
        if not model:
            raise InvalidInput("no model for the schedule's task: give a model or set BGAGENTS_MODEL",
                               code="no_model")
        self.runtime.models.resolve(model)

    async def add(self, spec: ScheduleSpec, *, source: str = "api", origin: str | None = None) -> Schedule:
        """Stores a new schedule (its first run is its next time after now); refused with a clear error
        when its target cannot run, and nothing is stored."""
        stored = self._stored(spec)
        self._check_targets(stored)
        row = await self.store.run(self.store.add_sync, spec.name, stored, spec.paused, source, origin)
        return self._schedule(row)

    def _schedule(self, row: Row, last: Row | None = None) -> Schedule:
        spec = row.spec
        upcoming = None
        if not row.paused and not row.done:
            upcoming = next_run(spec.get("cron"), spec.get("at"), spec["timezone"],
                                max(row.cursor, self.runtime.clock()))
        return schedule_of(row, last, upcoming)

    async def list(self) -> list[Schedule]:
        await self._sync_file()
        rows = await self.store.run(self.store.list_sync)
        last = await self.store.run(self.store.last_runs_sync)
        return [self._schedule(r, last.get(r.name)) for r in rows]

    async def get(self, name: str) -> Schedule:
        row = await self.store.run(self.store.get_sync, name)
        last = await self.store.run(self.store.last_runs_sync)
        return self._schedule(row, last.get(name))

    async def remove(self, name: str) -> Schedule:
        schedule = await self.get(name)
        if schedule.source == "file":
            raise InvalidInput(f"'{name}' is defined in {self.file.path}; remove it there", code="defined_in_file")
        await self.store.run(self.store.remove_sync, name)
        return schedule

    async def pause(self, name: str) -> Schedule:
        await self.store.run(self.store.set_paused_sync, name, True)
        return await self.get(name)

    async def resume(self, name: str) -> Schedule:
        await self.store.run(self.store.set_paused_sync, name, False)
        return await self.get(name)

    async def run_now(self, name: str) -> LastRun:
        """One run at once, besides its schedule (also when paused)."""
        row = await self.store.run(self.store.get_sync, name)
        run = await self._fire(row, self.runtime.clock(), None, manual=True)
        if run is None:
            raise InvalidInput(f"'{name}' was started at this very moment already; try again", code="busy")
        if run.error:
            raise InvalidInput(f"the run of '{name}' could not start: {run.error}", code="run_failed")
        return run

    # -- schedules.toml ----------------------------------------------------------------------------

    async def _sync_file(self) -> None:
        """Makes the file's schedules the stored ones, when the file changed since the last look."""
        if not self.file.changed():
            return
        text = self.file.read()
        try:
            entries = parse(text) if text is not None else {}
        except InvalidInput as exc:
            log.error("%s (in %s): nothing changed until it is fixed", exc.message, self.file.path)
            return
        stored = {r.name: r for r in await self.store.run(self.store.list_sync)}
        for name, (spec, entry) in entries.items():
            row = stored.get(name)
            values = self._stored(spec)
            if row is not None and row.source != "file":
                log.error("%s: [%s] is also a schedule made by the %s; the file's is ignored", FILE_NAME, name,
                          row.source)
            elif row is None:
                with contextlib.suppress(BgAgentsError):  # another process added it first
                    await self.store.run(self.store.add_sync, name, values, spec.paused, "file", None, entry)
            elif row.file_entry != entry:
                await self.store.run(self.store.replace_sync, name, values, spec.paused, entry)
        gone = [name for name, row in stored.items() if row.source == "file" and name not in entries]
        for name in gone:
            with contextlib.suppress(BgAgentsError):  # another process removed it first
                await self.store.run(self.store.remove_sync, name)
        if text is not None or gone:
            log.info("schedules from %s: %s", self.file.path, ", ".join(entries) or "none")

