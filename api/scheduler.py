"""Work sent to the workers after a route committed: coalescing runs, at most once per batch window,
and retried jobs. The database is the system of record: once a change is committed, a broker that is
down must not turn the answer into an error (a client would retry and create a duplicate), so a
failed send is logged and left to the reconciler, which finds the work in the database."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def send_after_commit(send: Callable[[], None], what: str) -> bool:
    """Call `send` for committed work; a broker error is logged, not raised. Returns whether it was sent."""
    try:
        send()
    except Exception as exc:  # kombu's OperationalError, a refused connection, a timeout: all the same here
        log.warning("could not send %s to the workers (%s: %s); the reconciler will pick it up",
                    what, type(exc).__name__, exc)
        return False
    return True


class CoalesceScheduler:
    """Ask for one coalescing run per batch window, however many requests arrive in it.

    The run is due when the window closes and takes every pending request (force), so a
    request that arrived inside the window, and so asked for no run of its own, joins it."""

    def __init__(self, send: Callable[[float], None], window_s: float) -> None:
        """`send(delay_s)` asks the workers for a run `delay_s` seconds from now; `window_s` in seconds."""
        self.send, self.window_s, self._next = send, window_s, 0.0
        self._lock = threading.Lock()

    def poke(self) -> None:
        """New work may be waiting: ask for a run unless one is already due within this window."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                return
            self._next = now + self.window_s
        if not send_after_commit(lambda: self.send(self.window_s), "a batching run"):
            with self._lock:  # nothing was asked for: the next request asks again
                self._next = 0.0
