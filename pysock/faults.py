"""Faults on demand: what a server does wrong when a test asks it to.

Faults is the settings (a frozen dataclass); TcpShaper and UdpShaper are
the schedule every Python twin follows.  The C library (csrc/fault.c)
follows the same schedule with the same generator, so a seed gives the same
faults on every engine.  docs/contract.md says what each field does.

The random draws: each connection (TCP) and each sender (UDP) has its own
splitmix64 generator started from the seed, so a connection's or a sender's
k-th reply meets the same fate in every run, whatever else is going on.  A
TCP reply draws once (jitter); a UDP reply draws four times, always, in
this order: drop, duplicate, reorder, jitter.  Two more generators per
connection (sender) start from the seed with a salt: toxicity's one draw,
which also takes the connection's (sender's) number, and corrupt's."""
from __future__ import annotations

import dataclasses
import heapq
import math
import os
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pysock.errors import ConfigError

__all__ = ["NO_FAULTS", "REORDER_HOLD", "SENDERS", "Faults", "TcpShaper", "UdpShaper", "parse_fault", "with_seed"]

# The senders a UDP server remembers (bandwidth, reorder, the generator);
# the least recently heard is forgotten first.  csrc/fault.c: PS__SENDERS.
SENDERS = 64
# A reply held back for reorder goes out after its sender's next reply, or
# this many seconds after it was due if none comes.  PS__REORDER_HOLD_US.
REORDER_HOLD = 0.2
# Under a bandwidth limit a reply goes out in pieces of this many seconds'
# worth of bytes (at least one byte), so its pace is even.
PACE = 0.02
# What one waiting reply costs beyond its bytes, counted against
# max_unsent: the Python objects that hold it (a list, a float, the bytes
# object's header; CPython 3.11, x86-64: 160 bytes, rounded up).  C counts
# its buffers' capacities instead (csrc/fault.c).
RECORD_COST = 192
# The same for a waiting datagram, on every engine (csrc/fault.c:
# PS__DGRAM_RECORD), so that the same datagrams fit everywhere: more than a
# twin's entry, reply header, heap entry and sender address take (CPython
# 3.11, x86-64: 340 bytes), and than C's record and heap slot (184).
DGRAM_COST = 384

_DURATIONS = ("latency", "jitter", "slice_delay", "close_delay", "close_after_time", "reset_after_time")
_SIZES = ("bandwidth", "slice", "limit_data", "reset_after")
_CHANCES = ("drop", "duplicate", "reorder", "corrupt", "toxicity")
TCP_ONLY = ("slice", "slice_delay", "limit_data", "reset_after", "close_delay", "close_after_time",
            "reset_after_time")
UDP_ONLY = ("drop", "duplicate", "reorder")
# Salts that start a connection's (or sender's) other generators from the
# seed: the draw that decides whether toxicity spares it, and the bit flips.
TOXIC_SALT = 0x5851F42D4C957F2D
CORRUPT_SALT = 0x2545F4914F6CDD1D
# The most bytes a corrupt gap skips (C keeps it in a uint64_t).
_MAX_GAP = 1 << 62

_MAX_SECONDS = 3600.0
_MAX_SIZE = 1 << 62
# Faster than any loopback: past it, bandwidth only overflows (C multiplies it).
MAX_BANDWIDTH = 1 << 40


def not_for(proto: str) -> tuple[str, ...]:
    """The fields that cannot apply to a proto server ("tcp" or "udp")."""
    return TCP_ONLY if proto == "udp" else UDP_ONLY


