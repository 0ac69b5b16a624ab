"""Makes one agent turn durable and supervised: each model request and each tool call is a DBOS step.

`DurableModel` runs each request as a step that streams from the real model (live progress),
watches it for inactivity, retries transient errors with backoff and then moves down the fallback
chain. `TaskHooks` runs each tool call as a step, breaks loops, asks for approvals and hands
steering messages to the agent. On recovery DBOS returns the checkpointed results (and errors), so
the agent loop replays to where it stopped without calling the model or the tools again.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from dbos import DBOS
from pydantic_ai import RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models import Model, ModelRequestContext, ModelRequestParameters
from pydantic_ai.models.function import FunctionModel
from pydantic_ai.models.wrapper import WrapperModel
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition

from ..settings import LimitSettings
from ..tools import ToolContext
from .model_errors import ModelCallError, StaleRequest, classify, ensure_whole
from .permissions import decide
from .progress import ProgressTracker


class ShuttingDown(asyncio.CancelledError):
    """Raised at a step boundary while the process drains; the task resumes on the next start."""


class TurnStopped(Exception):
    """Ends a turn on purpose: `status` and `end_reason` say how (e.g. cancelled / circuit_breaker)."""

    def __init__(self, message: str, status: str, end_reason: str) -> None:
        super().__init__(message, status, end_reason)
        self.message = message
        self.status = status
        self.end_reason = end_reason

    def __str__(self) -> str:
        return self.message


class StepGate:
    """Closed when the process drains, so no new step starts."""

    def __init__(self) -> None:
        self.draining = False

    def check(self) -> None:
        if self.draining:
            raise ShuttingDown()


def _can_stream(model: Model) -> bool:
    if isinstance(model, FunctionModel):
        return model.stream_function is not None
    return True


@dataclass
class ModelChain:
    """The models a turn may use, in order, and which one is serving now."""

    names: list[str]
    index: int = 0
    started_at: float = field(default_factory=time.time)

    @property
    def current(self) -> str:
        return self.names[self.index]


class DurableModel(WrapperModel):
    def __init__(self, resolve: Callable[[str], Model], chain: ModelChain, tracker: ProgressTracker, gate: StepGate,
                 limits: LimitSettings, budget_usd: float | None,
                 on_switch: Callable[[str, str, str], Awaitable[None]]) -> None:
        super().__init__(resolve(chain.current))
        self.resolve = resolve
        self.chain = chain
        self.tracker = tracker
        self.gate = gate
        self.limits = limits
        self.budget_usd = budget_usd
        self.on_switch = on_switch

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """One request, made durable: retried with backoff, then handed down the fallback chain."""
        while True:
            name = self.chain.current
            model = self.resolve(name)
            error: ModelCallError | None = None
            stale_seen = False
            for attempt in range(self.limits.retries + 1):
                self.gate.check()
                ran: list[bool] = []  # stays empty when DBOS answers from the checkpoint (a replay)

                async def model_request(model: Model = model, name: str = name, ran: list[bool] = ran
                                        ) -> ModelResponse:
                    ran.append(True)
                    return await self._request(model, name, messages, model_settings, model_request_parameters)

                try:
                    response: ModelResponse = await DBOS.run_step_async({"name": "model_request"}, model_request)
                except ModelCallError as exc:
                    error = exc
                else:
                    if not ran:
                        self.tracker.replayed_response(response)
                    return response
                if not error.transient:
                    raise error
                if isinstance(error, StaleRequest):
                    if stale_seen:  # a hung request is tried once more, then the task is stale
                        raise TurnStopped(error.message, "failed", "stale")
                    stale_seen = True
                if ran and (attempt < self.limits.retries or self.chain.index + 1 < len(self.chain.names)):
                    await self.tracker.on_model_error(name, error.kind, error.status, error.message)
                if attempt < self.limits.retries and self.limits.retry_backoff:
                    await DBOS.sleep_async(self.limits.retry_backoff * 2**attempt)
            assert error is not None
            if self.chain.index + 1 >= len(self.chain.names):
                raise error
            self.chain.index += 1
            await self.on_switch(name, self.chain.current, error.message)

    async def _request(self, model: Model, name: str, messages: list[ModelMessage],
                       model_settings: ModelSettings | None, parameters: ModelRequestParameters) -> ModelResponse:
        """The step body: streams for progress, aborts after `stale_timeout` without activity."""
        activity = [time.monotonic()]
        streaming = [False]  # the answer's stream has begun: an error now cut it short

        async def call() -> ModelResponse:
            if not _can_stream(model):
                return await model.request(messages, model_settings, parameters)
            async with model.request_stream(messages, model_settings, parameters) as stream:
                streaming[0] = True
                async for event in stream:
                    activity[0] = time.monotonic()
                    await self.tracker.on_stream_event(event)
                answer = stream.get()
            ensure_whole(answer, model, name)
            return answer

        task = asyncio.ensure_future(call())
        try:
            while True:
                idle = time.monotonic() - activity[0]
                done, _ = await asyncio.wait({task}, timeout=max(0.0, self.limits.stale_timeout - idle))
                if done:
                    break
                if time.monotonic() - activity[0] >= self.limits.stale_timeout:
                    task.cancel()
                    raise StaleRequest(f"model {name}: no activity for {self.limits.stale_timeout:g} s; "
                                       "the request was aborted")
            try:
                response = task.result()
            except Exception as exc:
                raise classify(exc, name, mid_stream=streaming[0]) from None
        finally:
            if not task.done():
                task.cancel()
        await self.tracker.on_response(messages, response)
        spent = self.tracker.progress.cost_usd
        if self.budget_usd is not None and spent is not None and spent > self.budget_usd:
            raise TurnStopped(f"budget crossed: cost_usd {spent:.4f} > {self.budget_usd:g}", "failed", "budget")
        return response


class LoopBreaker:
    """Counts calls of one turn: the same call `consecutive_threshold` times in a row, or too many in all."""

    def __init__(self, consecutive_threshold: int, max_tool_calls: int, calls_before: int) -> None:
        self.threshold = consecutive_threshold
        self.max_calls = max_tool_calls
        self.total = calls_before
        self.last: str | None = None
        self.repeats = 0

    def check(self, tool: str, args: dict[str, Any]) -> None:
        signature = tool + ":" + json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)
        self.repeats = self.repeats + 1 if signature == self.last else 1
        self.last = signature
        self.total += 1
        if self.repeats >= self.threshold:
            raise TurnStopped(f"loop breaker: {tool} was called {self.repeats} times in a row with the same "
                              "arguments", "cancelled", "circuit_breaker")
        if self.total > self.max_calls:
            raise TurnStopped(f"loop breaker: {self.total} tool calls in all (limit {self.max_calls}); "
                              f"the last was {tool}", "cancelled", "circuit_breaker")


Approve = Callable[[ToolCallPart, dict[str, Any], str], Coroutine[Any, Any, tuple[bool, str]]]


class TaskHooks(AbstractCapability[ToolContext]):
    """Each tool call a checkpointed step with progress around it; loops broken, approvals asked.

    Steering is claimed inside each tool's step (so it costs no checkpoint of its own) and enqueued
    right after that tool's result, i.e. before the next model request; what was sent while the task was
    queued is claimed in the turn's first step (`at_start`) and given with the first request.
    """

    def __init__(self, tracker: ProgressTracker, gate: StepGate,
                 claim_steering: Callable[[str], Coroutine[Any, Any, list[str]]],
                 breaker: LoopBreaker, permissions: dict[str, Any], approve: Approve,
                 at_start: list[str] | None = None) -> None:
        self.tracker = tracker
        self.gate = gate
        self._claim_steering = claim_steering
        self.breaker = breaker
        self.permissions = permissions
        self.approve = approve
        self._at_start = list(at_start or [])

    async def before_model_request(
        self, ctx: RunContext[ToolContext], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        self.gate.check()
        for text in self._at_start:
            ctx.enqueue(text)
        self._at_start = []
        return request_context

    async def wrap_tool_execute(
        self,
        ctx: RunContext[ToolContext],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: Any,
        handler: Any,
    ) -> Any:
        self.gate.check()
        arguments = call.args_as_dict()
        self.breaker.check(call.tool_name, arguments)
        decision, why = decide(self.permissions, call.tool_name, arguments, ctx.deps.workspace)
        if decision == "deny":
            return f"Permission denied: {why}. Do not retry this call; find another way or report."
        if decision == "ask":
            approved, reason = await self.approve(call, arguments, why)
            if not approved:
                return f"A person denied this call ({reason}). Do not retry it; find another way or report."

        ran: list[bool] = []  # stays empty when DBOS answers from the checkpoint (a replay)

        async def tool_call() -> tuple[Any, list[str], list[dict[str, Any]] | None]:
            ran.append(True)
            await self.tracker.on_tool_start(call.tool_name, arguments)
            try:
                result = await handler(args)
            except Exception as exc:
                await self.tracker.on_tool_end(call.tool_name, f"{type(exc).__name__}: {exc}")
                raise
            await self.tracker.on_tool_end(call.tool_name, None)
            return result, await self._claim_steering(self.tracker.task_id), self.tracker.step_todos()

        try:
            result, steering, todos = await DBOS.run_step_async({"name": f"tool:{call.tool_name}"}, tool_call)
        except Exception:
            if not ran:
                self.tracker.replayed_tool(call.tool_name, arguments, None)
            raise
        if not ran:
            self.tracker.replayed_tool(call.tool_name, arguments, todos)
        for text in steering:
            ctx.enqueue(text)
        return result
