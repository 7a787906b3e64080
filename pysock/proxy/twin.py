"""The proxy's pure-Python twin, on asyncio (or uvloop): the same contract
as the C proxy (csrc/proxy.c), and datagrams too.

Streams: each accepted client is a Pair of two asyncio protocols (its
side and the upstream's) and two Flows (up: client to upstream, down: the
other way).  A flow writes what its reader sends, through a TcpShaper
while its direction has faults; its reader pauses while the writer's
transport is over its high mark or the shaper holds max_unsent.  A
half-close is passed on once everything before it is written.

Datagrams: each sender gets a Session, a connected UDP socket of its own
to the upstream, forgotten after idle_timeout; replies from the upstream
go back to the sender from the listening socket.  Each direction has a
UdpShaper (per sender)."""
from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import OrderedDict
from typing import Any, Callable, cast

from pysock.engines.base import OnEvent
from pysock.engines.twins.aio import LOOP_READ, AsyncioEngine
from pysock.engines.twins.common import BUFSIZE, ConnInfo
from pysock.faults import NO_FAULTS, RST, Faults, TcpShaper, UdpShaper
from pysock.proxy.config import ProxyConfig

__all__ = ["ProxyTwin"]

UP, DOWN = "up", "down"


class Side(asyncio.Protocol):
    """One socket of a pair; everything it hears goes to the pair."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.transport: asyncio.Transport | None = None
        self.paused = False        # its reading, as asked last
        self.write_paused = False  # its transport is over the high mark

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        high = min(self.pair.engine.cfg.max_unsent, BUFSIZE)
        self.transport.set_write_buffer_limits(high=high, low=high // 4)
        self.pair.made(self)

    def data_received(self, data: bytes) -> None:
        self.pair.received(self, data)

    def eof_received(self) -> bool:
        self.pair.eof(self)
        return True  # a half-close: the other direction goes on

    def pause_writing(self) -> None:
        self.write_paused = True
        self.pair.writer_changed(self)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.pair.writer_changed(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pair.lost(self, exc)

    def set_reading(self, on: bool) -> None:
        if self.transport is None or self.transport.is_closing() or on != self.paused:
            return
        self.paused = not on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()


class ClientSide(Side):
    """The accepted client's socket: made by the acceptor with (engine,
    info), it makes the pair.  The engine's stop ends it through end()."""

    def __init__(self, engine: ProxyTwin, info: ConnInfo) -> None:
        super().__init__(Pair(engine, info, self))

    def end(self, why: str, abort: bool = False) -> None:
        self.pair.close(why, abort)


