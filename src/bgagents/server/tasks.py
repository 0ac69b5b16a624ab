"""Routes for tasks: launch, read, wait, transcript, cancel, resume, steer, fork."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from ..conversation.schema import Peek
from ..core.names import task_id as new_task_id
from ..core.schema import Output, Task, TranscriptEntry, WorktreeDiff
from ..errors import InvalidInput
from ..runtime import Runtime
from ..webhooks import Webhooks
from ..webhooks.service import TASK_EVENTS
from .bodies import MAX_INT, BatchBody, CancelAllBody, ForkBody, LaunchBody, MessageBody, ResumeBody
from .openapi import errors
from .stopping import Stopping

router = APIRouter(prefix="/tasks", tags=["tasks"])


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


@router.post("", status_code=201, responses=errors(404))
async def launch(body: LaunchBody, request: Request) -> Task:
    values = body.model_dump(exclude={"webhook"})
    if not body.webhook:
        return await runtime(request).launch(**values)
    # subscribed before the launch, so not even an instant end is missed; dropped again if the launch is refused
    values["_id"] = new_task_id()
    hooks: Webhooks = request.app.state.webhooks
    sub, _ = await hooks.subscribe(body.webhook, list(TASK_EVENTS), task_id=values["_id"])
    try:
        return await runtime(request).launch(**values)
    except Exception:
        await hooks.store.delete(sub.id)
        raise


@router.post("/batch", status_code=201)
async def launch_batch(body: BatchBody, request: Request) -> list[Task]:
    """Launches every task in one transaction: a bad item launches nothing, and the error names its index."""
    for index, item in enumerate(body.tasks):
        if item.webhook:
            raise InvalidInput(f"tasks[{index}]: a batch takes no per-task webhook; subscribe once with "
                               "POST /webhooks (events task.completed, …) instead", code="invalid_item")
    return await runtime(request).launch_many([t.model_dump(exclude_unset=True, exclude={"webhook"})
                                               for t in body.tasks])


@router.get("")
async def list_tasks(
    request: Request,
    status: Annotated[str | None, Query(description="Comma-separated statuses")] = None,
    parent: str | None = None,
    limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
) -> list[Task]:
    statuses = [s.strip() for s in status.split(",") if s.strip()] if status else None
    rt = runtime(request)
    return await rt.with_subtree(await rt.list(statuses, parent, limit))


@router.post("/cancel")
async def cancel_all(body: CancelAllBody, request: Request) -> list[Task]:
    if not body.all and body.parent_id is None:
        raise InvalidInput("say all=true, or give parent_id")
    return await runtime(request).cancel_all(body.parent_id)


@router.get("/{task_id}", responses=errors(404))
async def get_task(task_id: str, request: Request) -> Task:
    """The task, with `subtree`: its usage and cost together with all its descendants'."""
    rt = runtime(request)
    return (await rt.with_subtree([await rt.get(task_id)]))[0]


@router.get("/{task_id}/output", responses=errors(404, 503))
async def output(
    task_id: str,
    request: Request,
    wait: bool = False,
    timeout: Annotated[float, Query(ge=0, le=3600)] = 60.0,
) -> Output:
    if not wait:
        return await runtime(request).output(task_id)
    stopping: Stopping = request.app.state.stopping
    return await stopping.first(runtime(request).output(task_id, wait=True, timeout=timeout))


@router.get("/{task_id}/transcript", responses=errors(404))
async def transcript(
    task_id: str,
    request: Request,
    since: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tool_results: bool = True,
) -> list[TranscriptEntry]:
    return await runtime(request).transcript(task_id, since=since, limit=limit, tool_results=tool_results)


@router.post("/{task_id}/cancel", responses=errors(404, 409))
async def cancel(task_id: str, request: Request) -> Task:
    return await runtime(request).cancel(task_id)


@router.post("/{task_id}/resume", responses=errors(404, 409))
async def resume(task_id: str, body: ResumeBody, request: Request) -> Task:
    return await runtime(request).resume(task_id, body.prompt)


@router.post("/{task_id}/messages", responses=errors(404, 409))
async def send(task_id: str, body: MessageBody, request: Request) -> Task:
    return await runtime(request).send(task_id, body.message)


@router.post("/{task_id}/fork", status_code=201, responses=errors(404))
async def fork(task_id: str, body: ForkBody, request: Request) -> Task:
    return await runtime(request).fork(task_id, body.prompt, at=body.at, model=body.model, name=body.name)


@router.get("/{task_id}/diff", responses=errors(404, 409))
async def diff(task_id: str, request: Request) -> WorktreeDiff:
    """An isolated task's changes (stat, files, patch) against where its branch started."""
    return await runtime(request).diff(task_id)


@router.post("/{task_id}/merge", responses=errors(404, 409))
async def merge(task_id: str, request: Request) -> Task:
    """Merges an ended isolated task's branch into the workspace; a conflict is a 409 naming the files."""
    return await runtime(request).merge(task_id)


@router.post("/{task_id}/discard", responses=errors(404, 409))
async def discard(task_id: str, request: Request) -> Task:
    """Throws an isolated task's changes away (its worktree and branch); a running task is cancelled first."""
    return await runtime(request).discard(task_id)


@router.post("/{task_id}/peek", responses=errors(404, 409))
async def peek(task_id: str, request: Request) -> Peek:
    """A few sentences on what the running task has done and has left, from the small peek model."""
    return await runtime(request).conversations.peek_task(task_id)
