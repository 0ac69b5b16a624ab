"""The main conversation (SPEC 4): events taken one at a time, in order, by a main agent that hands long
work to background agents.

A conversation is a main session (a task whose turns each answer one event) plus a durable queue of
events. The queue is drained by the DBOS workflow `bgagents.conversation`, on a queue that runs one
workflow at a time per conversation, so events keep their order across processes and restarts. A
drain first handles what ended turns left behind (their outcomes, recorded in the transaction that
ended them), then the oldest pending event:

- the main turn still runs: wait for it, up to the rest of `wait_threshold`; if it ends, its answer
  is delivered first; if not, it is demoted (goes on as a background session) and the event runs
  on a fork of the main session carrying `<backgrounded-event>`, which becomes the main session;
- else the event resumes the main session (or starts one).

Every step that starts something decides first (one transaction) and then acts idempotently, so a
crash anywhere repeats no turn and loses no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from dbos import DBOS
from pydantic import ValidationError

from ..core.extensions import Extension
from ..core.names import task_id as new_task_id
from ..core.schema import TERMINAL, Event, Task
from ..errors import BgAgentsError, Conflict, InvalidInput, NotFound
from ..tools.workspace import WorkspaceError, relative, resolve_path
from . import checks, tables
from .events import ConversationEvent, EventType, Result, render
from .health import HealthChecks
from .prompt import SYSTEM_PROMPT
from .responses import NO_OUTPUT, MainResponse
from .schema import EventRecord, Peek, Response, Session
from .store import ConversationStore, Row

if TYPE_CHECKING:
    from ..core.runtime import Runtime

log = logging.getLogger("bgagents.conversation")

QUEUE = "bgagents:conversations"
WORKFLOW = "bgagents.conversation"
MAIN_SCHEMA: dict[str, Any] = MainResponse.model_json_schema()
CONVERSATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
RESULT_INSTRUCTIONS = ('Pass this result on to the person (action "send"), summarised or with context from the '
                       'conversation. If its action is "silent", answer "silent" unless you have something to add.')
# a main turn goes before queued background work of the same model, so the conversation keeps answering
MAIN_PRIORITY = 10
DRAIN_PRUNE_INTERVAL = 600.0  # seconds: finished drains older than this are removed from DBOS

_current: Conversations | None = None


@DBOS.workflow(name=WORKFLOW)
async def conversation_workflow(conversation_id: str) -> None:
    if _current is None:
        raise RuntimeError("the bgagents runtime is not started in this process")
    await _current.drain(conversation_id)


@dataclass(frozen=True)
class Source:
    """Where an event comes from outside: `key` is stored with it once (a redelivery is ignored) and
    `record(conn)` runs in the transaction that stores it (e.g. a channel's read offset)."""

    key: str
    record: Callable[[sa.Connection], None] | None = None


def check_id(conversation_id: str) -> str:
    if not CONVERSATION_ID.match(conversation_id or ""):
        raise InvalidInput(f"'{conversation_id}' is not a conversation id: use letters, digits, '-', '_' or '.' "
                           "(at most 128)", code="bad_conversation_id")
    return conversation_id


def _display(row: Row) -> str:
    """The person's own words for an event (shown in session details), never the XML."""
    data = row.data
    if row.type == "button-click":
        return f"[button] {data.get('button')}"
    if row.type == "background-agent-result":
        return f"[result of {data.get('original_event')}] {(data.get('result') or {}).get('text', '')}"
    if row.type == "background-agent-progress":
        return f"[progress of {data.get('target_event')}] {data.get('progress') or ''}"
    files = " ".join(f"[file: {f}]" for f in data.get("files") or [])
    return " ".join(p for p in (data.get("text") or "", files) if p)


def response_of(outcome: Row) -> MainResponse:
    """What an ended turn answered; a failed or cancelled turn answers with its error."""
    result = outcome.result or {}
    if outcome.status == "completed":
        data, text = result.get("data"), result.get("text")
        if isinstance(data, dict):
            try:
                return MainResponse.model_validate(data)
            except ValidationError:
                return MainResponse(action="send", action_reason="unstructured answer", message=json.dumps(data))
        return MainResponse(action="send", action_reason="plain answer", message=text or NO_OUTPUT)
    label = "Cancelled" if outcome.status == "cancelled" else "Error"
    return MainResponse(action="send", action_reason=f"session {outcome.status}",
                        message=f"[{label}] {outcome.error or outcome.status}")


class Conversations(Extension):
    """The conversations of a runtime: an extension of the core (see `bgagents.core.extensions`)."""

    name = "conversations"
    metadata = tables.metadata
    queues = (QUEUE,)

    def __init__(self) -> None:
        self._background: set[asyncio.Task[Any]] = set()
        self._drains = 0
        self._last_drain_prune = time.monotonic()

    # -- lifecycle (the core's extension hooks) ----------------------------------------------------

    def attach(self, runtime: Runtime) -> None:
        """Before DBOS launches: a drain it recovers finds this process's conversations."""
        global _current
        self.runtime = runtime
        self.settings = runtime.settings.conversation
        self.store = ConversationStore(runtime.store)
        _current = self

    async def start(self) -> None:
        """After the engine's queues (QUEUE among them) are up: pick up what a stop or crash left."""
        self.spawn(self._watch_ends())
        for cid in await self.store.run(self.store.busy_conversations_sync):
            await self.kick(cid)
        if self.settings.health_check_interval > 0:
            self.spawn(HealthChecks(self).run())

    async def stop(self) -> None:
        global _current
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=2)
        if _current is self:
            _current = None

    async def sweep(self, now: float) -> None:
        if time.monotonic() - self._last_drain_prune >= DRAIN_PRUNE_INTERVAL:
            self._last_drain_prune = time.monotonic()
            await self.prune_drains(now - DRAIN_PRUNE_INTERVAL)

    def task_ended(self, conn: sa.Connection, task_id: str) -> None:
        self.store.record_outcome(conn, task_id)

    def retained(self) -> sa.Select[Any]:
        return self.store.main_sessions()

    async def prune_drains(self, before: float) -> int:
        """Finished drains have nothing left to recover; their DBOS rows would grow with every event."""
        ids = await self.runtime.engine.finished_workflows(WORKFLOW, before)
        await self.runtime.engine.delete_workflows(ids)
        return len(ids)

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.runtime.clock(), UTC)

    async def publish(self, events: Event | list[Event] | None) -> None:
        for event in events if isinstance(events, list) else [events]:
            await self.runtime.services.publish(event)

    async def kick(self, cid: str) -> None:
        """Makes sure a drain of the conversation runs after now (an extra one finds nothing to do)."""
        self._drains += 1
        workflow = f"conv.{cid}.{time.time_ns()}.{self._drains}"
        await self.runtime.engine.enqueue_workflow(QUEUE, cid, workflow, conversation_workflow, cid)

    async def _watch_ends(self) -> None:
        """A session's turn ended here: its conversation has an outcome to handle."""
        terminal = {f"task.{s}" for s in TERMINAL}
        with self.runtime.bus.subscribe(lambda e: e.type in terminal and e.task_id is not None) as queue:
            while True:
                event = await queue.get()
                try:
                    session = await self.store.run(self.store.session_sync, event.task_id)
                    if session is not None:
                        await self.kick(session.conversation_id)
                except Exception:
                    log.exception("could not pass on the end of %s", event.task_id)

    # -- events in ---------------------------------------------------------------------------------

    def main_model(self) -> str:
        name = (self.settings.model or self.runtime.settings.model or "").strip()
        if not name:
            raise InvalidInput("no model for the main agent: set BGAGENTS_MODEL (e.g. 'demo') or "
                               "[conversation] model", code="no_model")
        self.runtime.models.resolve(name)
        return name

    async def post(self, cid: str, type_: EventType, label: str, *, source: Source | None = None,
                   **fields: Any) -> EventRecord:
        """Stores an event in the conversation's queue (before anything else), then wakes its drain.

        An event from outside (a channel's update) names its `source`: one already stored is not
        stored again, and the source's own record is written in the same transaction."""
        check_id(cid)
        self.main_model()  # a missing model is an error now, not an event that can never run

        def build(name: str) -> dict[str, Any]:
            event = ConversationEvent(name=name, type=type_, time=self.now(), **fields)
            return event.model_dump(mode="json", exclude_none=True)

        key, record_source = (source.key, source.record) if source is not None else (None, None)
        record, stored = await self.store.add_event(cid, type_, label, build, key, record_source)
        if stored is not None:
            await self.publish(stored)
            await self.kick(cid)
        return record

    async def message(self, cid: str, text: str, files: list[str] | None = None, *,
                      source: Source | None = None) -> EventRecord:
        if not (text or "").strip() and not files:
            raise InvalidInput("the message is empty", code="empty_message")
        paths = [self._workspace_file(f) for f in files or []]
        return await self.post(cid, "user-message", text or "files", text=text or None, files=paths, source=source)

    def _workspace_file(self, path: str) -> str:
        """A file of a message: a path inside the workspace, kept relative to it."""
        workspace = self.runtime.settings.workspace_path
        try:
            return relative(workspace, resolve_path(workspace, path))
        except WorkspaceError as exc:
            raise InvalidInput(str(exc), code="bad_path") from None

    async def button(self, cid: str, label: str, *, source: Source | None = None) -> EventRecord:
        if not (label or "").strip():
            raise InvalidInput("the button label is empty")
        return await self.post(cid, "button-click", label, button=label, source=source)

    async def background_command(self, cid: str, prompt: str, name: str | None = None, *,
                                 source: Source | None = None) -> EventRecord:
        """`/bg PROMPT`: the person asks for background work directly; the main agent starts it."""
        if not (prompt or "").strip():
            raise InvalidInput("the prompt is empty", code="empty_prompt")
        named = f", named {json.dumps(name.strip())}" if name and name.strip() else ""
        return await self.post(cid, "user-message", prompt, text=prompt, source=source,
                               instructions="The person asks for this to run as a background agent: start it with "
                                            f"background_agents{named}, and tell them briefly.")

    # -- the drain (DBOS workflow body) ------------------------------------------------------------

    async def drain(self, cid: str) -> None:
        me = asyncio.current_task()
        if me is not None:  # a stop cancels it; DBOS runs it again on the next start
            self._background.add(me)
            me.add_done_callback(self._background.discard)
        while True:
            work = await DBOS.run_step_async({"name": "next_work"}, self.store.run, self.store.next_work_sync, cid)
            if work is None:
                return
            kind, ident = work
            if kind == "outcome":
                await DBOS.run_step_async({"name": "outcome"}, self._handle_outcome, ident)
                continue
            state = await DBOS.run_step_async({"name": "settle"}, self._settle, cid)
            if state == "finished":
                continue  # its answer is delivered before this event resumes the session
            if state == "demote" and not await DBOS.run_step_async({"name": "demote"}, self._demote, cid):
                continue  # it ended meanwhile
            await DBOS.run_step_async({"name": "start_turn"}, self._start_turn, cid, ident)

    async def _main(self, cid: str) -> tuple[Task | None, Row | None]:
        conv = await self.store.run(self.store.conversation_sync, cid)
        if conv is None or not conv.main_task_id:
            return None, None
        task = await self.runtime.store.get_task(conv.main_task_id)
        session = await self.store.run(self.store.session_sync, conv.main_task_id)
        return task, session

    async def _settle(self, cid: str) -> str:
        """idle (nothing runs in the main session), finished (its turn ended while we waited) or demote."""
        task, session = await self._main(cid)
        if task is None or task.finished or session is None or session.role != "main":
            return "idle"
        threshold = self.settings.wait_threshold
        elapsed = self.runtime.clock() - session.turn_started_at
        if elapsed >= threshold:
            return "demote"
        task = await self.runtime.wait(task.id, threshold - elapsed)
        return "finished" if task.finished else "demote"

    async def _demote(self, cid: str) -> bool:
        task, _ = await self._main(cid)
        if task is None:
            return False
        event = await self.store.run(self.store.demote_sync, task.id, "a new event waited past wait_threshold")
        await self.publish(event)
        return event is not None

    async def _start_turn(self, cid: str, seq: int) -> None:
        row = await self.store.run(self.store.event_row_sync, cid, seq)
        if row.status != "pending":
            return
        plan = row.plan
        if plan is None:
            plan = await self._plan(cid, row)
        try:
            await self._begin(plan, row.name)
        except BgAgentsError as exc:
            log.warning("conversation %s: could not start the turn of %s: %s", cid, row.name, exc)
            await self.publish(await self.store.run(self.store.turn_failed_sync, cid, seq, plan, str(exc)))
            return
        data = {"name": row.name, "task_id": plan["task_id"], "mode": plan["mode"], "turn": plan["turn"]}
        await self.publish(await self.store.run(self.store.mark_started_sync, cid, seq, data))

    async def _plan(self, cid: str, row: Row) -> dict[str, Any]:
        """Decides how the event's turn starts, once: fork a still-running main session, resume an idle
        one, or start the first."""
        main, session = await self._main(cid)
        event = ConversationEvent.model_validate(row.data)
        plan: dict[str, Any]
        if main is not None and not main.finished:
            event.backgrounded_event = session.name if session is not None else None
            plan = {"mode": "fork", "source": main.id, "task_id": new_task_id(), "turn": 1}
        elif main is not None:
            plan = {"mode": "resume", "source": main.id, "task_id": main.id, "turn": main.turn + 1}
        else:
            plan = {"mode": "new", "task_id": new_task_id(), "turn": 1}
        plan["prompt"] = render(event)
        await self.store.run(self.store.plan_turn_sync, cid, row.seq, plan,
                             {"name": row.name, "prompt": _display(row)})
        return plan

    async def _begin(self, plan: dict[str, Any], name: str) -> None:
        """Acts on a plan; done already (a replay after a crash) means nothing to do."""
        rt = self.runtime
        target = plan["task_id"]
        if plan["mode"] == "resume":
            task = await rt.get(target)
            if task.turn < plan["turn"]:
                await rt.resume(target, plan["prompt"])
            return
        if await rt.store.get_task(target) is not None:
            return
        if plan["mode"] == "fork":
            await rt.fork(plan["source"], plan["prompt"], name=name, _id=target)
        else:
            await rt.launch(plan["prompt"], name=name, agent=self.settings.agent, model=self.main_model(),
                            instructions=SYSTEM_PROMPT, output_schema=MAIN_SCHEMA, priority=MAIN_PRIORITY, _id=target)

    # -- outcomes: answers delivered, results fed back ---------------------------------------------

    async def _handle_outcome(self, outcome_id: int) -> None:
        outcome = await self.store.run(self.store.outcome_sync, outcome_id)
        if outcome.handled:
            return
        if outcome.killed:  # a killed session's result is never delivered
            await self.publish(await self.store.run(self.store.finish_outcome_sync, outcome_id, None, None, True))
            return
        response = response_of(outcome)
        if outcome.role == "main":
            notes = await self._start_background_agents(outcome, response)
            values = response.model_dump(include={"action", "action_reason", "message", "files", "buttons"})
            if values["action"] == "send" and not (values["message"] or "").strip():
                values["message"] = NO_OUTPUT
            if notes:
                values["message"] = "\n".join([values["message"] or "", *notes]).strip()
                values["action"] = "send"
            values.update(event_name=outcome.name, task_id=outcome.task_id)
            await self.publish(await self.store.run(self.store.finish_outcome_sync, outcome_id, values, None))
            return
        result = Result(action=response.action, status=outcome.status, text=response.message or NO_OUTPUT,
                        files=response.files)
        now = self.now()

        def build(name: str) -> dict[str, Any]:
            return ConversationEvent(name=name, type="background-agent-result", time=now,
                                     original_event=outcome.name, result=result,
                                     instructions=RESULT_INSTRUCTIONS).model_dump(mode="json", exclude_none=True)

        feedback = ("background-agent-result", f"{outcome.name} result", build)
        await self.publish(await self.store.run(self.store.finish_outcome_sync, outcome_id, None, feedback))

    async def _start_background_agents(self, outcome: Row, response: MainResponse) -> list[str]:
        """Forks the main session once per entry (found again by its origin on a replay); returns notes
        for the person about any that could not start."""
        notes = []
        for i, spec in enumerate(response.background_agents):
            origin = f"outcome:{outcome.id}:{i}"
            session = await self.store.run(self.store.session_by_origin_sync, origin)
            if session is None:
                session = await self.store.run(self.store.add_background_session_sync, outcome.conversation_id,
                                               new_task_id(), spec.name, spec.prompt, origin)
            if await self.runtime.store.get_task(session.task_id) is not None:
                continue
            start = ConversationEvent(name=session.name, type="background-agent-start", session="background",
                                      time=self.now(), text=spec.prompt)
            try:
                await self.runtime.fork(outcome.task_id, render(start), name=session.name, model=spec.model,
                                        agent=spec.agent, priority=0, _id=session.task_id)
            except BgAgentsError as exc:
                notes.append(f"(Could not start the background agent '{session.name}': {exc})")
        return notes

    # -- sessions and control ----------------------------------------------------------------------

    async def _session(self, row: Row, main: bool) -> Session | None:
        task = await self.runtime.store.get_task(row.task_id)
        if task is None or task.finished:
            return None
        return Session(task_id=task.id, name=row.name, main=main, prompt=row.prompt, model=task.model,
                       status=task.status, elapsed=round(max(0.0, self.runtime.clock() - row.turn_started_at), 1),
                       progress=task.progress)

    async def sessions(self, cid: str) -> list[Session]:
        """The running sessions, the main one marked."""
        check_id(cid)
        out = []
        for row in await self.store.run(self.store.sessions_sync, cid):
            session = await self._session(row, row.role == "main")
            if session is not None:
                out.append(session)
        return out

    async def session(self, cid: str, ref: str) -> Session:
        """One running session, by task id or name."""
        for session in await self.sessions(cid):
            if ref in (session.task_id, session.name):
                return session
        raise NotFound(f"no running session '{ref}' in conversation '{cid}' (not there, or already finished)")

    async def kill(self, cid: str, ref: str) -> Session:
        """Stops a session; its result, even one that arrives later, is never delivered."""
        session = await self.session(cid, ref)
        event = await self.store.run(self.store.set_session_sync, session.task_id, {"killed": True},
                                     "conversation.killed", {"name": session.name})
        await self.publish(event)
        with contextlib.suppress(Conflict):
            await self.runtime.cancel(session.task_id)
        return session

    async def clear(self, cid: str) -> None:
        """A fresh main session for the next event; a running main turn is stopped (background ones go on)."""
        check_id(cid)
        for session in await self.sessions(cid):
            if session.main:
                await self.kill(cid, session.task_id)
        await self.publish(await self.store.run(self.store.clear_sync, cid))

    async def background(self, cid: str) -> Session:
        """Pushes the running main turn into the background (it reports back when done); the next
        event starts on a fork of the session."""
        check_id(cid)
        main = next((s for s in await self.sessions(cid) if s.main), None)
        if main is None:
            raise Conflict(f"conversation '{cid}' has no main turn running", code="not_running")
        event = await self.store.run(self.store.demote_sync, main.task_id, "moved to the background on request")
        if event is None:
            raise Conflict(f"the main turn of '{cid}' ended meanwhile", code="not_running")
        await self.publish(event)
        return main.model_copy(update={"main": False})

    async def peek(self, cid: str, ref: str) -> Peek:
        session = await self.session(cid, ref)
        return await self.peek_task(session.task_id, session.name)

    async def peek_task(self, task_id: str, name: str | None = None) -> Peek:
        """What a running task has done, is doing and has left, in a few sentences by the small model."""
        task = await self.runtime.get(task_id)
        if task.status not in ("running", "waiting"):
            raise Conflict(f"task {task_id} is {task.status}; only a running task can be peeked", code="not_running")
        text = await asyncio.wait_for(checks.peek(self.runtime, task, name or task.name, self.settings.peek_model),
                                      self.settings.health_check_timeout)
        return Peek(task_id=task.id, name=name or task.name, text=text)

    async def responses(self, cid: str, since: int = 0, limit: int = 100) -> list[Response]:
        check_id(cid)
        if since < 0 or limit < 1:
            raise InvalidInput("since must be >= 0 and limit >= 1")
        return await self.store.run(self.store.responses_sync, cid, since, limit)

    async def history(self, cid: str) -> list[dict[str, Any]]:
        check_id(cid)
        return await self.store.run(self.store.history_sync, cid)

    async def wait_for_response(self, cid: str, since: int, timeout: float) -> list[Response]:
        """Delivered responses after `since`, waiting up to `timeout` for the first (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        with self.runtime.bus.subscribe(lambda e: e.conversation_id == cid and e.type == "conversation.response") \
                as queue:
            while True:
                found = await self.responses(cid, since)
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), min(remaining, 1.0))


def jsonl(lines: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)

