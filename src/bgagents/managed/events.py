"""A session's events: what a user sends (stored first, then acted on) and what is read back, listed in
pages or followed live (see mapping.py for how each is derived from the task's stored events)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import Conflict, InvalidInput, NotFound
from . import specs
from .mapping import USER_EVENT, Mapped, Mapper, approval_of, parse_cursor
from .service import PROFILE_PREFIX, Managed

READ_BATCH = 500
MAX_EVENTS_PAGE = 1000
USER_TYPES = ("user.message", "user.interrupt", "user.tool_confirmation")
LATER = {"user.custom_tool_result": "custom tools", "user.define_outcome": "outcomes",
         "user.tool_result": "client-side tool results", "system.message": "system messages"}


def _text_of(event: dict[str, Any], where: str) -> str:
    content = event.get("content")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise InvalidInput(f"{where}.content: a non-empty array of text blocks")
    texts = []
    for index, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise InvalidInput(f"{where}.content[{index}]: {kind!r} blocks {specs.NOT_YET}; send text blocks")
        texts.append(block["text"])
    text = "\n\n".join(texts)
    if not text.strip():
        raise InvalidInput(f"{where}.content: the text is empty")
    return text


def _checked(events: Any, allowed: tuple[str, ...] = USER_TYPES) -> list[dict[str, Any]]:
    if not isinstance(events, list) or not events:
        raise InvalidInput("events: a non-empty array")
    if len(events) > 50:
        raise InvalidInput("events: at most 50 at a time")
    for index, event in enumerate(events):
        kind = event.get("type") if isinstance(event, dict) else None
        if kind in LATER:
            raise InvalidInput(f"events[{index}]: {LATER[kind]} ({kind}) {specs.NOT_YET}")
        if kind not in allowed:
            raise InvalidInput(f"events[{index}].type: {kind!r} cannot be sent here; known: {', '.join(allowed)}")
        if kind == "user.message":
            _text_of(event, f"events[{index}]")
        if kind == "user.tool_confirmation":
            if event.get("result") not in ("allow", "deny"):
                raise InvalidInput(f"events[{index}].result: allow or deny")
            if approval_of(str(event.get("tool_use_id") or "")) is None:
                raise InvalidInput(f"events[{index}].tool_use_id: not the id of an agent.tool_use event of this "
                                   "session (take it from the session.status_idle event's stop_reason.event_ids)")
        if event.get("session_thread_id"):
            raise InvalidInput(f"events[{index}].session_thread_id: threads {specs.NOT_YET}")
    return events


async def mapper(managed: Managed, row: Any) -> Mapper:
    rt = managed.runtime

    async def transcript(task_id: str, since: int, limit: int) -> Any:
        return await rt.transcript(task_id, since=since, limit=limit)

    return Mapper(row.task_id, await managed.session_agent(row), transcript)


async def create_session(managed: Managed, body: dict[str, Any]) -> dict[str, Any]:
    initial = body.get("initial_events")
    if initial:
        _checked(initial, ("user.message",))
    row = await managed.create_session_row(body)
    if initial:
        await send(managed, row.id, initial)
    return await managed.render_session(row)


async def send(managed: Managed, session_id: str, events: Any) -> list[dict[str, Any]]:
    """Stores each event, then acts on it; returns them as stored (with their ids)."""
    events = _checked(events)
    async with managed.lock(session_id):
        row = await managed.session_row(session_id)
        if row.archived_at is not None:
            raise InvalidInput(f"session '{session_id}' is archived: it takes no more events")
        out: list[dict[str, Any]] = []
        how = await mapper(managed, row)
        for event in events:
            out.extend(await _one(managed, row, how, event))
        return out


async def _record(managed: Managed, row: Any, how: Mapper, event: dict[str, Any]) -> dict[str, Any]:
    stored = await managed.runtime.record_event(USER_EVENT, row.task_id, {"event": event})
    return (await how.map(stored))[0][1]


async def _one(managed: Managed, row: Any, how: Mapper, event: dict[str, Any]) -> list[dict[str, Any]]:
    rt = managed.runtime
    kind = event["type"]
    task = await managed.task_of(row)
    if kind == "user.message":
        text = _text_of(event, "event")
        agent = await managed.session_agent(row)
        if task is None:
            rt.models.check(agent["model"]["id"])  # refused before anything is stored
        echo = await _record(managed, row, how, {"type": "user.message", "content": [{"type": "text", "text": text}]})
        if task is None:
            await rt.launch(text, _id=row.task_id, agent=PROFILE_PREFIX + row.id, model=agent["model"]["id"],
                            name=row.title or None)
        else:
            await _continue(managed, row.task_id, text)
        return [echo]
    if kind == "user.interrupt":
        echo = await _record(managed, row, how, {"type": "user.interrupt"})
        if task is not None and not task.finished:
            try:
                await rt.cancel(task.id, "user")
            except Conflict:  # it ended meanwhile: nothing to interrupt
                pass
        return [echo]
    approval_id = approval_of(event["tool_use_id"])
    pending = [a for a in await rt.approvals("pending") if a.id == approval_id and a.task_id == row.task_id]
    if not pending:
        raise NotFound(f"no tool call of this session waits for a confirmation under '{event['tool_use_id']}'")
    confirmation = {"type": "user.tool_confirmation", "tool_use_id": event["tool_use_id"], "result": event["result"]}
    if event.get("deny_message"):
        confirmation["deny_message"] = str(event["deny_message"])
    echo = await _record(managed, row, how, confirmation)
    assert approval_id is not None
    await rt.decide(approval_id, "approve" if event["result"] == "allow" else "deny",
                    confirmation.get("deny_message") or ("denied" if event["result"] == "deny" else None))
    return [echo]


async def _continue(managed: Managed, task_id: str, text: str) -> None:
    """A later message: steers a working task, resumes an idle one (whichever it is by the time it arrives)."""
    rt = managed.runtime
    for _ in range(3):
        task = await rt.get(task_id)
        try:
            if task.finished:
                await rt.resume(task_id, text)
            else:
                await rt.send(task_id, text)
            return
        except Conflict:  # it ended, or started again, in between
            continue
    raise Conflict(f"task {task_id} kept changing state; send the message again")


async def _mapped_after(managed: Managed, row: Any, after: tuple[int, int] | None) -> AsyncIterator[Mapped]:
    """Every stored event of the session after the cursor, mapped, batch by batch."""
    rt, how = managed.runtime, await mapper(managed, row)
    since = after[0] - 1 if after else 0
    while True:
        batch = await rt.stored_events(row.task_id, since=since, limit=READ_BATCH)
        for event in batch:
            since = event.seq
            yield [(c, e) for c, e in await how.map(event) if after is None or _key(c) > after]
        if len(batch) < READ_BATCH:
            return


def _key(cursor_text: str) -> tuple[int, int]:
    found = parse_cursor(cursor_text)
    assert found is not None
    return found


def _page_cursor(page: str | None) -> tuple[int, int] | None:
    if page is None:
        return None
    found = parse_cursor(page)
    if found is None:
        raise InvalidInput("page: not a page token of this list")
    return found


Page = tuple[list[dict[str, Any]], str | None]


async def list_events(managed: Managed, session_id: str, *, page: str | None, limit: int | None,
                      descending: bool, keep: Callable[[dict[str, Any]], bool]) -> Page:
    """A page of the session's events, oldest first (or newest first), with the token of the next page."""
    row = await managed.session_row(session_id)
    size = 100 if limit is None else limit
    if not 1 <= size <= MAX_EVENTS_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_EVENTS_PAGE}")
    after = _page_cursor(page)
    if descending:  # newest first: read them all (a session's events are few), then page backwards
        every = [(c, e) async for items in _mapped_after(managed, row, None) for c, e in items if keep(e)]
        every.reverse()
        if after is not None:
            every = [(c, e) for c, e in every if _key(c) < after]
        chosen = every[:size]
        return [e for _, e in chosen], chosen[-1][0] if len(every) > size else None
    out: list[tuple[str, dict[str, Any]]] = []
    more = False
    async for items in _mapped_after(managed, row, after):
        for c, e in items:
            if keep(e):
                if len(out) == size:
                    more = True
                    break
                out.append((c, e))
        if more:
            break
    return [e for _, e in out], out[-1][0] if more else None


async def follow(managed: Managed, row: Any, since: int,
                 after: tuple[int, int] | None) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The session's events stored after `since` (and after the cursor `after`), then live ones, forever."""
    how = await mapper(managed, row)
    async for event in managed.runtime.events(since=since, task_id=row.task_id):
        for c, e in await how.map(event):
            if after is None or _key(c) > after:
                yield c, e


async def stream_start(managed: Managed, session_id: str, last_event_id: str | None) -> tuple[Any, int,
                                                                                            tuple[int, int] | None]:
    """Where a stream starts: after `Last-Event-ID` (a reconnect misses nothing), else at this moment."""
    row = await managed.session_row(session_id)
    if last_event_id:
        after = parse_cursor(last_event_id)
        if after is None:
            raise InvalidInput("Last-Event-ID: not an event cursor of this stream (the `id:` of an event it sent)")
        return row, after[0] - 1, after
    return row, await managed.runtime.last_event_seq(), None
