"""Ctrl-C and SIGTERM while a stage runs: a KeyboardInterrupt, so that the MLflow run is marked KILLED on the way
out, and remembered, so that training raises it again at its next batch where a library swallowed the first."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

received = threading.Event()  # a Ctrl-C or SIGTERM arrived inside `catching`


def _interrupt(signum: int, frame: object) -> None:
    received.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def catching() -> Iterator[None]:
    """SIGTERM, and Ctrl-C where Python catches it (not in a background job that ignores it), raise
    KeyboardInterrupt and set `received`. Only the main thread handles signals: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signals.append(signal.SIGINT)
    previous = {sig: signal.signal(sig, _interrupt) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        received.clear()
