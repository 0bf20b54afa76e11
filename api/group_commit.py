"""Group commit: concurrent requests written in one transaction, each answered only after its COMMIT.

A PostgreSQL COMMIT waits for its WAL to reach the disk (about 5 ms on the benchmark machine), so one
transaction per request caps a process at a few hundred requests per second however fast the rest is.
`GroupCommit` queues what concurrent route handlers submit and hands it to `flush` in batches: while a
batch commits, the next one gathers, so the batch grows with the load and no request waits on a timer
(an idle server writes a lone request at once). The same idea as PostgreSQL's own `commit_delay`, one level
up: there it shares one WAL flush among transactions, here one transaction among requests.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from fastapi.concurrency import run_in_threadpool

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _LoopState:
    pending: list[tuple[object, asyncio.Future]] = field(default_factory=list)
    in_flight: int = 0
    tasks: set[asyncio.Task] = field(default_factory=set)


class GroupCommit(Generic[Item, Result]):
    """Batches `submit(item)` calls into `flush(items)` runs, on a worker thread.

    `flush(items)` (blocking: it talks to the database) returns one outcome per item, in order: its result,
    or the exception that item's caller should see; it must commit before returning. An exception raised
    by `flush` itself fails the whole batch. At most `max_in_flight` batches run at once (each holds a
    database connection), of at most `max_batch` items each.
    """

    def __init__(self, flush: Callable[[list[Item]], Sequence[Result | BaseException]], *, max_batch: int = 500,
                 max_in_flight: int = 4) -> None:
        self._flush, self.max_batch, self.max_in_flight = flush, max_batch, max_in_flight
        # One queue per event loop: a test client may serve from several loops, each in its own thread.
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def _state(self, loop: asyncio.AbstractEventLoop) -> _LoopState:
        with self._lock:
            state = self._states.get(loop)
            if state is None:
                state = self._states[loop] = _LoopState()
            return state

    async def submit(self, item: Item) -> Result:
        """`item`'s outcome once its batch has committed; raises the exception `flush` gave for it."""
        loop = asyncio.get_running_loop()
        state = self._state(loop)
        future: asyncio.Future = loop.create_future()
        state.pending.append((item, future))
        self._start(state)
        outcome = await asyncio.shield(future)  # a caller that goes away leaves its batch to commit
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _start(self, state: _LoopState) -> None:
        while state.pending and state.in_flight < self.max_in_flight:
            batch, state.pending = state.pending[:self.max_batch], state.pending[self.max_batch:]
            state.in_flight += 1
            task = asyncio.ensure_future(self._run(state, batch))
            state.tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(state.tasks.discard)

    async def _run(self, state: _LoopState, batch: list[tuple[object, asyncio.Future]]) -> None:
        try:
            outcomes: Sequence[object] = await run_in_threadpool(self._flush, [item for item, _ in batch])
            if len(outcomes) != len(batch):
                raise RuntimeError(f"flush gave {len(outcomes)} outcomes for {len(batch)} items")
        except Exception as exc:  # noqa: BLE001 - every waiter of the batch sees the failure
            outcomes = [exc] * len(batch)
        finally:
            state.in_flight -= 1
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(outcome)
        self._start(state)
