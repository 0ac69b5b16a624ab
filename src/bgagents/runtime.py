"""`bgagents.Runtime`: the core runtime with the default extensions attached (conversations).

`bgagents.core.runtime.Runtime` is the core alone; this is what the server, the CLI and most
programs use, so that `rt.conversations` is there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .conversation.orchestrator import Conversations
from .core.extensions import Extension
from .core.runtime import Runtime as CoreRuntime
from .settings import Settings


class Runtime(CoreRuntime):
    """The durable runtime with conversations. Use as `async with Runtime() as rt:`.

    `options` are the core runtime's (`clock`, `executor_id`, `tracer_provider`, ...); `extensions`
    are attached after the default ones."""

    def __init__(self, settings: Settings | None = None, *, extensions: Sequence[Extension] = (),
                 **options: Any) -> None:
        self.conversations = Conversations()
        super().__init__(settings, extensions=[self.conversations, *extensions], **options)
