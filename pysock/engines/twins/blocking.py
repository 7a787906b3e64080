"""The blocking twins: the tutorials' loop (one connection at a time), a
thread per connection (what socketserver.ThreadingTCPServer does), and the
UDP recvfrom loop.

Every wait is a poll() on the socket and on the engine's wake-up socket, so
a stop from any thread ends every wait at once.  Under faults
(pysock.faults) a reply goes to the connection's shaper, and the waits end
when its next piece is due, as in C's threads model."""
from __future__ import annotations

import select
import socket
import struct
import threading
import time
from typing import Any, Callable

from pysock import transform
from pysock.config import ServerConfig, millis
from pysock.engines.base import OnEvent
from pysock.engines.twins.common import (
    ACCEPT_BACKOFF,
    BUFSIZE,
    EXHAUSTED,
    STOP_GRACE,
    UDP_SEND_WAIT,
    ConnInfo,
    Traffic,
    TwinEngine,
    reply_room,
)
from pysock.faults import NO_FAULTS, RST, TcpShaper, UdpShaper

_IN = select.POLLIN
_OUT = select.POLLOUT


def _poller(*pairs: tuple[Any, int]) -> select.poll:
    p = select.poll()
    for fd, events in pairs:
        p.register(fd, events)
    return p


def send_all(engine: TwinEngine, sock: socket.socket, data: bytes, info: ConnInfo,
             traffic: Traffic) -> str | None:
    """Send all of data; None once sent, or why the connection is over: the
    client read nothing for send_timeout ("slow", counted in slow_closed) or
    the send failed ("error").  A stop leaves STOP_GRACE to finish this echo.
    A reply the socket takes at once (the common case) costs one send."""
    try:
        n = sock.send(data)
    except BlockingIOError:
        n = 0
    except OSError:
        engine.counters.add("errors")
        return "error"
    traffic.bytes_out += n
    info.bytes_out += n
    if n == len(data):
        return None
    return _send_rest(engine, sock, memoryview(data)[n:], info, traffic)


def _send_rest(engine: TwinEngine, sock: socket.socket, view: memoryview, info: ConnInfo,
               traffic: Traffic) -> str | None:
    """send_all's slow path: wait for room, within send_timeout."""
    counters = engine.counters
    deadline: float | None = None
    waiting = _poller((sock, _OUT), (engine.wake_fd, _IN))
    watching_wake = True
    while view:
        try:
            n = sock.send(view)
        except BlockingIOError:
            n = 0
        except OSError:
            counters.add("errors")
            return "error"
        if n:
            traffic.bytes_out += n
            info.bytes_out += n
            view = view[n:]
            continue
        now = time.monotonic()
        if deadline is None:
            deadline = now + engine.cfg.send_timeout if engine.cfg.send_timeout else float("inf")
        if watching_wake and engine.stopping:
            # The wake byte stays readable: stop watching it, finish soon.
            watching_wake = False
            waiting = _poller((sock, _OUT))
            deadline = min(deadline, now + STOP_GRACE)
        if now >= deadline:
            counters.add("slow_closed")
            return "slow"
        left = deadline - now
        waiting.poll(None if left == float("inf") else max(1, int(left * 1000)))
    return None


def _timeval(seconds: float | None) -> bytes:
    """A struct timeval for SO_RCVTIMEO and SO_SNDTIMEO (0: no limit)."""
    whole = int(seconds or 0)
    return struct.pack("ll", whole, int(((seconds or 0) - whole) * 1_000_000))