@dataclass(frozen=True)
class Faults:
    """How a server misbehaves.  Every field is off by default.

    - latency, jitter: each reply is held latency +- a uniform jitter seconds
      (TCP keeps the order of bytes: a reply never overtakes an earlier one).
    - bandwidth: replies go out no faster than this many bytes per second, per
      connection (TCP) or per sender (UDP).
    - slice, slice_delay: TCP replies go out in sends of at most slice bytes,
      slice_delay seconds apart.
    - limit_data: a TCP connection is closed (FIN) once this many reply bytes
      have been sent; reset_after: reset (RST) instead.
    - stall: data is received and never answered.
    - close_delay: when a TCP client closes, wait this long before closing.
    - close_after_time, reset_after_time: a TCP connection is closed (FIN),
      or reset (RST), this many seconds after it opened.
    - drop, duplicate, reorder: each UDP reply is dropped, sent twice, or held
      back until after its sender's next reply, with this probability.
    - corrupt: each byte has one bit flipped with this probability.
    - toxicity: the share of connections (TCP) or senders (UDP) the other
      faults hit; the others pass untouched (1: every one).
    - seed: the random choices (jitter, drop, duplicate, reorder, corrupt,
      toxicity) follow it; None draws one, which Server.faults then reports."""

    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: int | None = None
    slice: int | None = None
    slice_delay: float = 0.0
    limit_data: int | None = None
    reset_after: int | None = None
    stall: bool = False
    close_delay: float = 0.0
    close_after_time: float = 0.0
    reset_after_time: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    toxicity: float = 1.0
    seed: int | None = None

    def __new__(cls, *args: object, **kwargs: object) -> Faults:
        """An unknown field is a ConfigError naming the fields, as for Server."""
        unknown = sorted(set(kwargs) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown fault{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
                              f"the fields are {', '.join(f.name for f in dataclasses.fields(cls))}")
        return super().__new__(cls)

    def __post_init__(self) -> None:
        for name in _DURATIONS:
            _check_seconds(name, getattr(self, name))
        for name in _SIZES:
            _check_size(name, getattr(self, name))
        for name in _CHANCES:
            _check_chance(name, getattr(self, name))
        if not isinstance(self.stall, bool):
            raise ConfigError(f"stall must be True or False, not {self.stall!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed < 1 << 64):
            raise ConfigError(f"seed must be a whole number from 0 to 2**64-1, not {self.seed!r}")
        if self.slice_delay and self.slice is None:
            raise ConfigError("slice_delay needs slice: the size of the sends it separates")

    def set_fields(self) -> list[str]:
        """The faults that are on (the seed is not a fault)."""
        return [f.name for f in dataclasses.fields(self)
                if f.name != "seed" and getattr(self, f.name) != f.default]

    def any_fault(self) -> bool:
        """Whether it does anything: toxicity alone hits with nothing."""
        return any(name != "toxicity" for name in self.set_fields())

    def end_after(self) -> tuple[float, str] | None:
        """(seconds, FIN or RST): when a connection ends after a time, if it does."""
        ends = [(t, how) for t, how in ((self.reset_after_time, RST), (self.close_after_time, FIN)) if t]
        return min(ends, key=lambda end: end[0]) if ends else None  # a tie: the reset

    def describe(self) -> str:
        """"latency=0.1, drop=0.5, seed=7": what `pysock serve` reports."""
        shown = [f"{name}={getattr(self, name)}" for name in self.set_fields()]
        return ", ".join(shown + ([f"seed={self.seed}"] if self.seed is not None else []))

    def only_for(self, proto: str) -> Faults:
        """A copy without the fields that do not apply to proto."""
        return dataclasses.replace(self, **{name: getattr(NO_FAULTS, name) for name in not_for(proto)})

    def check_for(self, proto: str, family: str) -> None:
        """ConfigError if a field cannot apply to this server."""
        bad = [name for name in self.set_fields() if name in not_for(proto)]
        if bad:
            other = "TCP" if proto == "udp" else "UDP"
            raise ConfigError(f"fault{'s' if len(bad) > 1 else ''} {', '.join(bad)} apply to {other} only; "
                              f"this server is {proto}")
        for name in ("reset_after", "reset_after_time"):
            if getattr(self, name) != getattr(NO_FAULTS, name) and family == "unix":
                raise ConfigError(f"{name} needs TCP over IP: a unix socket has no reset "
                                  f"(use {'limit_data' if name == 'reset_after' else 'close_after_time'})")


def _check_seconds(name: str, value: object) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not 0 <= value <= _MAX_SECONDS):
        raise ConfigError(f"fault {name} must be a number of seconds from 0 to {_MAX_SECONDS:.0f}, not {value!r}")


def _check_size(name: str, value: object) -> None:
    if value is None:
        return
    most = MAX_BANDWIDTH if name == "bandwidth" else _MAX_SIZE
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ConfigError(f"fault {name} must be a whole number of bytes from 1 to {most} (or None: off), "
                          f"not {value!r}")


def _check_chance(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"fault {name} must be a probability from 0 to 1, not {value!r}")


NO_FAULTS = Faults()


def with_seed(faults: Faults | None) -> Faults | None:
    """faults with a seed drawn if it has none (None stays None)."""
    if faults is None or faults.seed is not None:
        return faults
    return dataclasses.replace(faults, seed=int.from_bytes(os.urandom(8), "little") >> 1)


def parse_fault(text: str) -> tuple[str, object]:
    """("latency", 0.1) from "latency=0.1": one --fault option.  Values are
    in the field's units; ConfigError says what is wrong."""
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = {f.name: f for f in dataclasses.fields(Faults)}
    if not sep or name not in fields:
        raise ConfigError(f"--fault takes NAME=VALUE, NAME one of {', '.join(fields)}; not {text!r}")
    value = value.strip()
    try:
        if name == "stall":
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            return name, value.lower() in ("1", "true", "yes", "on")
        if name in _SIZES or name == "seed":
            return name, int(value, 0)
        return name, float(value)
    except ValueError:
        raise ConfigError(f"--fault {name}: {value!r} is not a {_kind(name)}") from None


def _kind(name: str) -> str:
    if name == "stall":
        return "yes or no"
    if name in _SIZES:
        return "whole number of bytes"
    if name == "seed":
        return "whole number"
    if name in _CHANCES:
        return "probability"
    return "number of seconds"


def from_pairs(pairs: Iterable[str]) -> Faults | None:
    """Faults from --fault NAME=VALUE options; None if there are none."""
    values: dict[str, object] = dict(parse_fault(p) for p in pairs)
    return Faults(**values) if values else None  # type: ignore[arg-type]


# -- the generator -------------------------------------------------------------
_MASK = (1 << 64) - 1


class Rng:
    """splitmix64, as csrc/fault.c has it: uniform() is in [0, 1)."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & _MASK

    def uniform(self) -> float:
        self.state = (self.state + 0x9E3779B97F4A7C15) & _MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z ^= z >> 31
        return (z >> 11) * (1.0 / (1 << 53))


def _delay(f: Faults, u: float) -> float:
    """latency +- jitter for the draw u, never below zero."""
    return max(0.0, f.latency + (2.0 * u - 1.0) * f.jitter)


def spared(f: Faults, seed: int, number: int) -> bool:
    """Whether toxicity spares connection (or sender) number: one draw of
    its own generator, started from the seed and the number."""
    return f.toxicity < 1.0 and Rng((seed ^ TOXIC_SALT) + number).uniform() >= f.toxicity


class Corrupter:
    """corrupt's bit flips along one byte stream: the gap to the next
    corrupted byte is drawn (geometric, so a flip costs one draw however
    long the stream), then which of its bits flips."""

    __slots__ = ("gap", "rng")

    def __init__(self, seed: int) -> None:
        self.rng = Rng(seed ^ CORRUPT_SALT)
        self.gap: int | None = None  # bytes before the next flip; None: not drawn yet

    def apply(self, chance: float, data: bytes) -> bytes:
        """data with this stretch's flips (data itself if none)."""
        if not chance or not data:
            return data
        out: bytearray | None = None
        pos = 0
        while True:
            if self.gap is None:
                self.gap = _gap(self.rng.uniform(), chance)
            if pos + self.gap >= len(data):
                self.gap -= len(data) - pos
                return bytes(out) if out is not None else data
            pos += self.gap
            out = out if out is not None else bytearray(data)
            out[pos] ^= 1 << int(self.rng.uniform() * 8)
            pos += 1
            self.gap = None


def _gap(u: float, chance: float) -> int:
    """The geometric draw: how many bytes pass before the next flip."""
    if chance >= 1.0:
        return 0
    return int(min(float(_MAX_GAP), math.floor(math.log1p(-u) / math.log1p(-chance))))


# -- TCP -------------------------------------------------------------------------
FIN = "fin"
RST = "rst"


class TcpShaper:
    """One connection's replies on their way out under faults.

    push() takes a reply (stall: drops it; limit_data, reset_after: keeps
    only what the limit allows); ready() says what may go out now, or when
    next; took() records that it went.  A reply is due latency +- jitter
    after it was made, never before the one before it; then slice and
    bandwidth pace the sends."""

    def __init__(self, f: Faults, number: int, now: float) -> None:
        """For connection number (from 1), made at now under f: toxicity's
        draw, and a timed end (close_after_time, reset_after_time) counted
        from now."""
        seed = f.seed or 0
        self.rng = Rng(seed)
        self.spared = spared(f, seed, number)  # toxicity: its faults are none
        self.corrupter = Corrupter(seed)
        self.end_at: float | None = None       # close_after_time, reset_after_time: then
        self.end_how: str | None = None
        end = self.applies(f).end_after()
        if end is not None:
            self.end_at, self.end_how = now + end[0], end[1]
        self.queue: deque[list[Any]] = deque()   # [due, bytes, sent]: replies in order
        self.queued = 0                      # bytes not yet released
        self.held = 0                        # bytes the queue's replies take in memory, sent fronts included
        self.released = 0
        self.kept = 0                        # bytes taken in: released + queued
        self.last_due = 0.0
        self.next_send = 0.0                 # pacing: nothing goes before this

    def applies(self, f: Faults) -> Faults:
        """The faults this connection meets: f, or none if toxicity spares it."""
        return NO_FAULTS if self.spared else f

    def busy(self) -> bool:
        """It holds a reply, or a timed end.  (close_delay is the engine's own timer.)"""
        return bool(self.queue) or self.end_at is not None

    def cost(self) -> int:
        """The memory it holds, as counted against max_unsent: every waiting
        reply whole (a sent front is freed with the reply) and its record."""
        return self.held + RECORD_COST * len(self.queue)

    def push(self, f: Faults, data: bytes, now: float) -> None:
        f = self.applies(f)
        if f.stall or not data:
            return
        due = max(now + _delay(f, self.rng.uniform()), self.last_due)
        limit = _limit(f)
        if limit is not None:
            data = data[:max(0, limit - self.kept)]
            if not data:
                return
        data = self.corrupter.apply(f.corrupt, data)
        self.last_due = due
        self.kept += len(data)
        self.queued += len(data)
        self.held += len(data)
        if self.queue and self.queue[-1][0] == due and not self.queue[-1][2]:
            self.queue[-1][1] += data
        else:
            self.queue.append([due, bytes(data), 0])

    def due(self) -> float | None:
        """When the next piece may go (or the timed end comes); None if neither."""
        piece = max(self.queue[0][0], self.next_send) if self.queue else None
        if self.end_at is None:
            return piece
        return self.end_at if piece is None else min(piece, self.end_at)

    def ready(self, f: Faults, now: float) -> bytes:
        """The bytes that may go now (b"" if none)."""
        f = self.applies(f)
        if not self.queue or now < max(self.queue[0][0], self.next_send):
            return b""
        piece: bytes = self.queue[0][1]
        sent: int = self.queue[0][2]
        n = len(piece) - sent
        if f.slice is not None:
            n = min(n, f.slice)
        if f.bandwidth is not None:
            n = min(n, max(1, int(f.bandwidth * PACE)))
        return piece[sent:sent + n]

    def took(self, f: Faults, n: int, now: float) -> None:
        """n bytes of ready() went out at now."""
        f = self.applies(f)
        head = self.queue[0]
        head[2] += n
        if head[2] == len(head[1]):
            self.queue.popleft()
            self.held -= len(head[1])
        self.queued -= n
        self.released += n
        wait = f.slice_delay if f.slice is not None else 0.0
        if f.bandwidth is not None:
            wait = max(wait, n / f.bandwidth)
        self.next_send = now + wait

    def end(self, f: Faults, now: float) -> str | None:
        """FIN or RST once the limit's last byte has gone, or the timed end
        has come (once: then the shaper holds it no more); None otherwise."""
        if self.end_at is not None and now >= self.end_at:
            self.end_at = None
            return self.end_how
        f = self.applies(f)
        for size, how in ((f.reset_after, RST), (f.limit_data, FIN)):
            if size is not None and self.released >= size and self.queued == 0:
                return how
        return None


def _limit(f: Faults) -> int | None:
    sizes = [s for s in (f.limit_data, f.reset_after) if s is not None]
    return min(sizes) if sizes else None


# -- UDP -------------------------------------------------------------------------
class _Entry:
    """A reply waiting for its time; moved replies leave a dead entry
    behind in the heap (gone), which pop() skips."""

    __slots__ = ("due", "gone", "order", "peer", "reply")

    def __init__(self, due: float, reply: bytes, peer: object) -> None:
        self.due, self.reply, self.peer = due, reply, peer
        self.order = 0
        self.gone = False


class _Sender:
    __slots__ = ("corrupter", "held", "next_free", "rng", "spared")

    def __init__(self, f: Faults, number: int) -> None:
        seed = f.seed or 0
        self.rng = Rng(seed)
        self.spared = spared(f, seed, number)
        self.corrupter = Corrupter(seed)
        self.next_free = 0.0
        self.held: _Entry | None = None   # the reply held back for reorder


class UdpShaper:
    """One datagram socket's replies under faults: each is dropped, delayed,
    duplicated or held back, per sender.  Delayed replies wait in a heap by
    due time (then in order of scheduling), so a reply costs O(log n)
    however many wait; what they hold (each reply and its record,
    DGRAM_COST) stays within max_unsent: a reply beyond that is dropped
    (push says so, and the engine counts it in errors)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.senders: OrderedDict[object, _Sender] = OrderedDict()
        self.heap: list[tuple[float, int, _Entry]] = []
        self.order = 0
        self.pending = 0                    # replies waiting (not counting dead heap entries)
        self.heard = 0                      # senders numbered so far (toxicity's draw)
        self.held = 0                       # what they cost, against limit

    def _sender(self, peer: object, f: Faults) -> _Sender:
        s = self.senders.get(peer)
        if s is None:
            if len(self.senders) >= SENDERS:
                self.senders.popitem(last=False)
            self.heard += 1
            s = self.senders[peer] = _Sender(f, self.heard)
        else:
            self.senders.move_to_end(peer)
        return s

    def push(self, f: Faults, reply: bytes, peer: object, now: float) -> bool:
        """Schedule reply for peer; False if it was dropped for lack of room.
        reorder: the reply is held back, and goes right after its sender's
        next one, which is never held itself (so 1.0 swaps every pair), or
        REORDER_HOLD after its own time if none comes."""
        s = self._sender(peer, f)
        u_drop, u_dup, u_reorder, u_jitter = (s.rng.uniform() for _ in range(4))
        if s.spared:
            f = NO_FAULTS
        if f.stall or u_drop < f.drop:
            return True
        due = now + _delay(f, u_jitter)
        copies = 2 if u_dup < f.duplicate else 1
        if self.held + copies * (len(reply) + DGRAM_COST) > self.limit:
            return False
        reply = s.corrupter.apply(f.corrupt, reply)  # a duplicate is a copy, flips included
        first: _Entry | None = None
        for _ in range(copies):
            if f.bandwidth is not None:
                due = max(due, s.next_free)
                s.next_free = due + len(reply) / f.bandwidth
            entry = self._schedule(_Entry(due, reply, peer))
            self.pending += 1
            self.held += len(reply) + DGRAM_COST
            first = first or entry
        if s.held is not None:             # the reply held back goes after this one
            self._move(s.held, due)
            s.held = None
        elif u_reorder < f.reorder and first is not None:
            s.held = self._move(first, first.due + REORDER_HOLD)
        return True

    def _schedule(self, entry: _Entry) -> _Entry:
        self.order += 1
        entry.order = self.order
        heapq.heappush(self.heap, (entry.due, entry.order, entry))
        return entry

    def _move(self, entry: _Entry, due: float) -> _Entry | None:
        """Reschedule entry (if it has not gone on its own yet) to go at due,
        after everything scheduled so far for then; the entry it now is."""
        if entry.gone:
            return None
        entry.gone = True  # its heap place is left behind, dead
        return self._schedule(_Entry(due, entry.reply, entry.peer))

    def due(self) -> float | None:
        self._drop_dead()
        return self.heap[0][0] if self.heap else None

    def pop(self, now: float) -> tuple[bytes, object] | None:
        """The next reply due by now, with its peer; None if none is."""
        self._drop_dead()
        if not self.heap or self.heap[0][0] > now:
            return None
        entry = heapq.heappop(self.heap)[2]
        entry.gone = True
        self.pending -= 1
        self.held -= len(entry.reply) + DGRAM_COST
        return entry.reply, entry.peer

    def _drop_dead(self) -> None:
        while self.heap and self.heap[0][2].gone:
            heapq.heappop(self.heap)
