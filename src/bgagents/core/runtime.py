"""`Runtime`: the operations on background tasks, usable in any asyncio program without a server."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import pydantic_ai
import sqlalchemy as sa
from dbos import DBOS
from opentelemetry.trace import TracerProvider
from pydantic_ai.messages import (
    ModelRequest,
    ModelResponse,
    RetryPromptPart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model
from pydantic_ai.toolsets import AbstractToolset

from ..errors import BgAgentsError, Conflict, InvalidInput, NotFound, UnknownAgent
from ..runners import NATIVE, with_runner
from ..settings import Settings
from ..tools import ToolContext
from . import db, task_log, worktrees
from .bash_setup import prepare_bash, server_files
from .engine import Engine, workflow_id
from .events import EventBus
from .extensions import Extension
from .identity import Lease, lease_for, new_executor_id, own_pending, pending_executors
from .models import ModelRegistry, concurrency_key, concurrency_limit
from .names import branch_part, task_name
from .names import task_id as new_task_id
from .profile_files import ProfileFiles
from .profiles import Profile
from .runner import Services, expire_if_queued_too_long
from .schema import (
    ACTIVE,
    APPROVAL_STATES,
    TERMINAL,
    Approval,
    Event,
    Output,
    Task,
    TranscriptEntry,
    Worktree,
    WorktreeDiff,
)
from .spawner import RuntimeSpawner
from .store import Store, continuable, load_messages
from .usage import UsageGroup, group_usage, subtree_totals

log = logging.getLogger("bgagents")

LIMIT_KEYS = frozenset({"requests", "input_tokens", "output_tokens", "total_tokens", "tool_calls", "cost_usd"})
WATCH_INTERVAL = 0.5  # seconds between checks for cancels made by other processes
WAIT_POLL = 2.0  # seconds between re-reads of a waited-for task (for changes made by other processes)
ALONE_POLL = 30.0  # the same on SQLite, where no other process writes: a safety net, every change is announced
TERMINAL_EVENTS = frozenset({"task.completed", "task.failed", "task.cancelled"})


class Runtime:
    """The durable runtime of this process. Use as `async with Runtime() as rt:`.

    This is the core alone; `bgagents.Runtime` is this with conversations and schedules attached.
    Features attach through `extensions` (see `bgagents.core.extensions`)."""

    def __init__(self, settings: Settings | None = None, *, clock: Callable[[], float] = time.time,
                 executor_id: str | None = None, tracer_provider: TracerProvider | None = None,
                 extensions: Sequence[Extension] = ()) -> None:
        """`tracer_provider`: OpenTelemetry spans for each turn, model request and tool call (off without one)."""
        self.settings = settings or Settings()
        self.tracer_provider = tracer_provider
        self.clock = clock
        self.executor_id = executor_id or new_executor_id()
        self._lease: Lease | None = None
        self._free_since: dict[str, float] = {}  # executors whose lock was seen free, and since when
        self._let_go: set[str] = set()  # tasks whose turns this process stopped while its lock was lost
        self.extensions: builtins.list[Extension] = list(extensions)
        self._launched = False  # DBOS launched by this runtime and not yet destroyed
        self.models = ModelRegistry()
        self.bus = EventBus()
        self._profiles: ProfileFiles | None = None
        self._started = False
        self._watcher: asyncio.Task[None] | None = None
        self._git_lock = asyncio.Lock()  # one git operation on the shared repository at a time
        self._starting: set[asyncio.Task[None]] = set()  # batches whose workflows are being started

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def claim(self) -> None:
        """Takes this process's identity lock: on SQLite, `DatabaseInUse` if a live process holds the
        database. `start` does it too; a server calls it first to refuse before it binds its port."""
        if self._lease is None:
            home = self.settings.home.expanduser()
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # it holds the token and every prompt: its user's alone
                home.chmod(0o700)
            lease = lease_for(self.settings.sqlalchemy_url, self.executor_id)
            lease.acquire()
            self._lease = lease

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    async def start(self) -> None:
        self.claim()
        try:
            await self._start()
        except BaseException:
            if self._launched:  # DBOS is one per process: a failed start must not leave it to the next
                self._launched = False
                with contextlib.suppress(Exception):
                    self.engine.destroy()
            self._release()  # a runtime that did not start holds nothing
            raise

    async def _start(self) -> None:
        # The agents run in the background on the user's behalf, so pydantic-ai's first-run banner (a note on
        # observability, on stderr) is not this program's to print: pydantic-ai's own switch for a program that
        # hands runs to a framework of its own (traces: see `tracer_provider`).
        pydantic_ai.BANNER_ENABLED = False
        settings = self.settings
        workspace = settings.workspace_path
        workspace.mkdir(parents=True, exist_ok=True)
        outputs = settings.home / "outputs"
        outputs.mkdir(mode=0o700, parents=True, exist_ok=True)
        own_files = server_files(settings)
        sandbox = await prepare_bash(settings, own_files)
        self._profiles = ProfileFiles(settings)
        self._profiles.current()  # a broken file is logged at start
        self.db_engine = db.create_engine(settings.sqlalchemy_url)
        for extension in self.extensions:
            if extension.metadata is not None:
                db.create_tables(self.db_engine, extension.metadata)
        self.store = Store(self.db_engine, clock=self.clock, extensions=self.extensions)
        self.services = Services(store=self.store, bus=self.bus, models=self.models, profile=self.profile,
                                 workspace=workspace, outputs_dir=outputs.resolve(), limits=settings.limits,
                                 spawner=RuntimeSpawner(self), clock=self.clock,
                                 tracer_provider=self.tracer_provider, sandbox=sandbox, toolsets=self._toolsets,
                                 server_files=own_files)
        for extension in self.extensions:
            extension.attach(self)
        c = settings.concurrency
        self.engine = Engine(self.services, settings.sqlalchemy_url, settings.queue_polling_interval,
                             executor_id=self.executor_id,
                             limits={c.default, *c.providers.values(), *c.models.values()})
        self.engine.launch()
        self._launched = True
        await self._take_over()
        await self.engine.start_queues(serial=tuple(q for extension in self.extensions for q in extension.queues))
        self._started = True
        await self._reconcile()
        for extension in self.extensions:
            await extension.start()
        self._watcher = asyncio.create_task(self._watch())

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful: no new step starts, running turns stop at a step boundary and resume on next start."""
        if not self._started:
            return
        self._started = False
        self.engine.stopping()  # extensions stop their own workflows first
        for extension in reversed(self.extensions):
            await extension.stop()
        for starting in list(self._starting):  # what they did not start is queued; the next start does
            starting.cancel()
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.engine.drain(grace)
        self.engine.destroy()
        self._launched = False
        self.store.close()
        self.db_engine.dispose()
        await self.models.aclose()
        self._release()

    def profiles(self) -> dict[str, Profile]:
        """Every usable profile by name; their files are read again when they change."""
        assert self._profiles is not None, "the runtime is not started"
        return self._profiles.current()

    def profile(self, name: str) -> Profile:
        """The agent profile `name`: a file's or the config's, else one an extension defines (a managed
        agent's session); else an error naming the known ones."""
        assert self._profiles is not None, "the runtime is not started"
        try:
            return self._profiles.get(name)
        except UnknownAgent:
            for extension in self.extensions:
                found = extension.profile(name)
                if found is not None:
                    return found
            raise

    def broken_profiles(self) -> dict[str, str]:
        """Profiles that cannot be used (or only in an earlier version): name → what is wrong."""
        assert self._profiles is not None, "the runtime is not started"
        return self._profiles.broken()

    async def _toolsets(self, task: Task) -> builtins.list[AbstractToolset[ToolContext]]:
        """The tools extensions add to this task's turn."""
        return [toolset for extension in self.extensions for toolset in await extension.toolsets(task)]

    def register_model(self, name: str, model: Model) -> None:
        """Makes `model` usable under `name` (e.g. a FunctionModel in tests, a configured client)."""
        self.models.register(name, model)

    async def _take_over(self) -> None:
        """Workflows left pending by processes that are gone (a crash, a kill -9, an earlier run of this
        one) go back on their queues. A live process's are left alone: its lock is held. On PostgreSQL a
        lock must be seen free for `takeover_grace` first: a live process whose lock connection dropped
        takes its lock again within `lock_check_interval`."""
        assert self._lease is not None
        lease = self._lease
        several = not self.settings.sqlalchemy_url.startswith("sqlite")
        grace = self.settings.processes.takeover_grace if several else 0.0
        now = time.monotonic()
        free = set()
        for executor in await self.store.run(pending_executors, self.db_engine):
            if not await self.store.run(lease.is_free, executor):
                continue
            free.add(executor)
            if now - self._free_since.setdefault(executor, now) < grace:
                continue
            if not await self.store.run(lease.claim_dead, executor):
                continue
            try:
                count = await self.engine.take_over([executor])
                if count:
                    log.info("took over %d workflow(s) of the stopped process %s", count, executor)
            finally:
                await self.store.run(lease.release_claim, executor)
        for executor in set(self._free_since) - free:  # held again, or nothing left to take
            del self._free_since[executor]

    async def _keep_lease(self) -> None:
        """PostgreSQL: this process's lock connection can drop while it lives. It takes its lock again on a
        new connection; if another process holds it meanwhile (taking this one's work over), or holds work
        this one still runs, this process stops those turns, writing nothing, and goes on without them: a
        process never runs work that a live process holds. Turns it stopped that nobody took go back on
        their queues once the lock is held again."""
        assert self._lease is not None
        state = await self.store.run(self._lease.check)
        if state == "held":
            return
        running = list(self.services.active)
        if state == "lost":
            if running:
                log.warning("lost the lock of executor %s and cannot take it again (another process holds it, or "
                            "the database is out of reach): stopping %d turn(s) here, without cancelling them",
                            self.executor_id, len(running))
            self._let_go.update(running)
            self.engine.let_go(running)
            return
        ours = await self.store.run(own_pending, self.db_engine, self.executor_id)
        held = {workflow.rsplit(".", 1)[0] for workflow in ours}
        taken = [task_id for task_id in running if task_id not in held]
        log.warning("the lock connection of executor %s dropped; it holds its lock again, on a new one (turns "
                    "handed to another process meanwhile, which stop here: %d)", self.executor_id, len(taken))
        self.engine.let_go(taken)
        requeue = {workflow: queue for workflow, queue in ours.items()
                   if workflow.rsplit(".", 1)[0] in self._let_go and workflow.rsplit(".", 1)[0] not in running}
        self._let_go.clear()
        if requeue:
            await self.engine.requeue(requeue)

    async def _reconcile(self) -> None:
        """Tasks whose workflow was never enqueued (a crash between the two writes) are enqueued now; on
        SQLite that is every queued task that had not started, while those DBOS resumed hold their slots."""
        if self.engine.admission is not None:
            await self.engine.hold_pending()
        for task in sorted(await self.store.list_tasks(status=["queued"]), key=lambda t: t.queued_at or t.created_at):
            if not await self.engine.workflow_exists(task.id, task.turn):
                log.info("re-enqueueing task %s after a restart", task.id)
                prompt = await self._turn_prompt(task)
                await self._enqueue(task, prompt)

    async def _watch(self) -> None:
        """Housekeeping: interrupts local turns another process cancelled, expires queued tasks past
        `queue_ttl`, and prunes finished tasks past the retention period."""
        limits, processes = self.settings.limits, self.settings.processes
        last_sweep = last_takeover = last_check = 0.0
        several = not self.settings.sqlalchemy_url.startswith("sqlite")  # other processes may die
        interval = min(WATCH_INTERVAL, limits.sweep_interval, *([processes.lock_check_interval] if several else []))
        while True:
            await asyncio.sleep(interval)
            try:
                if several and time.monotonic() - last_check >= processes.lock_check_interval:
                    last_check = time.monotonic()
                    await self._keep_lease()
                if several and time.monotonic() - last_takeover >= processes.takeover_interval:
                    last_takeover = time.monotonic()
                    await self._take_over()
                ids = list(self.services.active)
                if ids:
                    for task in await self.store.list_tasks(status=["cancelled"], ids=ids):
                        await self.engine.cancel(task.id, task.turn)
                if time.monotonic() - last_sweep >= limits.sweep_interval:
                    last_sweep = time.monotonic()
                    await self._sweep()
            except Exception:  # the watcher must outlive a passing database error
                log.exception("housekeeping")

    async def _sweep(self) -> None:
        limits = self.settings.limits
        now = self.clock()
        if limits.queue_ttl:
            for task in await self.store.list_tasks(status=["queued"]):
                if await expire_if_queued_too_long(self.services, task):
                    await self.engine.cancel(task.id, task.turn)
        pruned = await self.prune(now - limits.retention_days * 86400)
        if pruned:
            log.info("retention: removed %d finished task(s)", pruned)
        for extension in self.extensions:
            try:
                await extension.sweep(now)
            except Exception:  # one extension's error does not keep the others from their housekeeping
                log.exception("housekeeping of %s", extension.name)

    async def prune(self, finished_before: float) -> int:
        """Removes tasks finished before the cutoff (see Store.prune_sync for what stays), with their workflows."""
        removed = await self.store.prune(finished_before)
        await self.engine.delete_workflows([workflow_id(tid, t) for tid, turn in removed.items()
                                            for t in range(1, turn + 1)])
        if removed:
            async with self._git_lock:
                await asyncio.to_thread(worktrees.remove_orphans, self.settings.home / "worktrees",
                                        await self.store.task_ids_with_worktrees())
        return len(removed)

    # -- launch ------------------------------------------------------------------------------------

    def _concurrency(self, model: str) -> tuple[str, int]:
        key = concurrency_key(model)
        c = self.settings.concurrency
        return key, concurrency_limit(key, c.default, c.providers, c.models)

    def _pick_model(self, model: str | None, profile: Profile) -> str:
        name = (model or profile.model or self.settings.model or "").strip()
        if not name and profile.runner == NATIVE:
            raise InvalidInput("no model given: pass a model (e.g. 'openai:gpt-4o' or 'demo') "
                               "or set BGAGENTS_MODEL", code="no_model")
        name = with_runner(name, profile.runner)
        self.models.check(name)
        return name

    async def _enqueue(self, task: Task, prompt: str) -> None:
        key, limit = self._concurrency(task.model)
        await self.engine.enqueue(key, limit, task.id, task.turn, prompt, task.priority)

    async def _turn_prompt(self, task: Task) -> str:
        events = await self.store.events_since(0, task_id=task.id, limit=10_000)
        prompts = [e.data["prompt"] for e in events if e.type == "task.resumed" and e.data.get("turn") == task.turn]
        return prompts[-1] if prompts else task.prompt

    async def launch(self, prompt: str, *, name: str | None = None, description: str = "",
                     agent: str | None = None, model: str | None = None,
                     fallback_models: list[str] | None = None, parent_id: str | None = None,
                     priority: int = 0, limits: dict[str, float] | None = None,
                     instructions: str | None = None, output_schema: dict[str, Any] | None = None,
                     isolation: str | None = None,
                     _id: str | None = None, _history: builtins.list[Any] | None = None,
                     _forked_from: dict[str, Any] | None = None, _spawn_key: str | None = None,
                     _worktree_start: str | None = None,
                     _also: Callable[[sa.Connection], None] | None = None) -> Task:
        """Queues a task and returns it at once, in `queued`.

        `instructions` come before the profile's prompt; with `output_schema` (a JSON schema of an
        object) the result is structured data (`result.data`) instead of text. With `isolation="worktree"`
        (or the profile's) the task works in its own git worktree of the workspace (see core/worktrees.py);
        a child of such a task works in its parent's. `_also` writes in the transaction that stores the
        task (an extension's record of what launched it)."""
        task = await self._prepare(
            prompt, name=name, description=description, agent=agent, model=model, fallback_models=fallback_models,
            parent_id=parent_id, priority=priority, limits=limits, instructions=instructions,
            output_schema=output_schema, isolation=isolation, _id=_id, _forked_from=_forked_from,
            _worktree_start=_worktree_start)
        try:
            event = await self.store.insert_task(task, _history or [], _spawn_key, _also)
        except Exception:
            if task.worktree is not None and not _id:
                await asyncio.to_thread(worktrees.remove, task.worktree)
            raise
        self.bus.announce(event)
        await self._enqueue_new(task)
        return task

    async def launch_many(self, items: Sequence[Mapping[str, Any]]) -> builtins.list[Task]:
        """Queues every task of `items` (each the keyword arguments of `launch`, `prompt` included) in one
        transaction: a bad item launches nothing, and the error names it (`tasks[3]: ...`)."""
        public = set(inspect.signature(self.launch).parameters) - {"self"}
        prepared: builtins.list[Task] = []
        per_root: dict[str, int] = {}
        try:
            for index, item in enumerate(items):
                try:
                    if not isinstance(item, Mapping):
                        raise InvalidInput("each item must be an object with a prompt")
                    unknown = sorted(k for k in item if k not in public or k.startswith("_"))
                    if unknown:
                        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}")
                    if "prompt" not in item:
                        raise InvalidInput("the prompt is missing", code="empty_prompt")
                    task = await self._prepare(**item, _siblings=per_root)
                except BgAgentsError as exc:
                    raise type(exc)(f"tasks[{index}]: {exc.message}", code=exc.code) from None
                except TypeError as exc:  # a value of the wrong kind
                    raise InvalidInput(f"tasks[{index}]: {exc}") from None
                if task.parent_id:
                    per_root[task.root_id] = per_root.get(task.root_id, 0) + 1
                prepared.append(task)
            events = await self.store.insert_tasks([(task, (), None) for task in prepared])
        except BaseException:
            for task in prepared:
                if task.worktree is not None:
                    await asyncio.to_thread(worktrees.remove, task.worktree)
            raise
        for event in events:
            self.bus.announce(event)
        # stored, so they are launched: a crash from here loses none (`_reconcile`). The caller does not
        # wait for a thousand workflows to start, one after the other.
        starting = asyncio.get_running_loop().create_task(self._enqueue_all(prepared), context=contextvars.Context())
        self._starting.add(starting)
        starting.add_done_callback(self._starting.discard)
        return prepared

    async def _enqueue_all(self, tasks: builtins.list[Task]) -> None:
        for task in tasks:
            try:
                await self._enqueue_new(task)
            except Exception:  # `_enqueue_new` failed the task
                log.exception("could not start task %s", task.id)

    async def _enqueue_new(self, task: Task) -> None:
        try:
            await self._enqueue(task, task.prompt)
        except Exception as exc:
            await self._fail_unstarted(task, f"could not enqueue: {exc}")
            raise

    async def _prepare(self, prompt: str, *, name: str | None = None, description: str = "",
                       agent: str | None = None, model: str | None = None,
                       fallback_models: builtins.list[str] | None = None, parent_id: str | None = None,
                       priority: int = 0, limits: dict[str, float] | None = None,
                       instructions: str | None = None, output_schema: dict[str, Any] | None = None,
                       isolation: str | None = None, _id: str | None = None,
                       _forked_from: dict[str, Any] | None = None, _worktree_start: str | None = None,
                       _siblings: dict[str, int] | None = None) -> Task:
        """The task `launch` would queue, checked (and its worktree made), not yet stored.
        `_siblings` counts tasks of the same batch per root, for the descendant limit."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("the prompt is empty", code="empty_prompt")
        profile = self.profile(agent or "general")
        model_name = self._pick_model(model, profile)
        fallbacks = list(fallback_models if fallback_models is not None else profile.fallback_models)
        for fallback in fallbacks:
            self.models.check(fallback)
        limits = {**profile.limits, **(limits or {})}
        unknown = sorted(set(limits) - LIMIT_KEYS)
        if unknown:
            raise InvalidInput(f"unknown limits: {', '.join(unknown)}; known: {', '.join(sorted(LIMIT_KEYS))}")
        if isolation not in (None, "none", "worktree"):
            raise InvalidInput(f"unknown isolation '{isolation}'; known: none, worktree")
        isolated = (isolation or profile.isolation) == "worktree"
        root_id, depth, workspace = "", 0, None
        if parent_id:
            parent = await self.store.get_task(parent_id) if parent_id.startswith("bg_") else None
            if parent_id.startswith("bg_") and parent is None:
                raise NotFound(f"parent task '{parent_id}' does not exist")
            if parent is not None:
                root_id, depth, workspace = parent.root_id, parent.depth + 1, parent.workspace
                await self._check_spawn_limits(root_id, depth, (_siblings or {}).get(root_id, 0))
        if output_schema is not None and (not isinstance(output_schema, dict)
                                          or output_schema.get("type") != "object"):
            raise InvalidInput("output_schema must be a JSON schema of an object (\"type\": \"object\")")
        key, _ = self._concurrency(model_name)
        tid = _id or new_task_id()
        now = self.clock()
        worktree = None
        if isolated:
            existing = await self.store.get_task(tid) if _id else None  # a replayed launch keeps its worktree
            worktree = existing.worktree if existing else await asyncio.to_thread(
                worktrees.create, self.settings.workspace_path, self.settings.home / "worktrees", tid,
                branch_part(task_name(name, prompt)), _worktree_start)
            assert worktree is not None
            workspace = worktree.workspace
        task = Task(
            id=tid, name=task_name(name, prompt), description=description, status="queued", prompt=prompt,
            agent=profile.name, model=model_name, fallback_models=fallbacks, concurrency_key=key,
            priority=int(priority), parent_id=parent_id or None, root_id=root_id or tid, depth=depth,
            limits=limits, created_at=now, queued_at=now, forked_from=_forked_from,
            instructions=instructions, output_schema=output_schema, workspace=workspace, worktree=worktree,
        )
        return task

    async def _check_spawn_limits(self, root_id: str, depth: int, batch: int = 0) -> None:
        spawn = self.settings.spawn
        if depth > spawn.max_depth:
            raise InvalidInput(f"depth limit: a task at depth {depth} would pass max_depth {spawn.max_depth}",
                               code="spawn_limit")
        descendants = await self.store.count_descendants(root_id) + batch
        if descendants >= spawn.max_descendants:
            raise InvalidInput(f"descendant limit: the root task {root_id} already has {descendants} descendants "
                               f"(max_descendants {spawn.max_descendants})", code="spawn_limit")

    async def _fail_unstarted(self, task: Task, message: str) -> None:
        event = await self.store.update_task(task.id, {"status": "failed", "error": message, "end_reason": "error",
                                                       "finished_at": self.clock()},
                                             "task.failed", {"error": message}, only_if_status=ACTIVE)
        await self.services.publish(event)
        if event is not None:
            task_log.ended(task, "failed", "error", message)

    # -- reading -----------------------------------------------------------------------------------

    async def get(self, task_id: str) -> Task:
        task = await self.store.get_task(task_id)
        if task is None:
            raise NotFound(f"no task with id '{task_id}'")
        return task

    async def list(self, status: builtins.list[str] | str | None = None, parent_id: str | None = None,
                   limit: int | None = None) -> builtins.list[Task]:
        statuses = [status] if isinstance(status, str) else status
        for s in statuses or []:
            if s not in ACTIVE | TERMINAL:
                raise InvalidInput(f"unknown status '{s}'; known: {', '.join(sorted(ACTIVE | TERMINAL))}")
        if limit is not None and limit < 1:
            raise InvalidInput("limit must be at least 1")
        return await self.store.list_tasks(statuses, parent_id, limit)

    async def find(self, status: builtins.list[str] | None = None, search: str | None = None, *,
                   top_level: bool = False, offset: int = 0,
                   limit: int = 50) -> tuple[builtins.list[Task], int]:
        """A page of tasks (newest first) whose id, name, prompt, agent or model contains `search`, and the
        number that match in all: for views that page through many tasks."""
        for s in status or []:
            if s not in ACTIVE | TERMINAL:
                raise InvalidInput(f"unknown status '{s}'; known: {', '.join(sorted(ACTIVE | TERMINAL))}")
        if offset < 0 or limit < 1:
            raise InvalidInput("offset must be >= 0 and limit >= 1")
        return await self.store.run(self.store.find_tasks_sync, status, search or None, top_level, offset, limit)

    async def descendants(self, root_ids: builtins.list[str], limit: int = 1000) -> builtins.list[Task]:
        """Every task launched under these root tasks (at any depth), oldest first."""
        return await self.store.run(self.store.tasks_under_sync, root_ids, limit) if root_ids else []

    async def last_event_seq(self) -> int:
        """The sequence number of the newest stored event (0 when there is none): where to follow from."""
        return await self.store.run(self.store.last_event_seq_sync)

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it ends, or as it is when `timeout` passes.

        Woken by this process's terminal events; the periodic re-read covers other processes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.bus.subscribe(lambda e: e.type in TERMINAL_EVENTS, task_id=task_id) as queue:
            while True:
                task = await self.get(task_id)
                if task.finished:
                    return task
                poll = self._poll(WAIT_POLL)
                remaining = poll if deadline is None else min(poll, deadline - time.monotonic())
                if remaining <= 0:
                    return task
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), timeout=remaining)

    def _poll(self, seconds: float) -> float:
        """How often a waiter re-reads the database for changes this process did not announce: only
        other processes make those, and on SQLite there are none (core/identity.py)."""
        return ALONE_POLL if self.settings.sqlalchemy_url.startswith("sqlite") else seconds

    async def output(self, task_id: str, wait: bool = False, timeout: float = 60.0) -> Output:
        if timeout < 0:
            raise InvalidInput("timeout must not be negative")
        task = await (self.wait(task_id, timeout) if wait else self.get(task_id))
        return Output(id=task.id, status=task.status, finished=task.finished, timed_out=wait and not task.finished,
                      result=task.result, error=task.error, end_reason=task.end_reason, progress=task.progress)

    async def transcript(self, task_id: str, since: int = 0, limit: int = 100,
                         tool_results: bool = True) -> builtins.list[TranscriptEntry]:
        """Transcript entries of messages `since` (a message index), `limit` messages at a time."""
        await self.get(task_id)
        if since < 0 or limit < 1:
            raise InvalidInput("since must be >= 0 and limit >= 1")
        rows = await self.store.message_rows(task_id, since=since, limit=limit)
        entries: builtins.list[TranscriptEntry] = []
        for row, message in zip(rows, load_messages(r["message"] for r in rows), strict=True):
            entries.extend(_entries(row["idx"], row["turn"], message, tool_results))
        return entries

    async def with_subtree(self, tasks: builtins.list[Task]) -> builtins.list[Task]:
        """The tasks, each with `subtree`: its usage and cost together with all its descendants'."""
        totals = subtree_totals(await self.store.usage_of_trees(sorted({t.root_id for t in tasks})))
        return [t.model_copy(update={"subtree": totals.get(t.id)}) for t in tasks]

    async def usage(self, by: str = "model", since: float | None = None) -> builtins.list[UsageGroup]:
        """Totals of tokens, requests, tool calls and cost per model, agent or UTC day, of tasks created
        since `since` (a Unix time; default: all)."""
        if by not in ("model", "agent", "day"):
            raise InvalidInput(f"unknown grouping '{by}'; known: model, agent, day")
        return group_usage(await self.store.usage_since(since or 0.0), by)  # type: ignore[arg-type]

    async def running_counts(self) -> dict[str, int]:
        """Running (or waiting) tasks per concurrency key; a key with none is absent."""
        return await self.store.running_counts()

    async def stored_events(self, task_id: str, since: int = 0, limit: int = 500) -> builtins.list[Event]:
        """The task's stored events after `since`, oldest first, at most `limit`: what `events` replays."""
        if since < 0 or limit < 1:
            raise InvalidInput("since must be >= 0 and limit >= 1")
        return await self.store.events_since(since, task_id=task_id, limit=limit)

    async def record_event(self, type_: str, task_id: str | None, data: dict[str, Any]) -> Event:
        """Stores an extension's own event in the task's event log, then announces it: it is replayed and
        followed like the core's (an extension names its types with its own prefix, e.g. `managed.`)."""
        event = await self.store.add_event(type_, task_id, data)
        self.bus.announce(event)
        return event

    async def events(self, since: int = 0, task_id: str | None = None,
                     conversation_id: str | None = None) -> AsyncIterator[Event]:
        """Stored events after `since`, then live ones, in order and without gaps."""
        def accept(e: Event) -> bool:
            return (task_id is None or e.task_id == task_id) and (
                conversation_id is None or e.conversation_id == conversation_id)

        with self.bus.subscribe(accept, task_id=task_id) as queue:
            last = since
            while True:
                batch = await self.store.events_since(last, task_id, conversation_id)
                for event in batch:
                    last = event.seq
                    yield event
                if len(batch) == 500:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(queue.get(), timeout=self._poll(1.0))
                while not queue.empty():
                    queue.get_nowait()

    # -- control -----------------------------------------------------------------------------------

    async def cancel(self, task_id: str, end_reason: str = "user") -> Task:
        """A queued task leaves its queue; a running one is interrupted (its model request or tool too)."""
        task = await self.get(task_id)
        if task.finished:
            raise Conflict(f"task {task_id} is already {task.status}", code="already_finished")
        event = await self.store.update_task(
            task_id, {"status": "cancelled", "end_reason": end_reason, "finished_at": self.clock(),
                      "error": "cancelled by the user" if end_reason == "user" else f"cancelled: {end_reason}"},
            "task.cancelled", {"end_reason": end_reason}, only_if_status=ACTIVE)
        if event is None:
            raise Conflict(f"task {task_id} finished before it could be cancelled", code="already_finished")
        await self.services.publish(event)
        task_log.ended(task, "cancelled", end_reason)
        await self.engine.cancel(task_id, task.turn)
        return await self.get(task_id)

    async def cancel_all(self, parent_id: str | None = None) -> builtins.list[Task]:
        """Cancels every queued or running task, or every descendant of `parent_id`."""
        targets = await self.store.list_tasks(status=list(ACTIVE))
        if parent_id is not None:
            children: dict[str | None, builtins.list[Task]] = {}
            every = await self.store.list_tasks()
            for t in every:
                children.setdefault(t.parent_id, []).append(t)
            wanted: set[str] = set()
            stack = [parent_id]
            while stack:
                for child in children.get(stack.pop(), []):
                    if child.id not in wanted:
                        wanted.add(child.id)
                        stack.append(child.id)
            targets = [t for t in targets if t.id in wanted]
        cancelled = []
        for task in targets:
            with contextlib.suppress(Conflict, NotFound):
                cancelled.append(await self.cancel(task.id))
        return cancelled

    async def resume(self, task_id: str, prompt: str) -> Task:
        """A follow-up turn on the task's own session, keeping its id; refused while it is active."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidInput("the prompt is empty", code="empty_prompt")
        task = await self.get(task_id)
        if not task.finished:
            raise Conflict(f"task {task_id} is {task.status}; resume works on a finished task "
                           "(use send to steer a running one)")
        self.models.check(task.model)
        turn = task.turn + 1
        event = await self.store.update_task(
            task_id, {"status": "queued", "turn": turn, "finished_at": None, "error": None, "end_reason": None,
                      "result": None, "queued_at": self.clock()},
            "task.resumed", {"turn": turn, "prompt": prompt}, only_if_status=TERMINAL)
        if event is None:
            raise Conflict(f"task {task_id} changed state; try again")
        await self.services.publish(event)
        task = await self.get(task_id)
        await self._enqueue(task, prompt)
        return task

    async def send(self, task_id: str, message: str) -> Task:
        """Steers a task: the message reaches the agent before its next model request. Stored first."""
        if not isinstance(message, str) or not message.strip():
            raise InvalidInput("the message is empty", code="empty_message")
        task = await self.get(task_id)
        event = await self.store.add_steering(task_id, message, ACTIVE)
        if event is None:
            raise Conflict(f"task {task_id} is {task.status}; use resume to give a finished task a new prompt")
        await self.services.publish(event)
        return await self.get(task_id)

    async def fork(self, task_id: str, prompt: str, at: int | None = None, model: str | None = None,
                   name: str | None = None, agent: str | None = None, priority: int | None = None,
                   _id: str | None = None, _spawn_key: str | None = None) -> Task:
        """A new task on a copy of the session (whole, or its first `at` messages), optionally another model."""
        source = await self.get(task_id)
        rows = await self.store.message_rows(task_id)
        if at is not None and not 0 <= at <= len(rows):
            raise InvalidInput(f"at must be between 0 and {len(rows)} (the transcript's message count)")
        history = continuable(load_messages(r["message"] for r in rows[: len(rows) if at is None else at]))
        start = None
        if source.worktree is not None and source.worktree.state == "active":  # the fork starts from its files
            await asyncio.to_thread(worktrees.commit_all, source.worktree, f"bgagents: {source.name} before a fork")
            start = source.worktree.branch
        return await self.launch(
            prompt, name=name, agent=agent or source.agent, model=model or source.model,
            fallback_models=source.fallback_models, parent_id=source.parent_id,
            priority=source.priority if priority is None else priority,
            limits=source.limits, instructions=source.instructions, output_schema=source.output_schema,
            _id=_id, _history=history, _spawn_key=_spawn_key,
            _forked_from={"task_id": source.id, "at": len(history)},
            isolation="worktree" if source.worktree is not None else None, _worktree_start=start,
        )

    # -- isolated workspaces -------------------------------------------------------------------------

    async def _worktree(self, task_id: str) -> tuple[Task, Worktree]:
        task = await self.get(task_id)
        if task.worktree is None:
            raise InvalidInput(f"task {task_id} has no worktree (it was not launched with isolation 'worktree')",
                               code="no_worktree")
        return task, task.worktree

    async def diff(self, task_id: str) -> WorktreeDiff:
        """The task's changes: its branch against where it started, uncommitted edits included."""
        task, wt = await self._worktree(task_id)
        async with self._git_lock:
            stat, patch, files = await asyncio.to_thread(worktrees.diff, wt, f"bgagents: {task.name}")
        return WorktreeDiff(task_id=task.id, branch=wt.branch, base=wt.base, state=wt.state, stat=stat,
                            files=files, patch=patch)

    async def merge(self, task_id: str) -> Task:
        """Merges a finished task's branch into the workspace's current branch and removes its worktree.

        A conflict is a `Conflict` naming the files; nothing is merged then."""
        task, wt = await self._worktree(task_id)
        if not task.finished:
            raise Conflict(f"task {task_id} is {task.status}: merge it once it has ended (or cancel it)")
        async with self._git_lock:
            commit = await asyncio.to_thread(worktrees.merge, wt, f"bgagents: merge {task.name} ({task.id})")
        return await self._set_worktree_state(task, wt, "merged", {"commit": commit})

    async def discard(self, task_id: str) -> Task:
        """Throws a task's changes away: its worktree and branch are removed (a running task is cancelled)."""
        task, wt = await self._worktree(task_id)
        if wt.state != "active":
            raise Conflict(f"this worktree was already {wt.state}", code="already_" + wt.state)
        if not task.finished:
            await self.cancel(task_id)
        async with self._git_lock:
            await asyncio.to_thread(worktrees.remove, wt)
        return await self._set_worktree_state(task, wt, "discarded", {})

    async def _set_worktree_state(self, task: Task, wt: Worktree, state: str, data: dict[str, Any]) -> Task:
        changed = wt.model_copy(update={"state": state})
        event = await self.store.update_task(task.id, {"worktree": changed.model_dump(mode="json")},
                                             f"task.worktree_{state}", {"branch": wt.branch, **data})
        await self.services.publish(event)
        return await self.get(task.id)

    # -- approvals ---------------------------------------------------------------------------------

    async def approvals(self, status: str | None = "pending") -> builtins.list[Approval]:
        if status not in (None, *APPROVAL_STATES):
            raise InvalidInput(f"unknown approval status '{status}'; known: {', '.join(APPROVAL_STATES)}")
        return await self.store.approvals(status)

    async def decide(self, approval_id: str, decision: str, reason: str | None = None) -> Approval:
        """Approves or denies a pending tool call; the waiting task goes on at once. Of decisions made at
        once, exactly one wins; the others are told which (409)."""
        if decision not in ("approve", "deny"):
            raise InvalidInput("decision must be 'approve' or 'deny'")
        decided = await self.store.decide_approval(approval_id, decision, reason)
        if decided is None:
            found = await self.store.approvals(approval_id=approval_id)
            if not found:
                raise NotFound(f"no approval with id '{approval_id}'")
            why = f" ({found[0].decision_reason})" if found[0].decision_reason else ""
            raise Conflict(f"approval {approval_id} is already {found[0].status}{why}", code="already_decided")
        event, workflow = decided
        await self.services.publish(event)
        await self.engine.send_decision(workflow, approval_id, {"decision": decision, "reason": reason})
        return (await self.store.approvals(approval_id=approval_id))[0]

    async def workflow_statuses(self, task_id: str) -> builtins.list[str]:
        """DBOS's view of the task's workflows (for diagnostics and tests)."""
        task = await self.get(task_id)
        out: builtins.list[str] = []
        for turn in range(1, task.turn + 1):
            status = await DBOS.get_workflow_status_async(f"{task_id}.{turn}")
            out.append(status.status if status else "missing")
        return out


