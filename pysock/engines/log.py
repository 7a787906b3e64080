"""A server's connection log (``Server(log=...)``): every engine hands its
events to a thread of their own, which calls the log with each in order,
so that a slow, blocking or failing log never slows, stops or breaks the
serving (docs/contract.md, "The connection log").

- The C loops write fixed-size records to a non-blocking pipe (PipeLog);
  the twins put events on a bounded queue (QueueLog).  Either way a log
  that falls CAPACITY events behind loses the next ones, never the server.
- A log that raises: the exception goes to sys.unraisablehook (pytest
  reports it; plain Python prints it) and the next events still come.
- close(timeout): no more events; those waiting are delivered within
  timeout, and what is not delivered by then is dropped: no event reaches
  the log after close() has returned but one it was already in.  Called
  from the log's own thread (a log that stops its server), it waits for
  nothing and drops what is left."""
from __future__ import annotations

import os
import sys
import threading
from collections import deque
from collections.abc import Iterator
from typing import Callable, cast

from pysock.engines.base import ConnEvent

CAPACITY = 1024  # events waiting for the log at most; the C pipe holds about 700


class EventLog:
    """The thread that calls on_event; subclasses say where events come from."""

    def __init__(self, on_event: Callable[[ConnEvent], None]) -> None:
        self._on_event = on_event
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name="pysock log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _events(self) -> Iterator[ConnEvent]:
        raise NotImplementedError

    def _end_input(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        for event in self._events():
            if self._dropping:
                return
            try:
                self._on_event(event)
            except BaseException as exc:  # the log's failure is its own: report it, go on
                why = f"Exception ignored in the log of a pysock server, on {event.describe()!r}"
                sys.unraisablehook(cast("sys.UnraisableHookArgs", _Unraisable(exc, why)))

    def close(self, timeout: float | None) -> None:
        """See the module's docstring."""
        self._end_input()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout)
        self._dropping = True


class _Unraisable:
    """What sys.unraisablehook takes (its argument type is not public)."""

    def __init__(self, exc: BaseException, message: str) -> None:
        self.exc_type = type(exc)
        self.exc_value = exc
        self.exc_traceback = exc.__traceback__
        self.err_msg = message
        self.object = None


class QueueLog(EventLog):
    """The twins' log: put() from any serving thread, never blocking."""

    def __init__(self, on_event: Callable[[ConnEvent], None]) -> None:
        super().__init__(on_event)
        self._queue: deque[ConnEvent] = deque()
        self._ready = threading.Condition()
        self._ended = False
        self.start()

    def put(self, event: ConnEvent) -> None:
        with self._ready:
            if len(self._queue) < CAPACITY and not self._ended:
                self._queue.append(event)
                self._ready.notify()

    def _events(self) -> Iterator[ConnEvent]:
        while True:
            with self._ready:
                while not self._queue and not self._ended:
                    self._ready.wait()
                if not self._queue:
                    return
                event = self._queue.popleft()
            yield event

    def _end_input(self) -> None:
        with self._ready:
            self._ended = True
            self._ready.notify()


class PipeLog(EventLog):
    """The C engine's log: the loops write ps_event records to write_fd
    (non-blocking: a full pipe drops a record); this thread reads them."""

    def __init__(self, on_event: Callable[[ConnEvent], None], record_size: int,
                 decode: Callable[[bytes], ConnEvent]) -> None:
        super().__init__(on_event)
        self._size = record_size
        self._decode = decode
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.write_fd, False)
        self._write_lock = threading.Lock()
        self.start()

    def _events(self) -> Iterator[ConnEvent]:
        pending = b""
        with os.fdopen(self.read_fd, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(self._size * 64)
                if not chunk:
                    return  # the write end is closed and everything has been read
                pending += chunk
                whole = len(pending) - len(pending) % self._size
                for at in range(0, whole, self._size):
                    yield self._decode(pending[at:at + self._size])
                pending = pending[whole:]

    def _end_input(self) -> None:
        """Close the write end (the server has closed: nothing writes any
        more), once: the reader sees the end after the last record."""
        with self._write_lock:
            if self.write_fd >= 0:
                os.close(self.write_fd)
                self.write_fd = -1

