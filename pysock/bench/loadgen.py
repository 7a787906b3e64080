"""The load generator (csrc/loadgen.c, csrc/openloop.c), called from Python.

It runs in C in the calling thread, with the GIL released: N TCP connections
or UDP sockets doing ping-pong (closed loop), requests on a fixed schedule
(open loop), or bulk streams, every reply checked byte for byte against what
the server must send back (the uppercase of the request).  Every wait in it
is bounded; a server that stops answering costs at most ``timeout`` more,
and the missing replies are counted as lost.  A run goes in steps of a
quarter second: ``progress`` (if given) sees the figures so far after each,
and Ctrl-C raises LoadInterrupted, which carries what was measured.

>>> r = pingpong(("127.0.0.1", 12000), "tcp", conns=32, size=1024, duration=2.0)
>>> r.rps, r.p99_us, r.ok
>>> r = openloop(("127.0.0.1", 12000), "tcp", rate=2000, conns=8, duration=3.0)
>>> r.achieved_rps, r.p999_us
"""
from __future__ import annotations

import errno
import resource
from dataclasses import dataclass
from typing import Any, Callable

from pysock._core import check, ffi, lib
from pysock.bench.report import LOAD_FIELDS
from pysock.client import address_family, socktype, url
from pysock.config import lift_descriptor_limit, millis
from pysock.errors import ConfigError, PysockError
from pysock.urls import Address

UDP_HEADER = 16  # a UDP request carries its socket and sequence number
UDP_MAX = 65507
MAX_CONNS = 65535
MAX_RATE = 1e8
# An IPv4 loopback run with more connections than this spreads them over
# source addresses 127.0.0.1, .2, ...: one address has about 28,000
# ephemeral ports (ip_local_port_range) for a given server.
PER_SOURCE = 20_000
STEP_MS = 250  # progress and Ctrl-C between steps of this long
FIELDS = LOAD_FIELDS  # the figures of a run as pysock load --json prints them, in order
_TRANSFORMS = {"upper": "PS_XF_UPPER", "echo": "PS_XF_ECHO"}


@dataclass(frozen=True)
class LoadResult:
    """What one run measured.  Only replies that came back right count in
    requests and latency; everything else is counted by what went wrong."""

    requests: int     # replies received whole and right by the end (bulk: streams echoed whole)
    bad: int          # replies that differ from what the server must send
    lost: int         # closed-loop UDP requests resent; requests never answered (open-loop UDP: in timeout)
    late: int         # UDP replies to a request already answered, or already counted lost
    failed: int       # connections the server closed or reset early
    bytes_out: int
    bytes_in: int
    seconds: float    # ping-pong, open loop: the duration; bulk: until the last echo byte
    p50_us: float     # latency (closed loop: from the send; open loop: from when it was due), within 1.6 %
    p99_us: float
    max_us: float
    received: int = 0     # right replies, those that came after the end too
    sent: int = 0         # requests sent whole
    due: int = 0          # open loop: requests the schedule had due by the end
    p90_us: float = 0.0
    p999_us: float = 0.0
    offered_rps: float | None = None  # open loop: the rate asked for

    @property
    def rps(self) -> float:
        """Requests (right replies) per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        """Echoed megabytes (10**6 bytes) received per second."""
        return self.bytes_in / self.seconds / 1e6 if self.seconds else 0.0

    @property
    def achieved_rps(self) -> float:
        """Right replies by the end, per second of the run (= rps)."""
        return self.rps

    def figures(self) -> dict[str, float | int | None]:
        """What pysock load --json prints (FIELDS), and each point of pysock
        bench's curves carries."""
        return {
            "offered_rps": self.offered_rps, "achieved_rps": round(self.achieved_rps, 1), "sent": self.sent,
            "received": self.received, "errors": self.bad + self.failed, "lost": self.lost,
            "p50_us": round(self.p50_us, 1), "p90_us": round(self.p90_us, 1), "p99_us": round(self.p99_us, 1),
            "p999_us": round(self.p999_us, 1), "max_us": round(self.max_us, 1),
        }

    @property
    def ok(self) -> bool:
        """No bad reply and no connection failed (lost replies are reported,
        not failures: a server that serves one client at a time loses them)."""
        return self.bad == 0 and self.failed == 0


def _text(field: str, text: str, room: int) -> bytes:
    raw = text.encode()
    if not raw or len(raw) >= room or b"\0" in raw:
        raise ConfigError(f"{field} must be 1 to {room - 1} bytes without NUL, not {text!r}")
    return raw


def _target(load: Any, address: Address) -> None:
    """The address, copied into the struct (cffi copies bytes into a char
    array and ends them with a NUL), so that nothing else needs to live."""
    load.family = address_family(address)  # the socket module's values are the C headers'
    if isinstance(address, str):
        load.path = _text("a unix path", address, ffi.sizeof(load.path))
        return
    host, port = address[0], address[1]
    load.host = _text("a host", host, ffi.sizeof(load.host))
    load.port = port


def _check(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value!r}")


SPARE_FDS = 64  # descriptors beyond the connections: the interpreter's, the run's own


def raise_descriptor_limit(conns: int) -> None:
    """Lift this process's soft descriptor limit as far as the hard one
    allows, when conns connections need more; PysockError, in one line,
    when even the hard limit is too low."""
    needed = conns + SPARE_FDS
    room = lift_descriptor_limit(needed)
    if room != resource.RLIM_INFINITY and room < needed:
        raise PysockError(f"{conns:,} connections need about {needed:,} descriptors, and this process may "
                          f"open {room:,} (RLIMIT_NOFILE's hard limit; raise it as root, e.g. ulimit -Hn "
                          f"{needed}, or use fewer connections)")


class LoadInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: ``result`` is what was measured until then."""

    def __init__(self, result: LoadResult) -> None:
        super().__init__("load interrupted")
        self.result = result


Progress = Callable[[LoadResult], None]


def _result(out: Any, offered: float | None) -> LoadResult:
    return LoadResult(
        requests=out.requests, bad=out.bad, lost=out.lost, late=out.late, failed=out.failed,
        bytes_out=out.bytes_out, bytes_in=out.bytes_in, seconds=out.elapsed_ns / 1e9,
        p50_us=out.p50_ns / 1e3, p99_us=out.p99_ns / 1e3, max_us=out.max_ns / 1e3,
        received=out.received, sent=out.sent, due=out.due, p90_us=out.p90_ns / 1e3,
        p999_us=out.p999_ns / 1e3, offered_rps=offered,
    )


def _run(load: Any, what: str, progress: Progress | None = None) -> LoadResult:
    """Start, step until done (each step a cffi call: the GIL is released),
    finish.  A signal that interrupts a step lets Python act on it (Ctrl-C:
    LoadInterrupted with the figures so far); any other goes on."""
    offered = load.rate if load.mode == lib.PS_LOAD_OPEN else None
    out = ffi.new("ps_load_result *")
    handle = ffi.new("ps_loadgen **")
    rc = lib.ps_load_start(load, out, handle)
    try:
        check(rc, what)
        while True:
            rc = lib.ps_load_step(handle[0], STEP_MS)
            if rc == 0:
                break
            if rc < 0 and rc != -errno.EINTR:
                check(rc, what)
            if progress is not None:
                progress(_result(out, offered))
    except KeyboardInterrupt:
        lib.ps_load_finish(handle[0])
        handle[0] = ffi.NULL
        raise LoadInterrupted(_result(out, offered)) from None
    finally:
        lib.ps_load_finish(handle[0])  # frees the run; nothing when it is NULL
    return _result(out, offered)


def _new_load(address: Address, proto: str, conns: int, timeout: float, transform: str,
              per_source: int = PER_SOURCE) -> Any:
    _check("conns", conns, 1, MAX_CONNS)
    _check("per_source", per_source, 1, MAX_CONNS)
    _check("timeout", timeout, 0.001, 3600)
    if transform not in _TRANSFORMS:
        raise ConfigError(f"unknown transform {transform!r}: choose one of {', '.join(_TRANSFORMS)}")
    load = ffi.new("ps_load *")
    _target(load, address)
    load.socktype = socktype(proto)
    load.conns = conns
    load.per_source = per_source
    load.timeout_ms = millis(timeout)
    load.transform = getattr(lib, _TRANSFORMS[transform])
    return load


def _sized(load: Any, proto: str, size: int, duration: float) -> None:
    low = UDP_HEADER if proto == "udp" else 1
    _check("size", size, low, UDP_MAX if proto == "udp" else 1 << 30)
    _check("duration", duration, 0.001, 24 * 3600)
    load.size = size
    load.duration_ms = millis(duration)


def pingpong(address: Address, proto: str = "tcp", *, conns: int = 1, size: int = 64,
             duration: float = 1.0, timeout: float = 1.0, transform: str = "upper",
             spin: bool = False, per_source: int = PER_SOURCE, progress: Progress | None = None) -> LoadResult:
    """conns connections (TCP) or sockets (UDP), each sending a size-byte
    request and waiting for its reply, for duration seconds.  UDP requests
    unanswered after timeout are resent (and counted lost); at the end,
    replies in flight get timeout seconds more before they count as lost.
    spin: busy-poll for replies (a core kept busy) instead of sleeping, so
    that latency is the server's alone, not also the client's wake-up."""
    load = _new_load(address, proto, conns, timeout, transform, per_source)
    _sized(load, proto, size, duration)
    load.mode = lib.PS_LOAD_PINGPONG
    load.spin = int(bool(spin))
    return _run(load, f"load on {url(address, proto)}", progress)


def openloop(address: Address, proto: str = "tcp", *, rate: float, conns: int = 1, size: int = 64,
             duration: float = 1.0, timeout: float = 1.0, transform: str = "upper",
             per_source: int = PER_SOURCE, progress: Progress | None = None) -> LoadResult:
    """Requests at rate per second (all connections together) for duration
    seconds, on a fixed schedule whatever the server does: request k is due
    at k / rate and goes on connection k % conns, several in flight on one
    connection if need be (TCP replies are read in order).  Latency runs
    from each request's due time, so a stall counts for every request due
    during it.  UDP requests unanswered within timeout are lost; after the
    end, replies in flight get timeout seconds more."""
    load = _new_load(address, proto, conns, timeout, transform, per_source)
    _sized(load, proto, size, duration)
    _check("rate", rate, 0.001, MAX_RATE)
    load.mode = lib.PS_LOAD_OPEN
    load.rate = float(rate)
    return _run(load, f"open-loop load on {url(address, proto)}", progress)


def bulk(address: Address, nbytes: int, *, conns: int = 1, timeout: float = 5.0,
         limit: float = 600.0, transform: str = "upper") -> LoadResult:
    """Each of conns TCP connections sends nbytes and reads the echo back
    while sending; then half-closes and reads to the server's EOF.  A stream
    silent for timeout seconds, or still running after limit seconds, is
    counted lost."""
    load = _new_load(address, "tcp", conns, timeout, transform)
    _check("nbytes", nbytes, 1, 1 << 50)
    _check("limit", limit, 0.001, 24 * 3600)
    load.mode = lib.PS_LOAD_BULK
    load.bulk_bytes = nbytes
    load.duration_ms = millis(limit)
    return _run(load, f"bulk load on {url(address, 'tcp')}")
