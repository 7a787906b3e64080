"""A server's lifecycle: bind at construction, serve in the foreground or a
background thread, stop from any thread in bounded time, close in finally.

The serving loop itself runs in C (pysock/_core, csrc/) with the GIL
released; stopping writes to a wake-up pipe that every C loop polls.  With
backend="python" a pure-Python twin (pysock/twins/) runs instead, behind the
same engine interface."""
from __future__ import annotations

import errno
import ipaddress
import signal
import threading
import warnings
from dataclasses import dataclass
from typing import Optional, Union

from pysock._core import check, ffi, lib
from pysock.config import ServerConfig, millis
from pysock.unixpath import claim

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


class ReflectionWarning(RuntimeWarning):
    """A UDP echo server reachable from other machines."""


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a unix socket path: this machine only


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
    "udp" a datagram one.  The path is removed when the server stops.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, proto: str = "tcp", **options) -> None:
        self.config = ServerConfig(host=host, port=port, proto=proto, **options).validated()
        if self.config.path is not None:  # AF_UNIX
            claim(self.config.path)  # a stale socket file goes, a live server's path is refused
        self._engine = _make_engine(self.config)
        if self.config.proto == "udp" and not _is_loopback(self.host):
            warnings.warn(f"UDP echo on {self.url} answers anyone who can reach it, and any spoofed "
                          "sender: it can be used to reflect traffic at others", ReflectionWarning, stacklevel=2)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._serving = threading.Event()
        self._done = threading.Event()
        self._closed = False
        self._close_when_done = False

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
        if self._closed:
            return self._final_stats
        return self._engine.stats()

    def __repr__(self) -> str:
        return f"<pysock.Server {self.url} backend={self.config.backend} model={self.config.model}>"

    # -- running ------------------------------------------------------------
    def serve_forever(self) -> None:
        """Serve in this thread until stop() is called from another thread or
        a signal handler raises (Ctrl-C: KeyboardInterrupt)."""
        with self._lock:
            if self._closed or self._serving.is_set():
                raise RuntimeError(f"{self!r} is closed or already serving")
            self._thread = threading.current_thread()
            self._serving.set()
        try:
            self._engine.serve()
        finally:
            self._engine.wake()  # after an exception, connection threads end too
            self._done.set()
            if self._close_when_done:
                with self._lock:
                    self._close()

    def start(self) -> "Server":
        """Serve in a daemon thread; return once it is serving."""
        thread = threading.Thread(target=self._run_in_thread, name=f"pysock {self.url}", daemon=True)
        thread.start()
        self._serving.wait()
        return self

    def _run_in_thread(self) -> None:
        # Signals are the main thread's business: keep them out of this one,
        # so Ctrl-C wakes the thread that can act on it.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        self.serve_forever()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop serving and close.  Safe from any thread, more than once;
        returns within ``timeout`` or raises TimeoutError."""
        with self._lock:
            if self._closed:
                return
            if not self._serving.is_set():
                self._close()
                return
            # Under the lock: another thread's stop() may be closing the engine.
            self._engine.wake()
        if threading.current_thread() is self._thread:
            self._close_when_done = True  # the loop ends, then closes, by itself
            return
        if not self._done.wait(timeout):
            raise TimeoutError(f"{self!r} did not stop within {timeout} s")
        with self._lock:
            self._close()

    def close(self) -> None:
        """Alias of stop(): release the socket."""
        self.stop()

    def _close(self) -> None:
        if not self._closed:
            self._final_stats = self._engine.stats()
            self._engine.close()
            self._closed = True

    def __enter__(self) -> "Server":
        if not self._serving.is_set():
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __del__(self) -> None:  # a server nobody stopped still frees its port
        try:
            if not self._closed and not self._serving.is_set():
                self._close()
        except Exception:
            pass
