"""What every serving thing shares, whatever it serves (an echo Server, a
Proxy): bound at construction, serve in the foreground or a background
thread, stop from any thread in bounded time, close in finally.

A subclass checks its options into a configuration (self.config: proto,
family, path, backend, model and url()), then calls _open() with a
function that makes its engine (pysock.engines.base.Engine).  The
lifecycle never asks which engine it drives."""
from __future__ import annotations

import os
import signal
import threading
import time
import weakref
from typing import Callable, Protocol, TypeVar

from pysock.engines.base import ConnEvent, Engine, Stats
from pysock.errors import ConfigError, ServerError
from pysock.faults import Faults, with_seed
from pysock.unixpath import Identity, bind_claimed, release
from pysock.urls import Address

__all__ = ["Lifecycle", "Lines"]

_Self = TypeVar("_Self", bound="Lifecycle")


class Listening(Protocol):
    """What the lifecycle reads of a configuration (ServerConfig, ProxyConfig)."""

    @property
    def proto(self) -> str: ...
    @property
    def family(self) -> str: ...
    @property
    def path(self) -> str | None: ...
    @property
    def backend(self) -> str: ...
    @property
    def model(self) -> str | None: ...

    def url(self, host: str, port: int) -> str: ...


class Lifecycle:
    """Serves once: new -> serving (start() or serve_forever()) -> stopped
    (stop()).  A loop that fails on its own ends it; stop() (or
    serve_forever()) then raises ServerError with the failure as cause."""

    config: Listening  # the subclass's checked configuration
    _faults: Faults | None = None

    def _open(self, make: Callable[[Lines | None], Engine], log: Callable[[str], None] | None) -> None:
        """Bind (and listen) through make, which gets the log's line maker."""
        if log is not None and not callable(log):
            raise ConfigError(f"log must be callable (it is called with each line), not {log!r}")
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = False
        self._done = threading.Event()
        self._closing = False
        self._closed = threading.Event()
        self._close_when_done: float | None = None  # stop()'s timeout, when the loop closes by itself
        self._failure: Exception | None = None
        self._final_stats: Stats | None = None
        self._pid = os.getpid()
        lines = Lines(log) if log is not None else None
        path_id: Identity | None = None
        if self.config.path is not None:
            # Claimed, bound and listening under the directory's lock: exactly one owner.
            self._engine, path_id = bind_claimed(self.config.path, lambda: make(lines))
        else:
            self._engine = make(lines)
        self._release_path = weakref.finalize(self, _release_path, self.config.path, path_id, self._pid)
        self._release_path.atexit = False
        try:  # nothing below may leave the port (or path) taken
            if lines is not None:
                lines.url = self.url
            self._configure()
        except BaseException:
            self._engine.close(0)
            self._release_path()
            raise

    def _configure(self) -> None:
        """Once bound, before serving: hand the engine what it needs (the
        faults).  An exception here closes the engine again."""
        if self._faults is not None:
            self._engine.set_faults(self._faults)

    # -- what it is ---------------------------------------------------------
    @property
    def address(self) -> Address:
        """(host, port) as bound (the real port for port=0); a path for unix."""
        return self._engine.address

    @property
    def host(self) -> str:
        """The bound address (the path, for unix)."""
        return self.address if isinstance(self.address, str) else self.address[0]

    @property
    def port(self) -> int:
        """The bound port (the kernel's pick for port=0); 0 for unix."""
        return 0 if isinstance(self.address, str) else self.address[1]

    @property
    def url(self) -> str:
        """tcp://HOST:PORT, udp://[::1]:PORT or unix:///path: what serve prints."""
        return self.config.url(self.host, self.port)

    @property
    def stats(self) -> Stats:
        """The counters now (after a stop: as they ended)."""
        with self._lock:
            if self._final_stats is not None:
                return self._final_stats
            return self._engine.stats()

    @property
    def faults(self) -> Faults | None:
        """The faults in force (with the seed drawn for seed=None), or None."""
        return self._faults

    def set_faults(self, faults: Faults | None) -> None:
        """From any thread, while serving or before: the faults for data
        received from now on (replies already made keep their schedule).
        None turns them off.  A seed of None draws a fresh one (see faults)."""
        checked = self._checked_faults(faults)
        with self._lock:
            self._check_open()
            self._engine.set_faults(checked)
            self._faults = checked

    def _check_open(self) -> None:
        """RuntimeError once stopped: there is nothing left to change.  Under the lock."""
        if self._closing:
            raise RuntimeError(f"{self!r} is stopped: it has no faults to set")

    def _checked_faults(self, faults: Faults | None, proto: str | None = None,
                        family: str | None = None) -> Faults | None:
        """faults checked for the socket of proto and family (this one's by
        default), with a seed drawn; None if none is set."""
        if faults is None:
            return None
        if not isinstance(faults, Faults):
            raise ConfigError(f"faults must be a pysock.Faults or None, not {type(faults).__name__}")
        faults.check_for(proto or self.config.proto, family or self.config.family)
        return with_seed(faults) if faults.any_fault() else None

    def __repr__(self) -> str:
        return f"<pysock.{type(self).__name__} {self.url} backend={self.config.backend} model={self.config.model}>"

    # -- running ------------------------------------------------------------
    def serve_forever(self) -> None:
        """Serve in this thread until stop() is called from another thread or
        a signal handler raises (Ctrl-C: KeyboardInterrupt).  A loop that
        fails raises ServerError."""
        self._begin(threading.current_thread())
        self._serve()
        self._raise_failure()

    def start(self: _Self) -> _Self:
        """Serve in a daemon thread and return at once: the socket has been
        listening since the constructor, so clients can connect now."""
        thread = threading.Thread(target=self._run_in_thread, name=f"pysock {self.url}", daemon=True)
        self._begin(thread)
        thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped serving (stop(), or its loop
        failed); True if it has."""
        return self._done.wait(timeout)

    def _begin(self, thread: threading.Thread) -> None:
        with self._lock:
            if os.getpid() != self._pid:
                raise RuntimeError(f"{self!r} was made in another process (before a fork): it serves there")
            if self._closing:
                raise RuntimeError(f"{self!r} is stopped; a server serves once: make a new one")
            if self._started:
                raise RuntimeError(f"{self!r} is already serving")
            self._started = True
            self._thread = thread

    def _run_in_thread(self) -> None:
        # Signals are the main thread's business: keep them out of this one,
        # so Ctrl-C wakes the thread that can act on it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        self._serve()

    def _serve(self) -> None:
        try:
            self._engine.serve()
        except Exception as exc:  # the loop failed on its own: stop() reports it
            self._failure = exc
        finally:
            self._engine.wake()  # after an exception, connection threads end too
            with self._lock:
                self._done.set()
                timeout = self._close_when_done
            if timeout is not None:
                self._close(time.monotonic() + timeout)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving and close.  Safe from any thread, more than once,
        from the log too.  New clients are refused at once; an echo in
        flight gets 100 ms; the log gets the lines of the connections the
        stop closes.  Returns within ``timeout`` or raises TimeoutError (the
        server then closes by itself once its loop ends).  Raises
        ServerError if the loop had failed on its own.  In a child of the
        process that made the server (after fork()), it lets go of the
        server without touching it: the parent's sockets stay as they are."""
        if os.getpid() != self._pid:
            self._disown()
            return
        deadline = time.monotonic() + timeout
        with self._lock:
            closing, started = self._closing, self._started
            if not closing and started:
                self._engine.wake()  # under the lock: another thread's stop() may be closing it
                if threading.current_thread() is self._thread and not self._done.is_set():
                    self._close_when_done = timeout  # the loop ends, then closes, by itself
                    return
        if closing:  # another thread is closing it: wait for that, as long as we may
            self._closed.wait(max(0.0, deadline - time.monotonic()))
            return
        if started and not self._done.wait(timeout):
            with self._lock:
                if not self._done.is_set():
                    self._close_when_done = timeout
                    raise TimeoutError(f"{self!r} did not stop within {timeout} s; it will close "
                                       "once its loop ends")
        self._close(deadline)
        self._raise_failure()

    def close(self) -> None:
        """Alias of stop(): release the socket."""
        self.stop()

    def _close(self, deadline: float) -> None:
        """Once the loop has ended (or never ran): close the engine, give its
        log until deadline, give the path back.  Not under the lock: the
        log may read stats meanwhile."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            self._final_stats = self._engine.stats()
        try:
            self._engine.close(max(0.0, deadline - time.monotonic()))
            self._release_path()
        finally:
            self._closed.set()

    def _disown(self) -> None:
        """In a child after fork(): let go, touching nothing, and taking no
        lock: the child runs this thread alone, and a lock that another
        thread held at fork() (a log line, a count) stays held here."""
        if self._closing:
            return
        self._closing = True
        self._final_stats = self._engine.disown()
        self._release_path.detach()
        self._closed.set()

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None  # reported once
        if failure is not None:
            raise ServerError(f"{self.url} stopped serving: {failure}") from failure

    def __enter__(self: _Self) -> _Self:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class Lines:
    """What an engine calls with each connection event: the log, with the
    line serve -v prints.  It holds the server's URL, not the server, so a
    server nobody keeps is freed, its log's thread with it."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.url = ""  # set once bound

    def __call__(self, event: ConnEvent) -> None:
        self.log(f"{self.url} {event.describe()}")


def _release_path(path: str | None, bound: Identity | None, pid: int) -> None:
    """A unix server's path back, if it is still the file it bound (and
    this is the process that bound it)."""
    if path is not None and os.getpid() == pid:
        release(path, bound)