def echo(engine: TwinEngine, sock: socket.socket, info: ConnInfo, traffic: Traffic) -> str:
    """Echo until the client closes its side, goes idle, stops reading or the
    server stops; which of them it was ("eof", "idle", "slow", "error",
    "stop", "fault").  Every byte read is answered before the next read, so a
    client that half-closes gets its whole echo (and what the transform
    still owes) before our FIN.  A read is sized so that its reply fits in
    reply_room(), and no reply outlives its send: what a client that never
    reads pins is bounded, and an idle connection holds no burst.

    As the plainest thread-per-connection server does, it waits in recv()
    and send() themselves: the socket is blocking, the kernel ends a recv
    silent for idle_timeout (SO_RCVTIMEO) and a send that takes nothing for
    send_timeout (SO_SNDTIMEO), and a stop shuts the connection's reading
    side down, which ends its recv (_TCPEngine.wake)."""
    xf = transform.make(engine.cfg.transform)
    feed, read_max, room = xf.feed, xf.read_max, reply_room(engine.cfg)
    sock.setblocking(True)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(engine.cfg.idle_timeout))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(engine.cfg.send_timeout))
    recv, send = sock.recv, sock.send
    faults = engine.faults
    if faults is not None and faults.end_after() is not None:  # its end is timed from now
        sock.setblocking(False)
        return Shaped(engine, sock, info, xf, traffic, eof=False).run()
    while not engine.stopping:
        try:
            data = recv(read_max(room))
        except BlockingIOError:  # silent for idle_timeout
            if engine.stopping:
                return "stop"
            engine.counters.add("idle_closed")
            return "idle"
        except OSError:
            engine.counters.add("errors")
            return "error"
        if engine.stopping:
            return "stop"  # a stop shut our reading side: b"" is its, not the client's
        if data:
            traffic.bytes_in += len(data)
            info.bytes_in += len(data)
        reply = feed(data) if data else xf.finish()
        if engine.faults is not None:  # from now on through a shaper
            sock.setblocking(False)
            shaped = Shaped(engine, sock, info, xf, traffic, eof=not data)
            shaped.push(reply)
            del data, reply  # the shaper holds the reply, and frees it once sent
            return shaped.run()
        try:
            sent = send(reply) if reply else 0
        except OSError:
            sent = -1
        if sent != len(reply):
            failed = _send_blocking(engine, sock, reply, max(sent, 0), info, traffic)
            if failed:
                return failed
        else:
            traffic.bytes_out += sent
            info.bytes_out += sent
        if not data:
            return "eof"
        del data, reply  # the next wait may be long: hold no read
    return "stop"


def _send_blocking(engine: TwinEngine, sock: socket.socket, reply: bytes, sent: int, info: ConnInfo,
                   traffic: Traffic) -> str | None:
    """The rest of a reply the first send() did not take whole, on a
    blocking socket: within send_timeout of its first send (each send's
    SO_SNDTIMEO is set to what is left of it), or until a stop's grace ends
    (the stop shuts the connection down: counted as slow, as every engine
    counts what a stop's grace cut off)."""
    traffic.bytes_out += sent
    info.bytes_out += sent
    timeout = engine.cfg.send_timeout
    deadline = time.monotonic() + timeout if timeout else None
    view = memoryview(reply)
    while sent < len(reply):
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                engine.counters.add("slow_closed")
                return "slow"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(max(left, 0.001)))
        try:
            n = sock.send(view[sent:])
        except BlockingIOError:  # nothing taken for the time that was left
            engine.counters.add("slow_closed")
            return "slow"
        except OSError:
            engine.counters.add("slow_closed" if engine.stopping else "errors")
            return "slow" if engine.stopping else "error"
        sent += n
        traffic.bytes_out += n
        info.bytes_out += n
    if deadline is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(timeout))
    return None


class Shaped:
    """echo() once faults are set: replies go through a TcpShaper, and the
    loop sends what it lets go when due, reading meanwhile while what it
    holds is under max_unsent.  It stays so for the connection's life (a
    later reply never overtakes a shaped one)."""

    def __init__(self, engine: TwinEngine, sock: socket.socket, info: ConnInfo, xf: Any,
                 traffic: Traffic, eof: bool) -> None:
        self.engine, self.sock, self.info, self.xf, self.traffic = engine, sock, info, xf, traffic
        self.shaper = TcpShaper(engine.faults or NO_FAULTS, info.conn, time.monotonic())
        self.eof = eof  # the client has closed its side

    def push(self, reply: bytes) -> None:
        """Hand a reply to the shaper, which alone holds it from now on (a
        reference kept elsewhere would pin it uncounted once it has gone)."""
        self.shaper.push(self.engine.faults or NO_FAULTS, reply, time.monotonic())

    def run(self) -> str:
        """Send what the shaper lets go, and read while it holds less than
        max_unsent, until the connection ends; why it did."""
        engine, cfg, shaper = self.engine, self.engine.cfg, self.shaper
        idle_ms = millis(cfg.idle_timeout) or None
        while not engine.stopping:
            why = self._release()
            if why:
                return why
            if self.eof and not shaper.busy():
                return self._linger()
            reading = not self.eof and shaper.cost() < cfg.max_unsent
            timeout = _ms_until(shaper.due()) if shaper.busy() else idle_ms
            waiting = _poller((self.sock, _IN), (engine.wake_fd, _IN)) if reading else _poller((engine.wake_fd, _IN))
            ready = waiting.poll(timeout)
            if engine.stopping:
                return "stop"
            if not ready:
                if shaper.busy():
                    continue
                engine.counters.add("idle_closed")
                return "idle"
            if reading:
                why = self._read()
                if why:
                    return why
        return "stop"

    def _read(self) -> str | None:
        cfg = self.engine.cfg
        room = max(1, min(reply_room(cfg), cfg.max_unsent - self.shaper.cost()))
        try:  # the reply to this read must fit below max_unsent with what the shaper holds, as in C
            data = self.sock.recv(min(room, self.xf.read_max(room)))
        except BlockingIOError:
            return None
        except OSError:
            self.engine.counters.add("errors")
            return "error"
        if not data:
            self.eof = True
            reply = self.xf.finish()
        else:
            self.traffic.bytes_in += len(data)
            self.info.bytes_in += len(data)
            reply = self.xf.feed(data)
        del data
        self.push(reply)
        return None

    def _release(self) -> str | None:
        """Send what is due; why the connection ends, if it does."""
        faults = self.engine.faults or NO_FAULTS
        while True:
            piece = self.shaper.ready(faults, time.monotonic())
            if not piece:
                break
            failed = send_all(self.engine, self.sock, piece, self.info, self.traffic)
            self.shaper.took(faults, len(piece), time.monotonic())
            if failed:
                return failed
        end = self.shaper.end(faults, time.monotonic())
        try:
            if end == RST:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif end is not None:
                self.sock.shutdown(socket.SHUT_WR)  # the FIN goes before any RST for unread input
        except OSError:
            pass  # the client has gone already
        return "fault" if end else None

    def _linger(self) -> str:
        """The client has closed and heard everything: close_delay holds our
        close that long, and stall for good, as a hung server's would
        (idle_timeout or a stop ends it)."""
        faults = self.shaper.applies(self.engine.faults or NO_FAULTS)
        wake = _poller((self.engine.wake_fd, _IN))
        if faults.stall:
            if wake.poll(millis(self.engine.cfg.idle_timeout) or None):
                return "stop"
            self.engine.counters.add("idle_closed")
            return "idle"
        if faults.close_delay and wake.poll(int(faults.close_delay * 1000 + 0.999)):
            return "stop"
        return "eof"


