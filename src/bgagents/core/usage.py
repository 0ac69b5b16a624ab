"""What agents cost: each task's own usage, the totals of its whole subtree, and totals by model, agent or day.

Read off the progress every task already keeps (tokens, requests, tool calls, cost where genai-prices knows the
model), so nothing is counted twice and no model call is spent on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Literal

from .schema import Progress, SubtreeUsage

GroupBy = Literal["model", "agent", "day"]


class Usage(SubtreeUsage):
    """Totals over a set of tasks; `cost_usd` is None when no task of the set has a known price."""

    def add(self, progress: Progress) -> None:
        self.tasks += 1
        self.requests += progress.requests
        self.tool_calls += progress.tool_calls
        self.input_tokens += progress.input_tokens
        self.output_tokens += progress.output_tokens
        if progress.cost_usd is not None:
            self.cost_usd = round((self.cost_usd or 0.0) + progress.cost_usd, 6)

    def merge(self, other: Usage) -> None:
        self.tasks += other.tasks
        self.requests += other.requests
        self.tool_calls += other.tool_calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        if other.cost_usd is not None:
            self.cost_usd = round((self.cost_usd or 0.0) + other.cost_usd, 6)


class UsageGroup(Usage):
    key: str


def subtree_totals(rows: Iterable[tuple[str, str | None, Progress]]) -> dict[str, Usage]:
    """The usage of each task together with all its descendants, from (id, parent_id, progress) rows that hold
    whole trees."""
    children: dict[str | None, list[str]] = {}
    own: dict[str, Progress] = {}
    for task_id, parent_id, progress in rows:
        own[task_id] = progress
        children.setdefault(parent_id, []).append(task_id)
    totals: dict[str, Usage] = {}

    def total(task_id: str) -> Usage:
        if task_id not in totals:
            usage = Usage()
            usage.add(own[task_id])
            stack = list(children.get(task_id, []))
            while stack:  # iterative, so a deep tree cannot overflow the stack
                child = stack.pop()
                usage.add(own[child])
                stack.extend(children.get(child, []))
            totals[task_id] = usage
        return totals[task_id]

    for task_id in own:
        total(task_id)
    return totals


def group_usage(rows: Iterable[tuple[str, str, float, Progress]], by: GroupBy) -> list[UsageGroup]:
    """Totals of (model, agent, created_at, progress) rows per model, agent or UTC day, largest cost first."""
    groups: dict[str, UsageGroup] = {}
    for model, agent, created_at, progress in rows:
        key = {"model": model, "agent": agent,
               "day": dt.datetime.fromtimestamp(created_at, dt.UTC).date().isoformat()}[by]
        groups.setdefault(key, UsageGroup(key=key)).add(progress)
    ordered = sorted(groups.values(), key=lambda g: (-(g.cost_usd or 0.0), -g.input_tokens - g.output_tokens, g.key))
    return sorted(ordered, key=lambda g: g.key) if by == "day" else ordered
