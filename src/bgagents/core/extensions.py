"""How features attach to the runtime from above (conversations, schedules, channels).

The core calls these hooks and knows nothing else of what is attached: an extension is a subclass
of `Extension` that overrides the hooks it needs, given to the core `Runtime` in `extensions=`.
Every hook does nothing by default.

Order at start: the extension's tables are created, `attach(runtime)` (the store and the engine
exist; DBOS has not launched, so workflows DBOS recovers find the extension ready), DBOS launches
with the extension's `queues`, then `start()`. At stop, `stop()` comes first, in reverse order.
DBOS workflows are registered by decorating module-level functions (`@DBOS.workflow`), which
happens when the extension's module is imported, before the runtime starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from pydantic_ai.toolsets import AbstractToolset

    from ..tools import ToolContext
    from .profiles import Profile
    from .runtime import Runtime
    from .schema import Task


class Extension:
    """A feature on top of the core. Override only what you need."""

    name: str = "extension"
    # its tables, created (and given columns added since) when the runtime starts; None: no tables
    metadata: sa.MetaData | None = None
    # DBOS queues it enqueues on, each running one workflow at a time per partition key
    queues: tuple[str, ...] = ()

    def attach(self, runtime: Runtime) -> None:
        """At start, before DBOS launches: keep the runtime; its store and engine exist."""

    async def start(self) -> None:
        """After DBOS and its queues are up: start background work, pick up what a crash left."""

    async def stop(self) -> None:
        """Before the engine drains: stop background work (DBOS resumes its workflows on the next start)."""

    async def sweep(self, now: float) -> None:
        """Housekeeping, every `sweep_interval` seconds (`now` from the runtime's clock)."""

    def task_ended(self, conn: sa.Connection, task_id: str) -> None:
        """Inside the transaction that moves a task to a terminal state: what is written here is
        written exactly once with that end (it may be called again for the same end: check first)."""

    def retained(self) -> sa.Select[Any] | None:
        """A query of task ids that retention must never remove (e.g. sessions that will be resumed)."""
        return None

    def profile(self, name: str) -> Profile | None:
        """The agent profile `name` when this extension defines it (e.g. a managed agent's session), else
        None. Asked only for names no profile file or config defines; called while a turn starts: keep it quick."""
        return None

    async def toolsets(self, task: Task) -> list[AbstractToolset[ToolContext]]:
        """Extra tools for this task's turn (e.g. only for a conversation's main session)."""
        return []
