"""The asyncio twins: asyncio protocols on asyncio's own event loop
("asyncio") or on uvloop's ("uvloop", when uvloop is installed).

The listening socket is bound in the constructor like every other engine's;
serve() runs a fresh event loop in the calling thread, which watches the
wake-up socket with add_reader, so a stop from any thread ends it at once.
Under faults (pysock.faults) replies go through a shaper, released by the
loop's timers."""
from __future__ import annotations

import asyncio
import functools
import socket
import struct
import time
from typing import Any, Callable, cast

from pysock import transform
from pysock.config import ServerConfig
from pysock.engines.base import OnEvent
from pysock.engines.twins.common import (
    ACCEPT_BACKOFF,
    BUFSIZE,
    EXHAUSTED,
    STOP_GRACE,
    ConnInfo,
    Counters,
    TwinEngine,
    reply_room,
)
from pysock.faults import NO_FAULTS, RST, TcpShaper, UdpShaper

# Connections taken per wake-up of the listening socket, so that a flood of
# them cannot starve the connections already open.
ACCEPT_BATCH = 64
LOOP_READ = 256 << 10  # the most one read of asyncio's (or uvloop's) own takes


def _loop_factory(model: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if model == "uvloop":
        import uvloop  # config.validated() has checked it is installed

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Acceptor:
    """Takes connections off the listening socket and hands each to an
    EchoProtocol.  asyncio's own server (loop.create_server) answers EMFILE
    by retrying accept() once per backlog slot and, measured here, did not
    serve again once descriptors were free; this one backs off
    ACCEPT_BACKOFF seconds, as the C loops do, and counts every failure."""

    def __init__(self, engine: AsyncioEngine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.fd = engine.sock.fileno()
        self.protocol = engine.stream_protocol()
        self.retry: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.retry = None
        self.loop.add_reader(self.fd, self._accept_ready)

    def stop(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
        self.loop.remove_reader(self.fd)

    def _accept_ready(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.engine.stopping:
                return  # the stop shut the listener down, which makes it readable: no client
            try:
                conn, peer = self.engine.sock.accept()
            except (BlockingIOError, InterruptedError):
                return  # none left (or the client left before we took it)
            except OSError as exc:
                self.engine.counters.add("errors")
                if exc.errno in EXHAUSTED:  # the connection stays in the backlog
                    self.loop.remove_reader(self.fd)
                    self.retry = self.loop.call_later(ACCEPT_BACKOFF, self.start)
                    return
                continue  # ECONNABORTED, EPROTO, EPERM: that client only
            conn.setblocking(False)
            info = self.engine.conn_info(peer)
            # partial, not a lambda: the task runs after this loop has taken
            # the next connection, and each protocol must get its own info.
            task = self.loop.create_task(
                self.loop.connect_accepted_socket(functools.partial(self.protocol, self.engine, info), conn))
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.engine.counters.add("errors")


class Echo(asyncio.BaseProtocol):
    """One TCP connection: each read, transformed, written back.

    Flow control stands in for the C server's "answer before reading again":
    once more than one buffer of echo is unsent, reading pauses, and a client
    that leaves it unsent for send_timeout is cut off.  A reply of upper or
    echo is the size of its read: the loop's own reads will do (EchoProtocol;
    SizedEchoProtocol for stamp).

    Under faults the shaper holds the replies, counted against max_unsent,
    and lets them into the transport only while its writing is not paused.
    Reading pauses until the reply to one more read fits below max_unsent:
    the loop's read is taken whole (up to LOOP_READ), so pausing only once
    the shaper is full would let one read overshoot by that much."""

    def __init__(self, engine: AsyncioEngine, info: ConnInfo) -> None:
        self.engine = engine
        self.info = info
        self.why = ""  # set when we end it: idle, slow, stop
        self.counters: Counters = engine.counters
        self.traffic = engine.traffic
        self.transport: asyncio.Transport  # from connection_made
        self.served = False  # accepted under max_conns: counted in active
        self.idle_timeout = engine.cfg.idle_timeout or 0.0
        self.xf = transform.make(engine.cfg.transform)
        self.feed = self.xf.feed
        self.loop = asyncio.get_running_loop()
        self.last_read = time.monotonic()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.slow_timer: asyncio.TimerHandle | None = None
        self.ended_by_us = False
        # Under faults: the shaper, its next release, and whether it holds
        # max_unsent (reading paused for it).
        self.shaper: TcpShaper | None = None
        self.release_timer: asyncio.TimerHandle | None = None
        self.held_back = False
        self.write_paused = False  # the transport holds more than its high mark
        self.eof = False
        self.closing = False

    # -- asyncio's callbacks -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream's
        self.counters.add("accepted")
        if self.counters.get("active") >= self.engine.cfg.max_conns:
            self.counters.add("rejected")
            self.engine.event("rejected", self.info)
            self.transport.abort()
            return
        self.served = True
        self.counters.add("active")
        self.engine.event("open", self.info)
        self.engine.conns.add(self)
        high = min(self.engine.cfg.max_unsent, BUFSIZE)
        self.transport.set_write_buffer_limits(high=high, low=high // 4)
        if self.idle_timeout:
            self.idle_timer = self.loop.call_later(self.idle_timeout, self._check_idle)
        faults = self.engine.faults
        if faults is not None and faults.end_after() is not None:  # its end is timed from now
            self.shaper = TcpShaper(faults, self.info.conn, time.monotonic())
            self._release()

    def data_received(self, data: bytes) -> None:
        self.traffic.bytes_in += len(data)
        self.info.bytes_in += len(data)
        self.last_read = time.monotonic()
        self._write(self.feed(data))

    def _write(self, reply: bytes) -> None:
        if self.shaper is not None or self.engine.faults is not None:
            self._shape(reply)
        elif reply:
            self._send(reply)

    def _send(self, reply: bytes) -> None:
        self.transport.write(reply)
        self.traffic.bytes_out += len(reply)
        self.info.bytes_out += len(reply)

    def eof_received(self) -> bool:
        self.eof = True
        self._write(self.xf.finish())
        # asyncio closes the transport once the echo is sent; a shaper's
        # replies (and close_delay) close it themselves.
        return self.shaper is not None

    # -- faults --------------------------------------------------------------
    def _shape(self, reply: bytes) -> None:
        faults = self.engine.faults or NO_FAULTS
        if self.shaper is None:
            self.shaper = TcpShaper(faults, self.info.conn, time.monotonic())
        self.shaper.push(faults, reply, time.monotonic())
        if not self.held_back and not self._room_for_a_read():
            self.held_back = True
            self.transport.pause_reading()
        self._release()

    def _room_for_a_read(self) -> bool:
        """Whether the loop may read again: the reply to its next read is
        taken whole, so it must fit below max_unsent with what the shaper
        holds, or the shaper must hold nothing."""
        cost = self.shaper.cost() if self.shaper is not None else 0
        return cost == 0 or cost + self.largest_reply() <= self.engine.cfg.max_unsent

    def largest_reply(self) -> int:
        """The most one read's reply can take: the loop's own read."""
        return LOOP_READ

    def _release(self) -> None:
        """Send what the shaper lets go now, then wait for its next time."""
        self.release_timer = None
        if not self.served or self.transport.is_closing() or self.shaper is None:
            return
        if self.write_paused:
            return  # what is due waits in the shaper, counted: resume_writing() comes back
        faults = self.engine.faults or NO_FAULTS
        while True:
            piece = self.shaper.ready(faults, time.monotonic())
            if not piece:
                break
            self._send(piece)
            self.shaper.took(faults, len(piece), time.monotonic())
        end = self.shaper.end(faults, time.monotonic())
        if end is not None:
            self._end_fault(end)
            return
        faults = self.shaper.applies(faults)
        if self.held_back and self._room_for_a_read():
            self.held_back = False
            if not self.write_paused:
                self.transport.resume_reading()
        due = self.shaper.due()
        if self.shaper.busy() and due is not None:
            self.release_timer = self.loop.call_later(max(0.0, due - time.monotonic()), self._release)
        elif self.eof and not self.closing and not faults.stall:  # stall: idle_timeout closes it
            self.closing = True
            delay = faults.close_delay
            if delay:
                self.release_timer = self.loop.call_later(delay, self.end, "eof")
            else:
                self.end("eof")

    def _end_fault(self, end: str) -> None:
        """limit_data: close (FIN) after what is buffered; reset_after: once
        it has gone, abort with SO_LINGER 0 (RST)."""
        self.closing = True
        if end != RST:
            self.transport.write_eof()  # the FIN goes before any RST for unread input
            self.end("fault")
            return
        if self.transport.get_write_buffer_size() > 0:
            self.release_timer = self.loop.call_later(0.005, self._end_fault, end)
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.end("fault", abort=True)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.transport.pause_reading()
        if self.engine.cfg.send_timeout:
            self.slow_timer = self.loop.call_later(self.engine.cfg.send_timeout, self._too_slow)

    def resume_writing(self) -> None:
        self._cancel(self.slow_timer)
        self.slow_timer = None
        self.write_paused = False
        if self.shaper is not None and self.release_timer is None:
            self._release()  # what fell due while writing was paused
        if not self.transport.is_closing() and not self.held_back:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.served:
            return  # rejected: never counted as active
        self._cancel(self.idle_timer)
        self._cancel(self.slow_timer)
        self._cancel(self.release_timer)
        if exc is not None and not self.ended_by_us:
            self.counters.add("errors")
        self.counters.add("active", -1)
        self.engine.forget(self)
        self.engine.event("close", self.info, self.why or ("error" if exc is not None else "eof"))

    # -- limits and stop -------------------------------------------------------
    def _check_idle(self) -> None:
        if self.slow_timer is not None or (self.shaper is not None and self.shaper.busy()):
            # not idle: its echo is stuck (see _too_slow), or a fault holds it
            self.idle_timer = self.loop.call_later(self.idle_timeout, self._check_idle)
            return
        silent_until = self.last_read + self.idle_timeout
        left = silent_until - time.monotonic()  # not loop.time(): uvloop's is cached, in whole ms
        if left > 0:
            self.idle_timer = self.loop.call_later(left, self._check_idle)
            return
        self.idle_timer = None
        self.counters.add("idle_closed")
        self.end("idle")

    def _too_slow(self) -> None:
        self.slow_timer = None
        self.counters.add("slow_closed")
        unsent = self.transport.get_write_buffer_size()
        self.traffic.bytes_out -= unsent
        self.info.bytes_out -= unsent
        self.end("slow", abort=True)

    def end(self, why: str, abort: bool = False) -> None:
        self.ended_by_us = True
        self.why = self.why or why
        if abort:
            self.transport.abort()
        else:
            self.transport.close()  # sends what is buffered first

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()


class EchoProtocol(Echo, asyncio.Protocol):
    """Echo for upper and echo: the loop reads, data_received answers."""


class SizedEchoProtocol(Echo, asyncio.BufferedProtocol):
    """Echo for stamp, whose reply can be 30 times its read: reads go into
    the loop's one shared buffer (get_buffer), each sized so that its reply
    fits in reply_room(); asyncio's own reads of 256 KiB would let one read
    of newlines pin 30 times that in a stamped reply.  (uvloop reads into
    get_buffer only for a protocol that is no asyncio.Protocol.)"""

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.engine.rbuf[: self.xf.read_max(reply_room(self.engine.cfg))]

    def largest_reply(self) -> int:
        return reply_room(self.engine.cfg)

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.engine.rbuf[:nbytes]))


class EchoDatagramProtocol(asyncio.DatagramProtocol):
    """Each datagram, transformed, back to its sender."""

    def __init__(self, engine: AsyncioEngine) -> None:
        self.engine = engine
        self.counters: Counters = engine.counters
        self.traffic = engine.traffic
        self.datagram = transform.make(engine.cfg.transform).datagram  # no state between datagrams
        self.transport: asyncio.DatagramTransport  # from connection_made, before any datagram
        self.loop = asyncio.get_running_loop()
        self.shaper = UdpShaper(engine.cfg.max_unsent)
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        data = data[:BUFSIZE]  # a longer unix datagram is cut, as C's recv cuts it
        self.traffic.datagrams += 1
        self.traffic.bytes_in += len(data)
        abstract = isinstance(addr, bytes)
        if abstract:
            # An abstract unix address.  uvloop hands it over padded with NULs
            # to the whole of sun_path (108 bytes), which names another
            # address; the sender's own name (Linux autobind: a NUL and five
            # hex digits) has no trailing NUL.
            addr = addr.rstrip(b"\0")
        if not addr:  # an unbound AF_UNIX sender: nowhere to answer
            self.counters.add("errors")
            return
        reply = self.datagram(data)
        faults = self.engine.faults
        if faults is None:
            self._reply(reply, addr)
        elif self.shaper.push(faults, reply, addr, time.monotonic()):
            self._send_due()
        else:
            self.counters.add("errors")

    def _reply(self, reply: bytes, addr: Any) -> None:
        if reply and not isinstance(addr, bytes):
            self.transport.sendto(reply, addr)
            self.traffic.bytes_out += len(reply)
        else:
            self._send_directly(reply, addr)

    def _send_due(self) -> None:
        """Send the shaped replies that are due; wake for the next."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport.is_closing():
            return
        while True:
            taken = self.shaper.pop(time.monotonic())
            if taken is None:
                break
            self._reply(*taken)
        due = self.shaper.due()
        if due is not None:
            self.timer = self.loop.call_later(max(0.0, due - time.monotonic()), self._send_due)

    def _send_directly(self, reply: bytes, addr: Any) -> None:
        # asyncio's (and uvloop's) sendto() silently drops an empty datagram,
        # and uvloop's takes no abstract unix address: send those ourselves.
        try:
            self.engine.sock.sendto(reply, addr)
            self.traffic.bytes_out += len(reply)
        except OSError:
            self.counters.add("errors")

    def error_received(self, exc: Exception) -> None:
        self.counters.add("errors")  # an ICMP error from an earlier reply


class AsyncioEngine(TwinEngine):
    """The engine for the "asyncio" and "uvloop" models, TCP or UDP."""

    def __init__(self, cfg: ServerConfig, on_event: OnEvent = None) -> None:
        super().__init__(cfg, on_event)
        self._new_loop = _loop_factory(cfg.model or "asyncio")  # validated(): never None
        self.rbuf = memoryview(bytearray(BUFSIZE))  # every connection reads here, one at a time
        self.traffic = self.counters.traffic()  # the loop's thread alone counts in it
        self.conns: set[Any] = set()  # each has end(why, abort=False)
        self._all_gone: asyncio.Event | None = None

    def stream_protocol(self) -> Callable[[Any, ConnInfo], asyncio.BaseProtocol]:
        """What serves each accepted connection, made with (engine, info)."""
        return SizedEchoProtocol if self.cfg.transform == "stamp" else EchoProtocol

    def forget(self, conn: Any) -> None:
        self.conns.discard(conn)
        if not self.conns and self._all_gone is not None:
            self._all_gone.set()

    def serve(self) -> None:
        loop = self._new_loop()
        main = loop.create_task(self._serve(loop))
        try:
            loop.run_until_complete(main)
        finally:
            if not main.done():  # Ctrl-C in the foreground: close everything still
                main.cancel()
                try:
                    loop.run_until_complete(main)
                except BaseException:
                    pass
            loop.close()

    async def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        woken = loop.create_future()
        loop.add_reader(self.wake_fd, _resolve, woken)
        try:
            if self.cfg.proto == "udp":
                await self._serve_udp(loop, woken)
            else:
                await self._serve_tcp(loop, woken)
        finally:
            loop.remove_reader(self.wake_fd)

    async def _serve_udp(self, loop: asyncio.AbstractEventLoop, woken: asyncio.Future[None]) -> None:
        transport, _ = await loop.create_datagram_endpoint(lambda: EchoDatagramProtocol(self), sock=self.sock)
        try:
            await woken
        finally:
            transport.close()
            await asyncio.sleep(0)  # let the transport finish closing

    async def _serve_tcp(self, loop: asyncio.AbstractEventLoop, woken: asyncio.Future[None]) -> None:
        acceptor = Acceptor(self, loop)
        acceptor.start()
        try:
            await woken
        finally:
            acceptor.stop()
            await self._close_connections()

    async def _close_connections(self) -> None:
        """Send what is buffered for STOP_GRACE, then cut off what is left."""
        self._all_gone = asyncio.Event()
        for conn in list(self.conns):
            conn.end("stop")
        if self.conns:
            try:
                await asyncio.wait_for(self._all_gone.wait(), STOP_GRACE)
            except asyncio.TimeoutError:
                for conn in list(self.conns):  # the grace is over: cut off, as every engine counts it
                    self.counters.add("slow_closed")
                    conn.end("slow", abort=True)
        for _ in range(3):  # connection_lost runs from the loop's next turns
            if not self.conns:
                break
            await asyncio.sleep(0)
