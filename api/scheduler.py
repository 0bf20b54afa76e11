"""Coalescing runs asked of the workers at most once per batch window."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


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
        self.send(self.window_s)
