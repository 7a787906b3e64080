"""The C engine: the one module that drives the compiled server
(csrc/server.c) through cffi.  The serving loop runs in C with the GIL
released; wake() writes to a pipe every C loop polls."""
from __future__ import annotations

import errno
import os
import threading
from typing import Any, Callable

from pysock._core import check, ffi, lib
from pysock.config import ServerConfig, millis
from pysock.engines.base import STATS_FIELDS, ConnEvent, OnEvent, Stats
from pysock.faults import Faults
from pysock.urls import Address

_FAMILY = {"inet": "AF_INET", "inet6": "AF_INET6", "unix": "AF_UNIX"}
_SOCKTYPE = {"tcp": "SOCK_STREAM", "udp": "SOCK_DGRAM"}
_TRANSFORM = {"upper": "PS_XF_UPPER", "echo": "PS_XF_ECHO", "stamp": "PS_XF_STAMP"}
_MODEL = {"threads": "PS_MODEL_THREADS", "epoll": "PS_MODEL_EPOLL", "loop": "PS_MODEL_THREADS",
          "uring": "PS_MODEL_URING"}

# The log's words for the C library's event codes (csrc/pysock.h), read from
# the library, not typed in again.
_KINDS = {lib.PS_EV_OPEN: "open", lib.PS_EV_CLOSE: "close", lib.PS_EV_REJECTED: "rejected"}
_WHY = {lib.PS_WHY_EOF: "eof", lib.PS_WHY_IDLE: "idle", lib.PS_WHY_SLOW: "slow", lib.PS_WHY_ERROR: "error",
        lib.PS_WHY_STOP: "stop", lib.PS_WHY_FAULT: "fault"}


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def c_faults(faults: Faults) -> Any:
    """faults as the C library's ps_faults (0 is off)."""
    f = ffi.new("ps_faults *")
    f.latency_us = _micros(faults.latency)
    f.jitter_us = _micros(faults.jitter)
    f.bandwidth = faults.bandwidth or 0
    f.slice = faults.slice or 0
    f.slice_delay_us = _micros(faults.slice_delay)
    f.limit_data = faults.limit_data or 0
    f.reset_after = faults.reset_after or 0
    f.stall = 1 if faults.stall else 0
    f.close_delay_us = _micros(faults.close_delay)
    f.drop = faults.drop
    f.duplicate = faults.duplicate
    f.reorder = faults.reorder
    f.seed = faults.seed or 0
    return f


class EventReader:
    """The read end of the pipe the C loops write ps_event records to, and a
    thread that turns each into a ConnEvent for on_event.  It ends when the
    write end is closed (after the server is)."""

    def __init__(self, on_event: Callable[[ConnEvent], None]) -> None:
        self.on_event = on_event
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.write_fd, False)  # a full log drops a record, never stalls a loop
        self.thread = threading.Thread(target=self._run, name="pysock events", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        size = ffi.sizeof("ps_event")
        pending = b""
        with os.fdopen(self.read_fd, "rb", buffering=0) as pipe:
            while True:
                chunk = pipe.read(size * 64)
                if not chunk:
                    return
                pending += chunk
                whole = len(pending) - len(pending) % size
                for at in range(0, whole, size):
                    self.on_event(self._event(ffi.from_buffer("ps_event *", pending[at:at + size])))
                pending = pending[whole:]

    @staticmethod
    def _event(e: Any) -> ConnEvent:
        return ConnEvent(kind=_KINDS.get(e.kind, "?"), conn=e.conn, peer=ffi.string(e.peer).decode(),
                         why=_WHY.get(e.why, ""), bytes_in=e.bytes_in, bytes_out=e.bytes_out)

    def close(self) -> None:
        os.close(self.write_fd)
        self.thread.join(5)


class CEngine:
    """The C library's server behind the engine interface the Server drives:
    address, serve, wake, stats, close."""

    def __init__(self, cfg: ServerConfig, on_event: OnEvent = None) -> None:
        self._keep: list[Any] = []  # C strings must outlive the ps_config that points at them
        self._events = EventReader(on_event) if on_event is not None else None
        c = ffi.new("ps_config *")
        c.family = getattr(lib, _FAMILY[cfg.family])
        c.socktype = getattr(lib, _SOCKTYPE[cfg.proto])
        c.host = self._cstr(cfg.host)
        c.port = cfg.port
        c.path = self._cstr(cfg.path) if cfg.path else ffi.NULL
        c.backlog = cfg.backlog
        c.transform = getattr(lib, _TRANSFORM[cfg.transform])
        c.model = getattr(lib, _MODEL[cfg.model or ""])  # validated(): never None
        c.v6only = 1 if cfg.ipv6_only else 0
        c.workers = cfg.workers
        c.spin_us = cfg.spin_us
        c.max_conns = cfg.max_conns
        c.idle_ms = millis(cfg.idle_timeout)
        c.send_timeout_ms = millis(cfg.send_timeout)
        c.max_unsent = cfg.max_unsent
        if self._events is not None:
            c.log_events = 1
            c.event_fd = self._events.write_fd
        out = ffi.new("ps_server **")
        where = cfg.url(cfg.host, cfg.port)
        try:
            check(lib.ps_server_open(out, c), f"cannot serve {where}")
        except BaseException:
            if self._events is not None:
                self._events.close()
            raise
        self._srv = out[0]
        self.address = self._sockname(cfg)

    def _cstr(self, s: str) -> Any:
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

    def set_faults(self, faults: Faults | None) -> None:
        lib.ps_server_set_faults(self._srv, ffi.NULL if faults is None else c_faults(faults))

    def stats(self) -> Stats:
        s = ffi.new("ps_stats *")
        lib.ps_server_stats(self._srv, s)
        return Stats(**{f: getattr(s, f) for f in STATS_FIELDS})

    def close(self) -> None:
        lib.ps_server_close(self._srv)
        self._srv = ffi.NULL
        if self._events is not None:
            self._events.close()  # after the loops: every record is in the pipe
