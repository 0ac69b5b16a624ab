"""`bgagents.Runtime`: the core runtime with the default extensions attached (conversations, schedules,
the Managed Agents API's objects).

`bgagents.core.runtime.Runtime` is the core alone; this is what the server, the CLI and most
programs use, so that `rt.conversations` and `rt.schedules` are there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .conversation.orchestrator import Conversations
from .core.extensions import Extension
from .core.runtime import Runtime as CoreRuntime
from .managed import Managed
from .schedules.scheduler import Schedules
from .settings import Settings


class Runtime(CoreRuntime):
    """The durable runtime with conversations and schedules. Use as `async with Runtime() as rt:`.

    `options` are the core runtime's (`clock`, `executor_id`, `tracer_provider`, ...); `extensions`
    are attached after the default ones."""

    def __init__(self, settings: Settings | None = None, *, extensions: Sequence[Extension] = (),
                 **options: Any) -> None:
        self.conversations = Conversations()
        self.schedules = Schedules(self.conversations)
        self.managed = Managed()  # the Managed Agents API's agents, environments and sessions (server/v1)
        super().__init__(settings, extensions=[self.conversations, self.schedules, self.managed, *extensions],
                         **options)