class Flow:
    """Bytes read from one side, written to the other, under the faults of
    its direction."""

    def __init__(self, pair: Pair, direction: str, reader: Side, writer: Side | None) -> None:
        self.pair = pair
        self.direction = direction
        self.reader = reader
        self.writer = writer
        self.shaper: TcpShaper | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.eof = False
        self.shut = False
        self.delaying = False  # close_delay runs before the EOF is passed on

    def faults(self) -> Faults | None:
        engine = self.pair.engine
        return engine.faults_up if self.direction == UP else engine.faults

    def take(self, data: bytes) -> None:
        faults = self.faults()
        if faults is None and (self.shaper is None or not self.shaper.busy()):
            self.write(data)
        else:
            if self.shaper is None:
                self.shaper = TcpShaper(faults or NO_FAULTS, self.pair.info.conn, time.monotonic())
            self.shaper.push(faults or NO_FAULTS, data, time.monotonic())
            self.release()
        self.pair.update_reading()

    def write(self, data: bytes) -> None:
        assert self.writer is not None and self.writer.transport is not None
        self.writer.transport.write(data)
        if self.direction == DOWN:
            self.pair.count_out(len(data))

    def held(self) -> int:
        return self.shaper.cost() if self.shaper is not None else 0

    def room_for_a_read(self) -> bool:
        """The loop's next read is taken whole: it must fit below max_unsent."""
        cost = self.held()
        return cost == 0 or cost + LOOP_READ <= self.pair.engine.cfg.max_unsent

    def release(self) -> None:
        """Write what the shaper lets go now; wait for its next time."""
        self.timer = None
        if self.shaper is None or self.pair.closing or self.writer is None:
            return
        if self.writer.write_paused:
            return  # what is due waits in the shaper, counted; resume comes back
        faults = self.faults() or NO_FAULTS
        while piece := self.shaper.ready(faults, time.monotonic()):
            self.write(piece)
            self.shaper.took(faults, len(piece), time.monotonic())
        end = self.shaper.end(faults, time.monotonic())
        if end is not None:
            self.pair.end_fault(self, end)
            return
        due = self.shaper.due()
        if self.shaper.busy() and due is not None:
            self.timer = self.pair.loop.call_later(max(0.0, due - time.monotonic()), self.release)
        self.pair.update_reading()
        self.pass_eof()

    def pass_eof(self) -> None:
        """Once everything before the reader's EOF is written: shut the
        writer down for writing (after close_delay; under stall never)."""
        if not self.eof or self.shut or self.delaying or self.pair.closing or self.writer is None:
            return
        if self.shaper is not None and self.shaper.busy():
            return
        faults = self.faults()
        if faults is not None and self.shaper is not None:
            faults = self.shaper.applies(faults)
        if faults is not None and faults.stall:
            return
        if faults is not None and faults.close_delay:
            self.delaying = True
            self.timer = self.pair.loop.call_later(faults.close_delay, self._shut)
            return
        self._shut()

    def _shut(self) -> None:
        self.delaying = False
        if self.pair.closing or self.writer is None or self.writer.transport is None:
            return
        self.shut = True
        self.writer.transport.write_eof()  # after what is buffered
        self.pair.both_shut()

    def start_timed_end(self) -> None:
        """Under a timed end (close_after_time, reset_after_time) the shaper
        is made as the pair opens, and the end is counted from then."""
        faults = self.faults()
        if faults is not None and faults.end_after() is not None and self.shaper is None:
            self.shaper = TcpShaper(faults, self.pair.info.conn, time.monotonic())
            self.release()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class Pair:
    """A client connection and its own connection to the upstream."""

    def __init__(self, engine: ProxyTwin, info: ConnInfo, client: ClientSide) -> None:
        self.engine = engine
        self.info = info
        self.loop = asyncio.get_running_loop()
        self.client: Side = client
        self.upstream: Side | None = None
        self.up = Flow(self, UP, client, None)
        self.down: Flow | None = None
        self.served = False
        self.closing = False
        self.why = ""
        self.ended_by_us = False
        self.last_read = time.monotonic()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.slow_timer: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[Any] | None = None
        self.early: list[bytes] = []  # read before the upstream answered

    # -- opening --------------------------------------------------------------
    def made(self, side: Side) -> None:
        if side is self.client:
            self._client_made()
        else:
            self._upstream_made(side)

    def _client_made(self) -> None:
        counters = self.engine.counters
        counters.add("accepted")
        if counters.get("active") >= self.engine.cfg.max_conns:
            counters.add("rejected")
            self.engine.event("rejected", self.info)
            assert self.client.transport is not None
            self.client.transport.abort()
            return
        self.served = True
        counters.add("active")
        self.engine.event("open", self.info)
        self.engine.conns.add(self.client)
        self.client.set_reading(False)  # until the upstream answers
        idle = self.engine.cfg.idle_timeout
        if idle:
            self.idle_timer = self.loop.call_later(idle, self._check_idle)
        self.connecting = self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        cfg = self.engine.cfg
        try:
            if cfg.upstream_proto == "unix":
                await self.loop.create_unix_connection(lambda: Side(self), str(cfg.upstream))
            else:
                host, port = cast(tuple[str, int], cfg.upstream)
                await self.loop.create_connection(lambda: Side(self), host, port)
        except OSError:
            if not self.closing:
                self.engine.counters.add("errors")
                self.close("upstream")

    def _upstream_made(self, side: Side) -> None:
        if self.closing:
            assert side.transport is not None
            side.transport.close()
            return
        self.upstream = side
        self.up.writer = side
        self.down = Flow(self, DOWN, side, self.client)
        early, self.early = self.early, []
        for flow in (self.up, self.down):
            flow.start_timed_end()
        for data in early:
            self.up.take(data)
        self.client.set_reading(True)
        self.up.pass_eof()  # the client may have half-closed already

    # -- bytes ------------------------------------------------------------------
    def flow_from(self, side: Side) -> Flow | None:
        return self.up if side is self.client else self.down

    def received(self, side: Side, data: bytes) -> None:
        self.last_read = time.monotonic()
        if side is self.client:
            self.engine.traffic.bytes_in += len(data)
            self.info.bytes_in += len(data)
        if self.closing:
            return
        if self.upstream is None:  # uvloop may read once before a pause takes
            self.early.append(data)
            self.client.paused = False
            self.client.set_reading(False)
            return
        flow = self.flow_from(side)
        if flow is not None:
            flow.take(data)

    def count_out(self, n: int) -> None:
        self.engine.traffic.bytes_out += n
        self.info.bytes_out += n

    def eof(self, side: Side) -> None:
        flow = self.flow_from(side)
        if flow is not None:
            flow.eof = True
            flow.pass_eof()

    def both_shut(self) -> None:
        if self.up.shut and self.down is not None and self.down.shut:
            self.close("eof")

    def update_reading(self) -> None:
        """Each side reads while the other side's writing is not paused and
        its flow's shaper has room for one more read."""
        for flow in (self.up, self.down):
            if flow is not None and flow.writer is not None:
                flow.reader.set_reading(not flow.writer.write_paused and flow.room_for_a_read())

    def writer_changed(self, side: Side) -> None:
        """A side's transport went over its high mark or back under it: its
        reader pauses meanwhile, and send_timeout runs."""
        send_timeout = self.engine.cfg.send_timeout
        if side.write_paused and send_timeout and self.slow_timer is None:
            self.slow_timer = self.loop.call_later(send_timeout, self._too_slow)
        if not side.write_paused and not self._any_write_paused():
            self._cancel_slow()
        self.update_reading()
        flow = self.down if side is self.client else self.up
        if flow is not None and not side.write_paused and flow.timer is None:
            flow.release()

    def _any_write_paused(self) -> bool:
        return self.client.write_paused or (self.upstream is not None and self.upstream.write_paused)

    def _cancel_slow(self) -> None:
        if self.slow_timer is not None:
            self.slow_timer.cancel()
            self.slow_timer = None

    # -- ending -----------------------------------------------------------------
    def end_fault(self, flow: Flow, how: str) -> None:
        """limit_data: the writer gets a FIN after what is buffered;
        reset_after: once that has gone, an RST.  The pair closes."""
        writer = flow.writer
        assert writer is not None and writer.transport is not None
        if how != RST:
            writer.transport.write_eof()
            self.close("fault")
            return
        if writer.transport.get_write_buffer_size() > 0:
            flow.timer = self.loop.call_later(0.005, self.end_fault, flow, how)
            return
        sock = writer.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        self.close("fault")

    def close(self, why: str, abort: bool = False) -> None:
        """Close both sides (flushing what is buffered, unless abort)."""
        self.why = self.why or why
        if self.closing:
            if abort:
                self._close_sides(abort=True)
            return
        self.closing = True
        self.ended_by_us = True
        for flow in (self.up, self.down):
            if flow is not None:
                flow.cancel()
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        self._close_sides(abort)

    def _close_sides(self, abort: bool) -> None:
        for side in (self.client, self.upstream):
            if side is not None and side.transport is not None:
                if abort:
                    side.transport.abort()
                else:
                    side.transport.close()

    def lost(self, side: Side, exc: Exception | None) -> None:
        if side is not self.client:
            if not self.closing:  # the upstream went first: reset, or closed on us
                self.engine.counters.add("errors")
                self.close("upstream", abort=exc is not None)
            return
        if not self.served:
            return  # rejected: never counted as active
        if not self.closing:
            if exc is not None:
                self.engine.counters.add("errors")
            self.close("error" if exc is not None else "eof", abort=exc is not None)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        self._cancel_slow()
        self.engine.counters.add("active", -1)
        self.engine.forget(self.client)
        self.engine.event("close", self.info, self.why)

    def _check_idle(self) -> None:
        idle = self.engine.cfg.idle_timeout or 0.0
        busy = any(f is not None and f.shaper is not None and f.shaper.busy() for f in (self.up, self.down))
        if self.slow_timer is not None or busy or self.closing:
            self.idle_timer = None if self.closing else self.loop.call_later(idle, self._check_idle)
            return
        silent_until = self.last_read + idle
        left = silent_until - time.monotonic()  # not loop.time(): uvloop's is cached, in whole ms
        if left > 0:
            self.idle_timer = self.loop.call_later(left, self._check_idle)
            return
        self.idle_timer = None
        self.engine.counters.add("idle_closed")
        self.close("idle")

    def _too_slow(self) -> None:
        self.slow_timer = None
        self.engine.counters.add("slow_closed")
        unsent = self.client.transport.get_write_buffer_size() if self.client.transport is not None else 0
        self.engine.traffic.bytes_out -= unsent
        self.info.bytes_out -= unsent
        self.close("slow", abort=True)


