"""bgagents: a durable runtime for LLM agents that work in the background."""

from .core.runtime import Runtime
from .core.schema import Event, Output, Progress, Task, TaskResult, TranscriptEntry
from .errors import BgAgentsError, Conflict, InvalidInput, NotFound, UnknownModel
from .settings import Settings

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
