"""A server's lifecycle: bind at construction, serve in the foreground or a
background thread, stop from any thread in bounded time, close in finally.

The serving loop itself runs in C (pysock/_core, csrc/) with the GIL
released; stopping writes to a wake-up pipe that every C loop polls.  With
backend="python" a pure-Python twin (pysock/twins/) runs instead, behind the
same engine interface.

ReflectionWarning is importable from here too (it lives in pysock.errors)."""
from __future__ import annotations

import errno
import signal
import threading
import warnings
from dataclasses import dataclass
from typing import Optional, Union

from pysock._core import check, ffi, lib
from pysock.config import ServerConfig, is_loopback, millis
from pysock.errors import ReflectionWarning, ServerError
from pysock.unixpath import Identity, bind_claimed, release

Address = Union[tuple, str]


@dataclass(frozen=True)
class Stats:
    """A snapshot of a server's counters."""

    accepted: int = 0      # connections accepted (TCP)
    active: int = 0        # connections open now (TCP)
    rejected: int = 0      # closed at once: over max_conns
    idle_closed: int = 0   # closed after idle_timeout
    slow_closed: int = 0   # cut off: echo left unread past send_timeout
    datagrams: int = 0     # datagrams received (UDP)
    bytes_in: int = 0
    bytes_out: int = 0
    errors: int = 0        # failures that did not end the server


_FAMILY = {"inet": "AF_INET", "inet6": "AF_INET6", "unix": "AF_UNIX"}
_SOCKTYPE = {"tcp": "SOCK_STREAM", "udp": "SOCK_DGRAM"}
_TRANSFORM = {"upper": "PS_XF_UPPER", "echo": "PS_XF_ECHO", "stamp": "PS_XF_STAMP"}
_MODEL = {"threads": "PS_MODEL_THREADS", "epoll": "PS_MODEL_EPOLL", "loop": "PS_MODEL_THREADS"}


class CEngine:
    """The C library's server behind the engine interface the Server drives:
    address, serve, wake, stats, close."""

    def __init__(self, cfg: ServerConfig) -> None:
        self._keep = []  # C strings must outlive the ps_config that points at them
        c = ffi.new("ps_config *")
        c.family = getattr(lib, _FAMILY[cfg.family])
        c.socktype = getattr(lib, _SOCKTYPE[cfg.proto])
        c.host = self._cstr(cfg.host)
        c.port = cfg.port
        c.path = self._cstr(cfg.path) if cfg.path else ffi.NULL
        c.backlog = cfg.backlog
        c.transform = getattr(lib, _TRANSFORM[cfg.transform])
        c.model = getattr(lib, _MODEL[cfg.model])
        c.workers = cfg.workers
        c.spin_us = cfg.spin_us
        c.max_conns = cfg.max_conns
        c.idle_ms = millis(cfg.idle_timeout)
        c.send_timeout_ms = millis(cfg.send_timeout)
        c.max_unsent = cfg.max_unsent
        out = ffi.new("ps_server **")
        where = cfg.url(cfg.host, cfg.port)
        check(lib.ps_server_open(out, c), f"cannot serve {where}")
        self._srv = out[0]
        self.address = self._sockname(cfg)

    def _cstr(self, s: str):
        p = ffi.new("char[]", s.encode())
        self._keep.append(p)
        return p

    def _sockname(self, cfg: ServerConfig) -> Address:
        buf = ffi.new("char[]", 256)
        port = check(lib.ps_server_sockname(self._srv, buf, 256), "getsockname")
        host = ffi.string(buf).decode()
        return host if cfg.family == "unix" else (host, port)

    def serve(self) -> None:
        """Serve until woken.  A signal returns the C loop to Python, which
        runs its handlers (KeyboardInterrupt) and goes on serving."""
        while True:
            rc = lib.ps_server_serve(self._srv)
            if rc != -errno.EINTR:
                check(rc, "serving failed")
                return

    def wake(self) -> None:
        check(lib.ps_server_stop(self._srv), "cannot wake the server")

    def stats(self) -> Stats:
        s = ffi.new("ps_stats *")
        lib.ps_server_stats(self._srv, s)
        return Stats(**{f: getattr(s, f) for f in Stats.__dataclass_fields__})

    def close(self) -> None:
        lib.ps_server_close(self._srv)
        self._srv = ffi.NULL


