"""Routes for schedules (SPEC 6): create, list, show, remove, pause, resume, run now."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..schedules.scheduler import Schedules
from ..schedules.spec import LastRun, Schedule, ScheduleSpec
from .openapi import errors

router = APIRouter(prefix="/schedules", tags=["schedules"])


def schedules(request: Request) -> Schedules:
    found: Schedules = request.app.state.runtime.schedules
    return found


@router.get("")
async def list_schedules(request: Request) -> list[Schedule]:
    """Every schedule (made here, by the main agent, or in schedules.toml), with its next and last run."""
    return await schedules(request).list()


@router.post("", status_code=201, responses=errors(409))
async def create(body: ScheduleSpec, request: Request) -> Schedule:
    """A cron string or time zone that does not parse is a 422 and nothing is stored."""
    return await schedules(request).add(body)


@router.get("/{name}", responses=errors(404))
async def show(name: str, request: Request) -> Schedule:
    return await schedules(request).get(name)


@router.delete("/{name}", responses=errors(404))
async def remove(name: str, request: Request) -> Schedule:
    """Removes the schedule (one from schedules.toml is removed from the file instead)."""
    return await schedules(request).remove(name)


@router.post("/{name}/pause", responses=errors(404))
async def pause(name: str, request: Request) -> Schedule:
    return await schedules(request).pause(name)


@router.post("/{name}/resume", responses=errors(404))
async def resume(name: str, request: Request) -> Schedule:
    """Runs skipped while paused do not catch up; a one-shot whose time passed fires now, as a missed one."""
    return await schedules(request).resume(name)


@router.post("/{name}/run-now", responses=errors(404))
async def run_now(name: str, request: Request) -> LastRun:
    """Starts one run at once (also when paused); its schedule goes on as before."""
    return await schedules(request).run_now(name)
