"""Group commit: many requests' rows written in one transaction.

A request hands its row to :class:`GroupCommit` and waits; one writer task
per event loop takes every row waiting, writes them in one transaction (in a
thread, off the event loop), then wakes each request with the outcome. While
a batch is being written the next one gathers, so under load a batch grows
with the load and under none a row is written at once — no timer, no added
latency. A request is answered only after its batch committed, so a 2xx
still means stored; a batch that fails is written again row by row, so one
bad row fails only its own request (the others are stored and answered).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

#: The most rows one transaction writes (a bound on a statement's size).
MAX_BATCH = 500


class GroupCommit(Generic[T]):
    """Batches ``write(rows)`` calls; :meth:`submit` returns once its row is committed."""

    def __init__(self, write: Callable[[Sequence[T]], None], *, max_batch: int = MAX_BATCH) -> None:
        self._write = write
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, row: T) -> None:
        """Store ``row``; raises what writing it raised."""
        loop = asyncio.get_running_loop()
        if self._writer is None or self._writer.done() or self._writer.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._writer = loop.create_task(self._run(), name="outreach-group-commit")
        done: asyncio.Future[None] = loop.create_future()
        self._waiting.append((row, done))
        assert self._wake is not None
        self._wake.set()
        await done

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            while self._waiting:
                batch, self._waiting = self._waiting[:self._max_batch], self._waiting[self._max_batch:]
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await asyncio.to_thread(self._write, [row for row, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every error goes to the requests waiting on it
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for one in batch:  # which row failed: each alone, the others stored
                await self._commit([one])
            return
        for _, done in batch:
            _settle(done, None)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():  # the request was cancelled (the client went away)
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
