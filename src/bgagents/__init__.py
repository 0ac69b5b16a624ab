"""bgagents: a durable runtime for LLM agents that work in the background.

The runtime is imported on first use, so the command line (a thin HTTP client) starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import BgAgentsError, Conflict, InvalidInput, NotFound, UnknownModel
from .settings import Settings

if TYPE_CHECKING:
    from .core.schema import Event, Output, Progress, Task, TaskResult, TranscriptEntry
    from .runtime import Runtime

_LAZY = {
    "Runtime": "bgagents.runtime",
    "Event": "bgagents.core.schema",
    "Output": "bgagents.core.schema",
    "Progress": "bgagents.core.schema",
    "Task": "bgagents.core.schema",
    "TaskResult": "bgagents.core.schema",
    "TranscriptEntry": "bgagents.core.schema",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bgagents' has no attribute {name!r}")


__all__ = [
    "BgAgentsError",
    "Conflict",
    "Event",
    "InvalidInput",
    "NotFound",
    "Output",
    "Progress",
    "Runtime",
    "Settings",
    "Task",
    "TaskResult",
    "TranscriptEntry",
    "UnknownModel",
]
__version__ = "0.1.0"
