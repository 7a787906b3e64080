"""What every twin shares: the socket it binds, its counters, and the
wake-up socketpair a stop writes to (no polling interval)."""
from __future__ import annotations

import errno
import os
import socket
import threading
import weakref
from typing import Any

from pysock.config import ServerConfig
from pysock.engines.base import ACCEPT_BACKOFF, BUFSIZE, STATS_FIELDS, STOP_GRACE, ConnEvent, OnEvent, Stats
from pysock.engines.log import QueueLog
from pysock.errors import ResolveError
from pysock.faults import Faults
from pysock.urls import Address

UDP_SEND_WAIT = 0.1      # seconds a UDP reply waits for a full send buffer
# accept() failures that say "out of something", not "this one client".
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
__all__ = ["ACCEPT_BACKOFF", "BUFSIZE", "STOP_GRACE", "Address", "ConnInfo", "Counters", "TwinEngine",
           "open_socket", "peer_name", "reply_room"]


def reply_room(cfg: ServerConfig) -> int:
    """The most bytes one read's reply may take (stamp sizes its reads by it).
    C lets a reply grow to max_unsent; the twins stop at one buffer, since a
    Python process gives large freed blocks back to the system less reliably
    (tests/test_contract.py's memory test, threads twin, stamp, max_unsent
    256 KiB: 90 KiB per idle connection after a burst and 354 KiB per client
    that never reads with replies up to max_unsent; 54 and 123 KiB so)."""
    return min(cfg.max_unsent, BUFSIZE)


_FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX}
_SOCKTYPES = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


class Traffic:
    """What one serving thread counts per request: only that thread writes
    it, so it takes no lock (a lock per request, contended by every
    connection thread, cost the threads twin a third of its time)."""

    __slots__ = ("bytes_in", "bytes_out", "datagrams")

    def __init__(self) -> None:
        self.bytes_in = self.bytes_out = self.datagrams = 0


class Counters:
    """Stats as they grow (and "conns", the connections numbered so far).
    Connections' events (accepted, closed, ...) take the lock; the bytes
    and datagrams of each request go to the serving thread's Traffic, which
    a snapshot adds up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(STATS_FIELDS + ("conns",), 0)
        self._traffic: list[Traffic] = []

    def add(self, field: str, n: int = 1) -> int:
        with self._lock:
            self._values[field] += n
            return self._values[field]

    def get(self, field: str) -> int:
        return self._values[field]

    def traffic(self) -> Traffic:
        """A Traffic for the calling thread to count in; retire() it when
        the thread is done, or keep it for the engine's life."""
        t = Traffic()
        with self._lock:
            self._traffic.append(t)
        return t

    def retire(self, t: Traffic) -> None:
        """Fold a finished thread's Traffic into the totals."""
        with self._lock:
            self._traffic.remove(t)
            for field in Traffic.__slots__:
                self._values[field] += getattr(t, field)

    def snapshot(self) -> Stats:
        with self._lock:
            return self.sum()

    def sum(self) -> Stats:
        """The totals, read without the lock: under it, or where no other
        thread runs (a child after fork())."""
        values = dict(self._values)
        for t in self._traffic:
            for field in Traffic.__slots__:
                values[field] += getattr(t, field)
        return Stats(**{f: values[f] for f in STATS_FIELDS})


class ConnInfo:
    """What the log says of one connection: its number, its peer, its bytes."""

    __slots__ = ("bytes_in", "bytes_out", "conn", "peer")

    def __init__(self, conn: int, peer: str) -> None:
        self.conn = conn
        self.peer = peer
        self.bytes_in = 0
        self.bytes_out = 0