def _shutdown(conn: socket.socket, how: int) -> None:
    try:
        conn.shutdown(how)
    except OSError:
        pass  # the client has gone already


class _TCPEngine(TwinEngine):
    """The accept side both blocking TCP models share, and their stop: the
    connections wait in blocking recv() and send(), which a stop ends by
    shutting their reading side down at once, and the whole connection
    once STOP_GRACE has passed (an echo still unsent is cut off then)."""

    def __init__(self, cfg: ServerConfig, on_event: OnEvent = None) -> None:
        super().__init__(cfg, on_event)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._grace: threading.Timer | None = None

    def wake(self) -> None:
        super().wake()
        with self._conns_lock:
            if self._grace is None and self._conns:
                self._grace = threading.Timer(STOP_GRACE, self._cut_all)
                self._grace.daemon = True
                self._grace.start()
            for conn in self._conns:
                _shutdown(conn, socket.SHUT_RD)

    def _cut_all(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                _shutdown(conn, socket.SHUT_RDWR)

    def _end_grace(self) -> None:
        """After every connection has ended: the grace's timer goes too."""
        with self._conns_lock:
            grace = self._grace
        if grace is not None:
            grace.cancel()
            grace.join()

    def _accept_loop(self, handle: Callable[[socket.socket, ConnInfo], None]) -> None:
        """Wait for connections (or the wake-up) and hand each to handle."""
        ready = _poller((self.sock, _IN), (self.wake_fd, _IN))
        while not self.stopping:
            ready.poll()
            if self.stopping:
                return
            taken = self._accept()
            if taken is not None:
                handle(*taken)

    def _accept(self) -> tuple[socket.socket, ConnInfo] | None:
        """The next connection, ready to serve, and its ConnInfo; None if
        there was none, it failed, or it was over max_conns (closed at once)."""
        try:
            conn, peer = self.sock.accept()
        except BlockingIOError:
            return None  # the client left before we took it
        except OSError as exc:
            self.counters.add("errors")
            if exc.errno in EXHAUSTED:
                # The connection stays in the backlog: back off rather than spin.
                _poller((self.wake_fd, _IN)).poll(millis(ACCEPT_BACKOFF))
            return None
        self.counters.add("accepted")
        info = self.conn_info(peer)
        if self.counters.get("active") >= self.cfg.max_conns:
            self.counters.add("rejected")
            self.event("rejected", info)
            conn.close()
            return None
        conn.setblocking(False)
        if self.cfg.family != "unix":
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, info

    def _serve_conn(self, conn: socket.socket, info: ConnInfo) -> None:
        """Echo on conn (already counted as active), then close it.  An
        unexpected failure ends this connection only, and is counted."""
        why = "error"
        self.event("open", info)
        traffic = self.counters.traffic()
        with self._conns_lock:
            self._conns.add(conn)
            if self.stopping:  # the stop's shutdowns came before us
                _shutdown(conn, socket.SHUT_RD)
        try:
            why = echo(self, conn, info, traffic)
        except Exception:
            self.counters.add("errors")
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            conn.close()
            self.counters.retire(traffic)
            self.counters.add("active", -1)
            self.event("close", info, why)


class LoopTCP(_TCPEngine):
    """The tutorials' loop: accept, echo until the client closes, accept the
    next.  Clients that arrive meanwhile wait in the listen backlog."""

    def serve(self) -> None:
        try:
            self._accept_loop(self._serve_one)
        finally:
            self._end_grace()

    def _serve_one(self, conn: socket.socket, info: ConnInfo) -> None:
        self.counters.add("active")
        self._serve_conn(conn, info)


class ThreadsTCP(_TCPEngine):
    """A thread per connection, as socketserver.ThreadingTCPServer does; the
    accept loop runs in serve()'s thread and joins every thread it started
    before returning."""

    def __init__(self, cfg: ServerConfig, on_event: OnEvent = None) -> None:
        super().__init__(cfg, on_event)
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()

    def serve(self) -> None:
        try:
            self._accept_loop(self._start)
        finally:
            self.wake()  # also after Ctrl-C: every connection thread ends
            self._join_all()
            self._end_grace()

    def _start(self, conn: socket.socket, info: ConnInfo) -> None:
        self.counters.add("active")
        thread = threading.Thread(target=self._run, args=(conn, info), name="pysock twin connection",
                                  daemon=True)
        with self._threads_lock:
            self._threads.add(thread)
        try:
            thread.start()
        except RuntimeError:  # can't start new thread
            with self._threads_lock:
                self._threads.discard(thread)
            self.counters.add("errors")
            self.counters.add("active", -1)
            conn.close()

    def _run(self, conn: socket.socket, info: ConnInfo) -> None:
        try:
            self._serve_conn(conn, info)
        finally:
            with self._threads_lock:
                self._threads.discard(threading.current_thread())

    def _join_all(self) -> None:
        with self._threads_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()


def _ms_until(when: float | None) -> int | None:
    """A poll() timeout until a monotonic time, rounded up; None: no limit."""
    return None if when is None else max(0, int((when - time.monotonic()) * 1000 + 0.999))


class LoopUDP(TwinEngine):
    """The recvfrom loop: each datagram, transformed, back to its sender.
    Under faults each reply goes through a UdpShaper, and the loop sends
    each when due."""

    def serve(self) -> None:
        """Each datagram waiting is read and answered before the loop
        polls again: a busy socket costs a recvfrom and a sendto each, as
        the plainest loop's do; poll() waits only when none is there (or
        for the wake-up, or the next held reply's time)."""
        counters, traffic = self.counters, self.counters.traffic()
        datagram = transform.make(self.cfg.transform).datagram  # no state between datagrams
        poll = _poller((self.sock, _IN), (self.wake_fd, _IN)).poll
        recvfrom, sendto = self.sock.recvfrom, self.sock.sendto
        shaper = UdpShaper(self.cfg.max_unsent)
        while not self.stopping:
            if shaper.pending:  # replies held by faults: send what is due
                self._send_due(shaper, traffic)
            try:
                # A longer unix datagram is cut to BUFSIZE bytes, as in C.
                data, peer = recvfrom(BUFSIZE)
            except BlockingIOError:  # none waiting: sleep until one comes, the wake-up, or a held reply's time
                poll(_ms_until(shaper.due()))
                continue
            except OSError:
                # An ICMP error from an earlier reply surfaces here: count it, go on.
                counters.add("errors")
                continue
            traffic.datagrams += 1
            traffic.bytes_in += len(data)
            reply = datagram(data)
            if self.faults is not None:
                if not peer or not shaper.push(self.faults, reply, peer, time.monotonic()):
                    counters.add("errors")
                continue
            if not peer:  # an unbound unix sender has no address
                counters.add("errors")
                continue
            try:
                sendto(reply, peer)
            except BlockingIOError:  # a full send buffer: wait for it briefly
                if not self._send(reply, peer):
                    counters.add("errors")
                    continue
            except OSError:
                counters.add("errors")
                continue
            traffic.bytes_out += len(reply)

    def _send_due(self, shaper: UdpShaper, traffic: Traffic) -> None:
        while True:
            taken = shaper.pop(time.monotonic())
            if taken is None:
                return
            if self._send(*taken):
                traffic.bytes_out += len(taken[0])
            else:
                self.counters.add("errors")

    def _send(self, reply: bytes, peer: Any) -> bool:
        """A full send buffer drains at loopback speed: wait for it briefly
        instead of dropping the reply."""
        for attempt in range(2):
            try:
                self.sock.sendto(reply, peer)
                return True
            except BlockingIOError:
                if attempt == 0 and not _poller((self.sock, _OUT)).poll(int(UDP_SEND_WAIT * 1000)):
                    return False
            except OSError:
                return False
        return False
