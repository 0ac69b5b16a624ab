"""Makes one agent turn durable: each model request and each tool call is a DBOS step.

`DurableModel` runs the request as a step that streams from the real model (for live progress) and
checkpoints the response; `TaskHooks` runs each tool call as a step and hands steering messages to
the agent before each request. On recovery DBOS returns the checkpointed results, so the agent
loop replays to where it stopped without calling the model or the tools again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
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

from ..tools import ToolContext
from .progress import ProgressTracker


class ShuttingDown(asyncio.CancelledError):
    """Raised at a step boundary while the process drains; the task resumes on the next start."""


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


class DurableModel(WrapperModel):
    def __init__(self, wrapped: Model, tracker: ProgressTracker, gate: StepGate) -> None:
        super().__init__(wrapped)
        self.tracker = tracker
        self.gate = gate

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        self.gate.check()

        async def model_request() -> ModelResponse:  # a closure keeps DBOS's log lines short
            return await self._request(messages, model_settings, model_request_parameters)

        response: ModelResponse = await DBOS.run_step_async({"name": "model_request"}, model_request)
        return response

    async def _request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        if _can_stream(self.wrapped):
            async with self.wrapped.request_stream(messages, model_settings, model_request_parameters) as stream:
                async for event in stream:
                    await self.tracker.on_stream_event(event)
                response = stream.get()
        else:
            response = await self.wrapped.request(messages, model_settings, model_request_parameters)
        await self.tracker.on_response(messages, response)
        return response


class TaskHooks(AbstractCapability[ToolContext]):
    """Each tool call a checkpointed step with progress around it; steering handed to the agent.

    Steering is claimed inside each tool's step (so it costs no checkpoint of its own) and enqueued
    right after that tool's result, i.e. before the next model request; the first request of a run
    claims once in a step of its own, for messages sent while the task was queued.
    """

    def __init__(self, tracker: ProgressTracker, gate: StepGate,
                 claim_steering: Callable[[str], Coroutine[Any, Any, list[str]]]) -> None:
        self.tracker = tracker
        self.gate = gate
        self._claim_steering = claim_steering
        self._claimed_at_start = False

    async def before_model_request(
        self, ctx: RunContext[ToolContext], request_context: ModelRequestContext
    ) -> ModelRequestContext:
        self.gate.check()
        if not self._claimed_at_start:
            self._claimed_at_start = True
            messages: list[str] = await DBOS.run_step_async(
                {"name": "claim_steering"}, self._claim_steering, self.tracker.task_id
            )
            for text in messages:
                ctx.enqueue(text)
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

        async def tool_call() -> tuple[Any, list[str]]:
            await self.tracker.on_tool_start(call.tool_name, call.args_as_dict())
            try:
                result = await handler(args)
            except Exception as exc:
                await self.tracker.on_tool_end(call.tool_name, f"{type(exc).__name__}: {exc}")
                raise
            await self.tracker.on_tool_end(call.tool_name, None)
            return result, await self._claim_steering(self.tracker.task_id)

        result, steering = await DBOS.run_step_async({"name": f"tool:{call.tool_name}"}, tool_call)
        for text in steering:
            ctx.enqueue(text)
        return result