# -- datagrams ------------------------------------------------------------------
class Session:
    """One sender's own socket to the upstream."""

    def __init__(self, proxy: DatagramProxy, peer: Any, info: ConnInfo) -> None:
        self.proxy = proxy
        self.peer = peer
        self.info = info
        cfg = proxy.engine.cfg
        family = socket.AF_INET6 if ":" in str(cfg.upstream[0]) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        try:
            self.sock.connect(cfg.upstream)
        except OSError:
            self.sock.close()
            raise
        self.last_heard = time.monotonic()
        proxy.loop.add_reader(self.sock.fileno(), self.readable)

    def readable(self) -> None:
        for _ in range(64):
            try:
                data = self.sock.recv(BUFSIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP: the upstream's port is closed
                self.proxy.engine.counters.add("errors")
                return
            self.last_heard = time.monotonic()
            self.proxy.to_sender(self, data)

    def send(self, data: bytes) -> None:
        try:
            self.sock.send(data)
        except OSError:
            self.proxy.engine.counters.add("errors")

    def close(self) -> None:
        self.proxy.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class DatagramProxy:
    """The listening datagram socket, its senders' sessions and the two
    directions' shapers."""

    def __init__(self, engine: ProxyTwin, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.loop = loop
        self.sock = engine.sock
        self.sessions: OrderedDict[Any, Session] = OrderedDict()
        limit = engine.cfg.max_unsent
        self.shapers = {UP: UdpShaper(limit), DOWN: UdpShaper(limit)}
        self.timers: dict[str, asyncio.TimerHandle | None] = {UP: None, DOWN: None}
        self.sweeper: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self.readable)
        idle = self.engine.cfg.idle_timeout
        if idle:
            self.sweeper = self.loop.call_later(min(idle, 1.0), self.sweep)

    def stop(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        for timer in (*self.timers.values(), self.sweeper):
            if timer is not None:
                timer.cancel()
        while self.sessions:
            self.forget(next(iter(self.sessions)), "stop")

    def readable(self) -> None:
        for _ in range(64):
            try:
                data, peer = self.sock.recvfrom(BUFSIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.engine.counters.add("errors")
                return
            self.engine.traffic.datagrams += 1
            self.engine.traffic.bytes_in += len(data)
            session = self.session_for(peer)
            if session is not None:
                session.last_heard = time.monotonic()
                session.info.bytes_in += len(data)
                self.forward(UP, data, session)

    def session_for(self, peer: Any) -> Session | None:
        session = self.sessions.get(peer)
        if session is not None:
            self.sessions.move_to_end(peer)
            return session
        counters = self.engine.counters
        if not peer or len(self.sessions) >= self.engine.cfg.max_conns:
            counters.add("errors")  # no address to answer, or too many senders
            return None
        info = self.engine.conn_info(peer)
        try:
            session = Session(self, peer, info)
        except OSError:
            counters.add("errors")
            return None
        counters.add("accepted")
        counters.add("active")
        self.sessions[peer] = session
        self.engine.event("open", info)
        return session

    def to_sender(self, session: Session, data: bytes) -> None:
        self.forward(DOWN, data, session)

    def forward(self, direction: str, data: bytes, session: Session) -> None:
        faults = self.engine.faults_up if direction == UP else self.engine.faults
        if faults is None:
            self.send(direction, data, session)
        elif self.shapers[direction].push(faults, data, session, time.monotonic()):
            self.send_due(direction)
        else:
            self.engine.counters.add("errors")

    def send(self, direction: str, data: bytes, session: Session) -> None:
        if direction == UP:
            session.send(data)
            return
        if session.peer not in self.sessions:
            return  # forgotten meanwhile
        try:
            self.sock.sendto(data, session.peer)
        except OSError:
            self.engine.counters.add("errors")
            return
        self.engine.traffic.bytes_out += len(data)
        session.info.bytes_out += len(data)

    def send_due(self, direction: str) -> None:
        timer = self.timers[direction]
        if timer is not None:
            timer.cancel()
            self.timers[direction] = None
        shaper = self.shapers[direction]
        while (taken := shaper.pop(time.monotonic())) is not None:
            self.send(direction, taken[0], cast(Session, taken[1]))
        due = shaper.due()
        if due is not None:
            self.timers[direction] = self.loop.call_later(max(0.0, due - time.monotonic()),
                                                          self.send_due, direction)

    def sweep(self) -> None:
        """Forget the sessions silent (both ways) for idle_timeout."""
        idle = self.engine.cfg.idle_timeout or 0.0
        now = time.monotonic()
        for peer, session in list(self.sessions.items()):
            if now - session.last_heard >= idle:
                self.engine.counters.add("idle_closed")
                self.forget(peer, "idle")
        self.sweeper = self.loop.call_later(min(idle, 1.0), self.sweep)

    def forget(self, peer: Any, why: str) -> None:
        session = self.sessions.pop(peer)
        session.close()
        self.engine.counters.add("active", -1)
        self.engine.event("close", session.info, why)


class ProxyTwin(AsyncioEngine):
    """The proxy engine of backend "python": an AsyncioEngine whose
    connections are pairs, and whose datagrams go on to the upstream."""

    def __init__(self, cfg: ProxyConfig, on_event: OnEvent = None) -> None:
        super().__init__(cfg, on_event)
        self.cfg: ProxyConfig = cfg
        self.faults_up: Faults | None = None

    def set_faults_up(self, faults: Faults | None) -> None:
        self.faults_up = faults

    def stream_protocol(self) -> Callable[[Any, ConnInfo], asyncio.BaseProtocol]:
        return ClientSide

    async def _serve_udp(self, loop: asyncio.AbstractEventLoop, woken: asyncio.Future[None]) -> None:
        proxy = DatagramProxy(self, loop)
        proxy.start()
        try:
            await woken
        finally:
            proxy.stop()

