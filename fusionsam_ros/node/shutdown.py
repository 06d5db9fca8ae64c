"""SIGINT / SIGTERM: exit code 0 within a second in every phase, no traceback.

Why not rclpy's own handlers: they raise KeyboardInterrupt in whatever the main thread
is doing (a traceback from inside torch while the model loads), invalidate the context
under a node being built (RCLError), and the interpreter's torch teardown after "stopped"
takes seconds. Here Python's handlers for both signals do nothing themselves; the
interpreter writes each signal's number to a wakeup socket (``signal.set_wakeup_fd``),
whichever thread the kernel delivered it to and whatever the main thread is doing (a
long C call, the executor's wait), and one thread reads the socket: the first asks the node to stop (``on_stop``, e.g. shut the rclpy context
down so the executor returns), every later one is logged and otherwise handled the same;
if the main thread has not finished by ``grace_s`` after the first signal, the process
exits 0 itself (``os._exit``, after flushing the logs), which also skips the slow teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalShutdown:
    """Take SIGINT/SIGTERM over (call from the main thread) and handle them in a dedicated thread."""

    def __init__(self, log: Callable[[str], None], grace_s: float = 0.5) -> None:
        self._log = log
        self.grace_s = grace_s
        self.stopping = threading.Event()
        self.first_signal_at: float | None = None
        self._on_stop: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._reader, writer = socket.socketpair()
        writer.setblocking(False)
        self._writer = writer  # kept open for the process' lifetime
        for signum in SIGNALS:
            signal.signal(signum, _ignore)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._wait_loop, name="signals", daemon=True)
        self._thread.start()

    def set_on_stop(self, callback: Callable[[], None] | None) -> None:
        """What the first signal does in the current phase (None: nothing but the deadline)."""
        with self._lock:
            self._on_stop = callback
        if callback is not None and self.stopping.is_set():
            callback()

    def _wait_loop(self) -> None:
        while True:
            data = self._reader.recv(1)
            if not data:
                return
            signum = data[0]
            if signum not in SIGNALS:
                continue
            name = signal.Signals(signum).name
            if self.stopping.is_set():
                self._log(f"{name} again: already stopping")
                continue
            self.first_signal_at = time.monotonic()
            self.stopping.set()
            self._log(f"{name}: stopping")
            threading.Thread(target=self._deadline, name="exit_deadline", daemon=True).start()
            with self._lock:
                callback = self._on_stop
            if callback is not None:
                try:
                    callback()
                except Exception as exc:  # stopping must not fail on a half-built node
                    self._log(f"while stopping: {type(exc).__name__}: {exc}")

    def _deadline(self) -> None:
        time.sleep(self.grace_s)
        self._log("stopped")
        exit_now(0)


def _ignore(signum: int, frame: object) -> None:
    """Python-level handler: the wakeup socket's reader does the work."""


def exit_now(code: int) -> None:
    """Flush the logs and leave without interpreter teardown (torch's takes seconds)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)
