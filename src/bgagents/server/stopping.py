"""Long answers end when the server stops: event streams end cleanly and long polls answer 503.

uvicorn waits for open connections to finish before it ends the app's lifespan, so an event stream
waiting for its next event held every stop for `timeout_graceful_shutdown`, then was cut with a
traceback. `StoppingServer` sets the app's `Stopping` as its shutdown begins; every stream and long
poll watches it, so a stop takes as long as the runtime's own drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import uvicorn

from ..errors import BgAgentsError

T = TypeVar("T")


class ServerStopping(BgAgentsError):
    """A long poll cut short by the server's stop: the client asks again once the server is back."""

    code = "server_stopping"
    status = 503


class Stopping:
    """Set once, when the server begins to stop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def until(self, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """`items` until the server stops; then the iteration ends (and `items` is closed)."""
        stop = asyncio.ensure_future(self._event.wait())
        step: asyncio.Future[T] | None = None
        try:
            while not self.is_set():
                step = asyncio.ensure_future(anext(items))
                await asyncio.wait((step, stop), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    return
                try:
                    item = step.result()
                except StopAsyncIteration:
                    return
                step = None
                yield item
        finally:
            for pending in (step, stop):
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await pending
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()

    async def first(self, work: Awaitable[T]) -> T:
        """`work`'s answer, or `ServerStopping` when the server stops before it comes (`work` is cancelled)."""
        answer = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait((answer, stop), return_when=asyncio.FIRST_COMPLETED)
            if answer.done():
                return answer.result()
            raise ServerStopping("the bgagents server is stopping")
        finally:
            for pending in (answer, stop):
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await pending


class StoppingServer(uvicorn.Server):
    """uvicorn's server, which says when it serves, tells the app's streams to end as its shutdown begins,
    and calls `on_stopped` once the app has stopped: before uvicorn re-raises a SIGTERM it caught, which
    ends the process there and then."""

    def __init__(self, config: uvicorn.Config, stopping: Stopping, *, on_ready: Callable[[], None],
                 on_stop: Callable[[], None], on_stopped: Callable[[], None]) -> None:
        super().__init__(config)
        self.stopping = stopping
        self.on_ready, self.on_stop, self.on_stopped = on_ready, on_stop, on_stopped

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.on_stop()
        self.stopping.set()
        await super().shutdown(sockets)
        self.on_stopped()