def peer_name(peer: Any) -> str:
    """"127.0.0.1:50112" or "[::1]:50112", as C's log names a peer; "" over AF_UNIX."""
    if not isinstance(peer, tuple):
        return ""
    host, port = peer[0], peer[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_address(cfg: ServerConfig, family: int, socktype: int, where: str) -> Any:
    """What bind() takes: a path, (host, port) or IPv6's (host, port, flow, scope)."""
    if cfg.path is not None:
        return cfg.path
    try:
        infos = socket.getaddrinfo(cfg.host, cfg.port, family, socktype)
    except socket.gaierror as exc:
        raise ResolveError(f"cannot serve {where}: {exc.strerror}") from None
    except UnicodeError:  # Python's IDNA codec refuses the name before any lookup
        raise ResolveError(f"cannot serve {where}: not a valid host name") from None
    return infos[0][4]


def open_socket(cfg: ServerConfig) -> socket.socket:
    """socket, options, bind, listen: what ps_server_open does, in Python.
    Errors name the address, as the C backend's do."""
    where = cfg.url(cfg.host, cfg.port)
    family = _FAMILIES[cfg.family]
    socktype = _SOCKTYPES[cfg.proto]
    address = _bind_address(cfg, family, socktype, where)
    sock = socket.socket(family, socktype)
    try:
        if family != socket.AF_UNIX and socktype == socket.SOCK_STREAM:
            # A stopped server's port is free for a restart at once (TIME_WAIT
            # is TCP's; for UDP the option would let two servers share a port).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1 if cfg.ipv6_only else 0)
        sock.bind(address)
        if socktype == socket.SOCK_STREAM:
            sock.listen(cfg.backlog or socket.SOMAXCONN)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno is None:
            raise OSError(f"cannot serve {where}: {exc}") from None
        raise OSError(exc.errno, f"cannot serve {where}: {os.strerror(exc.errno)}") from None
    return sock


def _release(sockets: tuple[socket.socket, ...], log: QueueLog | None, pid: int) -> None:
    """Close a twin's sockets and end its log; in another process (after
    fork) only this process's copies of the descriptors, never a shutdown."""
    for sock in sockets:
        sock.close()
    if log is not None and os.getpid() == pid:
        log.close(0)


class TwinEngine:
    """A bound socket, counters and a wake-up socketpair.  Subclasses
    provide serve(): serve until wake() is called, then close every
    connection (within STOP_GRACE) before returning.  The engine owns its
    sockets and its log: close() releases them, and so does a finalizer
    when an engine nobody closed is dropped."""

    def __init__(self, cfg: ServerConfig, on_event: OnEvent = None) -> None:
        self.cfg = cfg
        self.log = QueueLog(on_event) if on_event is not None else None
        self.counters = Counters()
        self.stopping = False
        self.faults: Faults | None = None  # read afresh for each reply
        try:
            self.sock = open_socket(cfg)
        except BaseException:
            if self.log is not None:
                self.log.close(0)
            raise
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.wake_fd = self._wake_r.fileno()
        self._release = weakref.finalize(self, _release, (self.sock, self._wake_r, self._wake_w), self.log,
                                         os.getpid())
        self._release.atexit = False  # at exit a daemon thread may still serve: the process ends it
        self.address: Address = cfg.path if cfg.path is not None else tuple(self.sock.getsockname()[:2])

    def serve(self) -> None:
        raise NotImplementedError

    def set_faults(self, faults: Faults | None) -> None:
        """From any thread: the faults for data received from now on."""
        self.faults = faults

    def conn_info(self, peer: Any) -> ConnInfo:
        """A connection just accepted: its number (from 1) and its peer."""
        return ConnInfo(self.counters.add("conns"), peer_name(peer))

    def event(self, kind: str, info: ConnInfo, why: str = "") -> None:
        """Tell the log (if the server keeps one) what became of a
        connection; its own thread calls it (pysock.engines.log)."""
        if self.log is not None:
            self.log.put(ConnEvent(kind, info.conn, info.peer, why, info.bytes_in, info.bytes_out))

    def wake(self) -> None:
        """Safe from any thread: a flag, the listener shut down (as
        ps_server_stop does: new clients are refused, not left waiting in the
        backlog), then one byte that every poller sees (nobody reads it, so
        it stays readable)."""
        self.stopping = True
        if self.cfg.proto == "tcp":
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass  # closed already
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # already full (a byte is there) or closed: woken either way

    def stats(self) -> Stats:
        return self.counters.snapshot()

    def close(self, log_timeout: float | None = None) -> None:
        """Not while serve() runs in another thread: the Server stops it
        first.  Events waiting for the log get log_timeout seconds (None:
        as long as they take).  A unix path stays: the Server, which
        claimed it, removes it.  More than once is fine."""
        if not self._release.alive:
            return
        self.wake()
        self._release.detach()
        _release((self.sock, self._wake_r, self._wake_w), None, os.getpid())
        if self.log is not None:
            self.log.close(log_timeout)

    def disown(self) -> Stats:
        """After fork(), in the child: close this process's copies of the
        sockets, never shutting them down (the parent still serves)."""
        if self._release.alive:
            self._release()
        return self.counters.sum()