def _make_engine(cfg: ServerConfig):
    if cfg.backend == "python":
        from pysock import twins  # the pure-Python twins (no C involved)

        return twins.make_engine(cfg)
    return CEngine(cfg)


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

    def __init__(self, host: str = "127.0.0.1", port: int = 0, proto: str = "tcp", **options) -> None:
        self.config = ServerConfig.from_options(host=host, port=port, proto=proto, **options)
        self._path_id: Optional[Identity] = None
        if self.config.family == "unix":
            # Claimed, bound and listening under the directory's lock: exactly one owner.
            self._engine, self._path_id = bind_claimed(self.config.path, lambda: _make_engine(self.config))
        else:
            self._engine = _make_engine(self.config)
        if self.config.proto == "udp" and not is_loopback(self.host):
            warnings.warn(f"UDP echo on {self.url} answers anyone who can reach it, and any spoofed "
                          "sender: it can be used to reflect traffic at others", ReflectionWarning, stacklevel=2)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._started = False
        self._done = threading.Event()
        self._closed = False
        self._close_when_done = False
        self._failure: Optional[Exception] = None
        self._final_stats: Optional[Stats] = None

    # -- what it is ---------------------------------------------------------
    @property
    def address(self) -> Address:
        """(host, port) as bound (the real port for port=0); a path for unix."""
        return self._engine.address

    @property
    def host(self) -> str:
        return self.address if isinstance(self.address, str) else self.address[0]

    @property
    def port(self) -> int:
        return 0 if isinstance(self.address, str) else self.address[1]

    @property
    def url(self) -> str:
        return self.config.url(self.host, self.port)

    @property
    def stats(self) -> Stats:
        with self._lock:
            if self._final_stats is not None:
                return self._final_stats
            return self._engine.stats()

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

    def start(self) -> "Server":
        """Serve in a daemon thread and return at once: the socket has been
        listening since the constructor, so clients can connect now."""
        thread = threading.Thread(target=self._run_in_thread, name=f"pysock {self.url}", daemon=True)
        self._begin(thread)
        thread.start()
        return self

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the server has stopped serving (stop(), or its loop
        failed); True if it has."""
        return self._done.wait(timeout)

    def _begin(self, thread: threading.Thread) -> None:
        with self._lock:
            if self._closed:
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
                if self._close_when_done:
                    self._close()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving and close.  Safe from any thread, more than once.
        New clients are refused at once; an echo in flight gets 100 ms.
        Returns within ``timeout`` or raises TimeoutError (the server then
        closes by itself once its loop ends).  Raises ServerError if the
        loop had failed on its own."""
        with self._lock:
            if self._closed:
                return
            if not self._started:
                self._close()
                return
            self._engine.wake()  # under the lock: another thread's stop() may be closing it
            if threading.current_thread() is self._thread and not self._done.is_set():
                self._close_when_done = True  # the loop ends, then closes, by itself
                return
        if not self._done.wait(timeout):
            with self._lock:
                if not self._done.is_set():
                    self._close_when_done = True
                    raise TimeoutError(f"{self!r} did not stop within {timeout} s; it will close "
                                       "once its loop ends")
        with self._lock:
            self._close()
        self._raise_failure()

    def close(self) -> None:
        """Alias of stop(): release the socket."""
        self.stop()

    def _close(self) -> None:
        """Under the lock, once the loop has ended (or never ran)."""
        if not self._closed:
            self._final_stats = self._engine.stats()
            self._engine.close()
            if self.config.path is not None:
                release(self.config.path, self._path_id)
            self._closed = True

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None  # reported once
        if failure is not None:
            raise ServerError(f"{self.url} stopped serving: {failure}") from failure

    def __enter__(self) -> "Server":
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __del__(self) -> None:  # a server nobody started still frees its port
        try:
            if not self._closed and not self._started:
                self._close()
        except Exception:
            pass