def _text(content: Any) -> str:
    return content if isinstance(content, str) else str(content)


def _entries(index: int, turn: int, message: Any, tool_results: bool) -> list[TranscriptEntry]:
    out: list[TranscriptEntry] = []
    when = getattr(message, "timestamp", None)
    ts = when.timestamp() if when else None

    def add(role: Any, content: str, **kw: Any) -> None:
        out.append(TranscriptEntry(index=index, turn=turn, role=role, content=content, time=ts, **kw))

    if isinstance(message, ModelRequest):
        for part in message.parts:
            if isinstance(part, SystemPromptPart):
                add("system", part.content)
            elif isinstance(part, UserPromptPart):
                add("user", _text(part.content))
            elif isinstance(part, ToolReturnPart) and tool_results:
                add("tool_result", part.model_response_str(), tool_name=part.tool_name,
                    tool_call_id=part.tool_call_id)
            elif isinstance(part, RetryPromptPart) and tool_results:
                add("retry", part.model_response(), tool_name=part.tool_name, tool_call_id=part.tool_call_id)
    elif isinstance(message, ModelResponse):
        for rpart in message.parts:
            if isinstance(rpart, TextPart) and rpart.content:
                add("assistant", rpart.content)
            elif isinstance(rpart, ToolCallPart):
                add("tool_call", rpart.args_as_json_str(), tool_name=rpart.tool_name, tool_call_id=rpart.tool_call_id)
    return out
