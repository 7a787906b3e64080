"""A server's lifecycle: bind at construction, serve in the foreground or a
background thread, stop from any thread in bounded time, close in finally.

The serving itself is an engine's (pysock.engines.base): the C library
(pysock.engines.c) or a pure-Python twin (pysock.engines.twins), chosen once from the
configuration.  Stats and ReflectionWarning are importable from here too."""
from __future__ import annotations

import inspect
import os
import signal
import threading
import time
import warnings
import weakref
from typing import Callable

from pysock.config import DEFAULT_HOST, ServerConfig, check_known, is_loopback
from pysock.engines import make_engine
from pysock.engines.base import ConnEvent, Stats
from pysock.errors import ConfigError, ReflectionWarning, ServerError
from pysock.faults import Faults, with_seed
from pysock.unixpath import Identity, bind_claimed, release
from pysock.urls import Address

__all__ = ["ReflectionWarning", "Server", "Stats"]


class Server:
    """An echo server, bound when constructed.

    >>> with Server(port=0, proto="udp") as srv:   # serving in a thread
    ...     host, port = srv.address

    ``Server(path="/tmp/echo.sock", proto="tcp")`` (or ``family="unix"``)
    serves on an AF_UNIX socket instead: proto "tcp" is a stream socket,
    "udp" a datagram one.  The path is made absolute, and removed when the
    server stops if it is still the socket file this server bound.

    A server serves once: new -> serving (start() or serve_forever()) ->
    stopped (stop()).  A loop that fails on its own ends the server; stop()
    (or serve_forever()) then raises ServerError with the failure as cause.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, proto: str = "tcp", *,
                 path: str | None = None,
                 transform: str = ServerConfig.transform,
                 backend: str = ServerConfig.backend,
                 model: str | None = None,
                 workers: int = ServerConfig.workers,
                 spin_us: int = ServerConfig.spin_us,
                 max_conns: int = ServerConfig.max_conns,
                 idle_timeout: float | None = ServerConfig.idle_timeout,
                 send_timeout: float | None = ServerConfig.send_timeout,
                 max_unsent: int = ServerConfig.max_unsent,
                 backlog: int = ServerConfig.backlog,
                 family: str = ServerConfig.family,
                 ipv6_only: bool | None = ServerConfig.ipv6_only,
                 log: Callable[[str], None] | None = None,
                 faults: Faults | None = None,
                 **unknown: object) -> None:
        """Check the options, bind (and listen), ready to serve.

        - host, port: where to listen (port 0: a free one; ``address`` has it).
        - proto: "tcp" or "udp" (over a unix socket: stream or datagram).
        - path: serve on this AF_UNIX path instead of host and port.
        - transform: "upper" (bytes.upper()), "echo", or "stamp" (the
          tutorials' timestamp server: "at <ctime> :" before each line).
        - backend: "c" (the compiled library) or "python" (the pure-Python twins).
        - model: how it waits for clients; None: the first this build can run
          (C TCP: "epoll", "uring", "threads"; C UDP: "loop", "uring";
          Python TCP: "threads", "loop", "asyncio", "uvloop"; Python UDP:
          "loop", "asyncio", "uvloop").
        - workers: serving threads, each with its own socket on the port.
        - spin_us: busy-poll this many microseconds before sleeping.
        - max_conns: open connections at most; the next is closed at once.
        - idle_timeout: close a connection silent this many seconds (0: never).
        - send_timeout: cut off a client that leaves its echo unread this long.
        - max_unsent: stop reading from a client with this much echo unsent.
        - backlog: the listen backlog (0: the system's SOMAXCONN).
        - ipv6_only: an IPv6 server serves IPv6 alone; None (the default): yes,
          but for "::", which serves IPv4 clients too (dual stack).
        - log: called with a line for each connection opened, closed (why, and
          its bytes) or rejected (pysock serve -v), in order, from a thread
          of its own: a slow or raising log never slows the serving, and it
          may call stop().
        - faults: a pysock.Faults: how to misbehave (latency, drops, resets...);
          set_faults() changes it while serving.

        Raises ConfigError for a bad option (before any engine runs),
        ResolveError for a host that does not resolve, OSError for a port
        or path in use.  docs/contract.md says what every engine does."""
        check_known(unknown, _OPTIONS)
        if log is not None and not callable(log):
            raise ConfigError(f"log must be callable (it is called with each line), not {log!r}")
        self.config = ServerConfig(
            host=host, port=port, proto=proto, family=family, path=path, transform=transform,
            backend=backend, model=model, workers=workers, spin_us=spin_us, backlog=backlog,
            max_conns=max_conns, idle_timeout=idle_timeout, send_timeout=send_timeout,
            max_unsent=max_unsent, ipv6_only=ipv6_only).validated()
        self._faults = self._checked_faults(faults)
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
        lines = _Lines(log) if log is not None else None
        path_id: Identity | None = None
        if self.config.path is not None:
            # Claimed, bound and listening under the directory's lock: exactly one owner.
            self._engine, path_id = bind_claimed(self.config.path, lambda: make_engine(self.config, lines))
        else:
            self._engine = make_engine(self.config, lines)
        self._release_path = weakref.finalize(self, _release_path, self.config.path, path_id, self._pid)
        self._release_path.atexit = False
        try:  # nothing below may leave the port (or path) taken
            if lines is not None:
                lines.url = self.url
            if self._faults is not None:
                self._engine.set_faults(self._faults)
            if self.config.proto == "udp" and not is_loopback(self.host):
                warnings.warn(f"UDP echo on {self.url} answers anyone who can reach it, and any spoofed "
                              "sender: it can be used to reflect traffic at others", ReflectionWarning,
                              stacklevel=2)
        except BaseException:
            self._engine.close(0)
            self._release_path()
            raise

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
            if self._closing:
                raise RuntimeError(f"{self!r} is stopped: it has no faults to set")
            self._engine.set_faults(checked)
            self._faults = checked

    def _checked_faults(self, faults: Faults | None) -> Faults | None:
        """faults checked for this server, with a seed drawn; None if none is set."""
        if faults is None:
            return None
        if not isinstance(faults, Faults):
            raise ConfigError(f"faults must be a pysock.Faults or None, not {type(faults).__name__}")
        faults.check_for(self.config.proto, self.config.family)
        return with_seed(faults) if faults.set_fields() else None

    def __repr__(self) -> str:
        return f"<pysock.Server {self.url} backend={self.config.backend} model={self.config.model}>"

    # -- running ------------------------------------------------------------
    def serve_forever(self) -> None:
        """Serve in this thread until stop() is called from another thread or
        a signal handler raises (Ctrl-C: KeyboardInterrupt).  A loop that
        fails raises ServerError."""
        self._begin(threading.current_thread())
        self._serve()
        self._raise_failure()

    def start(self) -> Server:
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

    def __enter__(self) -> Server:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _Lines:
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


# Every keyword Server takes, for the error that lists them.
_OPTIONS = tuple(name for name in inspect.signature(Server.__init__).parameters if name not in ("self", "unknown"))
