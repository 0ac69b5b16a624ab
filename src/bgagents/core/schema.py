"""The shapes every interface shows: tasks, their progress and result, events, transcript entries."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

TaskStatus = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
ACTIVE: frozenset[str] = frozenset({"queued", "running", "waiting"})
APPROVAL_STATES = ("pending", "approved", "denied", "cancelled")


class TodoCounts(BaseModel):
    done: int = 0
    total: int = 0
    current: str | None = None


class Progress(BaseModel):
    """Kept from the agent's own stream: no model call is spent on it."""

    requests: int = 0
    tool_calls: int = 0
    last_tool: str | None = None
    last_tool_args: str | None = None
    last_message: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    todos: TodoCounts = Field(default_factory=TodoCounts)
    recent: list[str] = Field(default_factory=list)
    last_activity_at: float | None = None
    note: str | None = None


class TaskResult(BaseModel):
    text: str | None = None
    data: Any = None
    diff_stat: str | None = None  # an isolated task's changes (`git diff --stat` of its branch)


class Attempt(BaseModel):
    model: str
    started_at: float
    finished_at: float | None = None
    error: str | None = None


class SubtreeUsage(BaseModel):
    """A task's usage together with all its descendants' (see core/usage.py)."""

    tasks: int = 0
    requests: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


class Worktree(BaseModel):
    """Where an isolated task works (`isolation = "worktree"`): `path`, a git worktree of `repo` on `branch`,
    started at commit `base`; `workspace` is its working directory there (the workspace may be a folder of the
    repository)."""

    repo: str
    path: str
    workspace: str
    branch: str
    base: str
    state: Literal["active", "merged", "discarded"] = "active"


class WorktreeDiff(BaseModel):
    """An isolated task's changes: `stat` and `patch` of its branch against `base`, uncommitted edits included."""

    task_id: str
    branch: str
    base: str
    state: Literal["active", "merged", "discarded"]
    stat: str
    files: list[str]
    patch: str


class Task(BaseModel):
    id: str
    name: str
    description: str = ""
    status: TaskStatus
    prompt: str
    agent: str
    model: str
    fallback_models: list[str] = Field(default_factory=list)
    concurrency_key: str
    priority: int = 0
    parent_id: str | None = None
    root_id: str
    depth: int = 0
    turn: int = 1
    forked_from: dict[str, Any] | None = None
    limits: dict[str, float] = Field(default_factory=dict)
    created_at: float
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    last_activity_at: float | None = None
    progress: Progress = Field(default_factory=Progress)
    result: TaskResult | None = None
    error: str | None = None
    end_reason: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    instructions: str | None = None
    output_schema: dict[str, Any] | None = None
    subtree: SubtreeUsage | None = None  # filled by interfaces that show it: the task and all its descendants
    trace: dict[str, Any] | None = None  # its latest turn's span (trace_id, span_id, turn), when traces are on
    workspace: str | None = None  # where its tools work when not the shared workspace (its worktree, or its parent's)
    worktree: Worktree | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class Event(BaseModel):
    seq: int
    time: float
    type: str
    task_id: str | None = None
    conversation_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class TranscriptEntry(BaseModel):
    """One part of a transcript message, flattened so people and scripts can read it."""

    index: int
    turn: int
    role: Literal["system", "user", "assistant", "tool_call", "tool_result", "retry"]
    content: str
    tool_name: str | None = None
    tool_call_id: str | None = None
    time: float | None = None


class Output(BaseModel):
    """The answer to `output`: the result when finished, else status and progress (and whether a wait timed out)."""

    id: str
    status: TaskStatus
    finished: bool
    timed_out: bool = False
    result: TaskResult | None = None
    error: str | None = None
    end_reason: str | None = None
    progress: Progress


class Approval(BaseModel):
    """A tool call waiting for a person's decision (SPEC 5.7)."""

    id: str
    task_id: str
    tool: str
    args: dict[str, Any]
    reason: str
    status: Literal["pending", "approved", "denied", "cancelled"]  # cancelled: its task ended undecided
    decision_reason: str | None = None
    created_at: float
    decided_at: float | None = None
