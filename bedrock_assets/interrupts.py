"""SIGINT and SIGTERM for a headless run: stop at the next safe point and say what keeps running in Bedrock.

Dagster's in-process execution captures both signals on the main thread and, when the run ends, drops
what it captured: a Ctrl-C, ``timeout``, ``docker stop`` or a Kubernetes eviction during a stage run
would be swallowed and the process would go on. So the headless runner works in a worker thread, where
Dagster leaves the signal handlers alone, and the main thread only waits and listens: the first signal
asks the work to stop after the stage run in progress (runs, claims and the ledger stay consistent), a
second one stops waiting at once (a run left unfinished is marked failed by whoever looks next, since
its process is gone; a claim it held is taken over the same way).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest(threading.Event):
    """Set when a signal asked the run to stop; ``signal`` names it (SIGINT, SIGTERM)."""

    signal: str = ""
    number: int = 0


class StoppedAtOnce(BaseException):
    """A second signal: the wait ends now, the work in progress is left to the next run."""

    def __init__(self, signal_name: str, number: int) -> None:
        super().__init__(signal_name)
        self.signal, self.number = signal_name, number


def run_until_signalled(work: Callable[[StopRequest], T]) -> T:
    """``work(stop)`` in a worker thread; SIGINT and SIGTERM set ``stop``; a second one raises StoppedAtOnce.

    Outside the main thread (no signal can be handled there) the work runs in place."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        return work(stop)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work(stop)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread as it is
            outcome["error"] = error

    def on_signal(number: int, _frame: Any) -> None:
        if stop.is_set():
            raise StoppedAtOnce(stop.signal, stop.number)
        stop.signal, stop.number = signal.Signals(number).name, number
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in SIGNALS}
    worker = threading.Thread(target=target, name="bedrock-assets-run", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
