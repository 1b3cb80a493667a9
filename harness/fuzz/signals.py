"""Signals that end a fuzz run gracefully: recorded while inside, so the findings are still written."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_caught() -> Iterator[list[int]]:
    """While inside: SIGINT, SIGTERM and SIGHUP are appended to the list instead of ending the process
    (outside the main thread, where Python cannot take signals, the list stays empty)."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield caught
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
