"""The C engine: the one module that drives the compiled server
(csrc/server.c) through cffi.  The serving loop runs in C with the GIL
released; wake() writes to a pipe every C loop polls.

The engine owns its ps_server: close() frees it, and so does a finalizer
when an engine nobody closed is dropped (a Server never started, or one
whose constructor failed), in the process that made it only: after
fork() a child leaves the parent's sockets as they are."""
from __future__ import annotations

import errno
import os
import weakref
from typing import Any, cast

from pysock._core import check, ffi, lib
from pysock.config import ServerConfig, millis
from pysock.engines.base import STATS_FIELDS, ConnEvent, OnEvent, Stats
from pysock.engines.log import PipeLog
from pysock.faults import Faults
from pysock.proxy.config import ProxyConfig
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
        lib.PS_WHY_STOP: "stop", lib.PS_WHY_FAULT: "fault", lib.PS_WHY_UPSTREAM: "upstream"}


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
    f.close_after_us = _micros(faults.close_after_time)
    f.reset_after_us = _micros(faults.reset_after_time)
    f.corrupt = faults.corrupt
    f.toxicity = faults.toxicity
    f.drop = faults.drop
    f.duplicate = faults.duplicate
    f.reorder = faults.reorder
    f.seed = faults.seed or 0
    return f


def _upstream(cfg: ProxyConfig, c: Any) -> Any:
    """A proxy's upstream into ps_config c; the string c points at."""
    c.model = lib.PS_MODEL_PROXY
    if cfg.upstream_proto == "unix":
        c.up_family = lib.AF_UNIX
        host = ffi.new("char[]", os.fsencode(str(cfg.upstream)))
    else:
        address, c.up_port = cast(tuple[str, int], cfg.upstream)
        c.up_family = lib.AF_INET6 if ":" in address else lib.AF_INET
        host = ffi.new("char[]", address.encode())
    c.up_host = host
    return host


def _event(record: bytes) -> ConnEvent:
    """A ps_event record (csrc/pysock.h) as a ConnEvent."""
    e = ffi.from_buffer("ps_event *", record)
    return ConnEvent(kind=_KINDS.get(e.kind, "?"), conn=e.conn, peer=ffi.string(e.peer).decode(),
                     why=_WHY.get(e.why, ""), bytes_in=e.bytes_in, bytes_out=e.bytes_out)


def _release(srv: Any, log: PipeLog | None, pid: int) -> None:
    """Free a ps_server (its loops have returned, or never ran) and end its
    log; in another process (after fork) leave both alone."""
    if os.getpid() != pid:
        return
    lib.ps_server_close(srv)
    if log is not None:
        log.close(0)


class CEngine:
    """The C library's server behind the engine interface the Server drives:
    address, serve, wake, stats, set_faults, close."""

    def __init__(self, cfg: ServerConfig, on_event: OnEvent = None) -> None:
        self._log = PipeLog(on_event, ffi.sizeof("ps_event"), _event) if on_event is not None else None
        c = ffi.new("ps_config *")
        # ps_server_open copies both strings; they live on self until it
        # has (a local the JIT sees no more use of may be freed before).
        self._strings: tuple[Any, ...] = (ffi.new("char[]", cfg.host.encode()),
                                          ffi.new("char[]", os.fsencode(cfg.path)) if cfg.path else ffi.NULL)
        c.family = getattr(lib, _FAMILY[cfg.family])
        c.socktype = getattr(lib, _SOCKTYPE[cfg.proto])
        c.host, c.path = self._strings[0], self._strings[1]
        c.port = cfg.port
        c.backlog = cfg.backlog
        c.transform = getattr(lib, _TRANSFORM[cfg.transform])
        c.model = getattr(lib, _MODEL[cfg.model or ""])  # validated(): never None
        if isinstance(cfg, ProxyConfig):
            self._strings += (_upstream(cfg, c),)
        c.v6only = 1 if cfg.ipv6_only else 0
        c.workers = cfg.workers
        c.spin_us = cfg.spin_us
        c.max_conns = cfg.max_conns
        c.idle_ms = millis(cfg.idle_timeout)
        c.send_timeout_ms = millis(cfg.send_timeout)
        c.max_unsent = cfg.max_unsent
        if self._log is not None:
            c.log_events = 1
            c.event_fd = self._log.write_fd
        out = ffi.new("ps_server **")
        rc = lib.ps_server_open(out, c)
        if rc < 0:
            if self._log is not None:
                self._log.close(0)
            check(rc, f"cannot serve {cfg.url(cfg.host, cfg.port)}")
        self._srv = out[0]
        self._release = weakref.finalize(self, _release, self._srv, self._log, os.getpid())
        self._release.atexit = False  # at exit a daemon thread may still serve: the process ends it
        try:
            self.address = self._sockname(cfg)
        except BaseException:
            self.close()
            raise

    def _sockname(self, cfg: ServerConfig) -> Address:
        if cfg.path is not None:
            return cfg.path  # what C bound, as given (any bytes, os.fsdecode's way)
        buf = ffi.new("char[]", 256)
        port = check(lib.ps_server_sockname(self._srv, buf, 256), "getsockname")
        return ffi.string(buf).decode(), port

    def serve(self) -> None:
        """Serve until woken.  A signal returns the C loop to Python, which
        runs its handlers (KeyboardInterrupt) and goes on serving."""
        while True:
            rc = lib.ps_server_serve(self._srv)
            if rc != -errno.EINTR:
                check(rc, "serving failed")
                return

    def wake(self) -> None:
        if self._release.alive:
            check(lib.ps_server_stop(self._srv), "cannot wake the server")

    def set_faults(self, faults: Faults | None) -> None:
        if self._release.alive:
            lib.ps_server_set_faults(self._srv, ffi.NULL if faults is None else c_faults(faults))

    def set_faults_up(self, faults: Faults | None) -> None:
        """A proxy's faults for what its upstream receives."""
        if self._release.alive:
            lib.ps_server_set_faults_up(self._srv, ffi.NULL if faults is None else c_faults(faults))

    def stats(self) -> Stats:
        s = ffi.new("ps_stats *")
        if self._release.alive:
            lib.ps_server_stats(self._srv, s)
        return Stats(**{f: getattr(s, f) for f in STATS_FIELDS})

    def close(self, log_timeout: float | None = None) -> None:
        """Free the server (not while serve() runs in another thread), then
        end the log: waiting events get log_timeout seconds (None: as long
        as they take).  More than once is fine."""
        if self._release.detach() is None:
            return
        lib.ps_server_close(self._srv)
        if self._log is not None:
            self._log.close(log_timeout)

    def disown(self) -> Stats:
        """After fork(), in the child: let go of the server without touching
        its sockets or threads, which are the parent's (ps_server_stats
        takes no lock)."""
        stats = self.stats()
        self._release.detach()
        return stats
