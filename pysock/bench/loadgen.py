"""The load generator (csrc/loadgen.c), called from Python.

It runs in C in the calling thread, with the GIL released: N TCP connections
or UDP sockets doing ping-pong, or bulk streams, every reply checked byte for
byte against what the server must send back (the uppercase of the request).
Every wait in it is bounded; a server that stops answering costs at most
``timeout`` more, and the missing replies are counted as lost.

>>> r = pingpong(("127.0.0.1", 12000), "tcp", conns=32, size=1024, duration=2.0)
>>> r.rps, r.p99_us, r.ok
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pysock._core import check, ffi, lib
from pysock.client import address_family, socktype, url
from pysock.config import millis
from pysock.errors import ConfigError
from pysock.urls import Address

UDP_HEADER = 16  # a UDP request carries its socket and sequence number
UDP_MAX = 65507
_TRANSFORMS = {"upper": "PS_XF_UPPER", "echo": "PS_XF_ECHO"}


@dataclass(frozen=True)
class LoadResult:
    """What one run measured.  Only replies that came back right count in
    requests and latency; everything else is counted by what went wrong."""

    requests: int     # replies received whole and right (bulk: streams echoed whole)
    bad: int          # replies that differ from what the server must send
    lost: int         # UDP requests resent after timeout, and requests never answered
    late: int         # UDP replies to a request already answered (after a resend)
    failed: int       # connections the server closed or reset early
    bytes_out: int
    bytes_in: int
    seconds: float    # ping-pong: the duration; bulk: until the last echo byte
    p50_us: float     # round-trip latency (ping-pong), within 1.6 %
    p99_us: float
    max_us: float

    @property
    def rps(self) -> float:
        """Requests (right replies) per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        """Echoed megabytes (10**6 bytes) received per second."""
        return self.bytes_in / self.seconds / 1e6 if self.seconds else 0.0

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


def _run(load: Any, what: str) -> LoadResult:
    out = ffi.new("ps_load_result *")
    check(lib.ps_load_run(load, out), what)  # a cffi call: the GIL is released
    return LoadResult(
        requests=out.requests, bad=out.bad, lost=out.lost, late=out.late, failed=out.failed,
        bytes_out=out.bytes_out, bytes_in=out.bytes_in, seconds=out.elapsed_ns / 1e9,
        p50_us=out.p50_ns / 1e3, p99_us=out.p99_ns / 1e3, max_us=out.max_ns / 1e3,
    )


def _new_load(address: Address, proto: str, conns: int, timeout: float, transform: str) -> Any:
    _check("conns", conns, 1, 65535)
    _check("timeout", timeout, 0.001, 3600)
    if transform not in _TRANSFORMS:
        raise ConfigError(f"unknown transform {transform!r}: choose one of {', '.join(_TRANSFORMS)}")
    load = ffi.new("ps_load *")
    _target(load, address)
    load.socktype = socktype(proto)
    load.conns = conns
    load.timeout_ms = millis(timeout)
    load.transform = getattr(lib, _TRANSFORMS[transform])
    return load


def pingpong(address: Address, proto: str = "tcp", *, conns: int = 1, size: int = 64,
             duration: float = 1.0, timeout: float = 1.0, transform: str = "upper",
             spin: bool = False) -> LoadResult:
    """conns connections (TCP) or sockets (UDP), each sending a size-byte
    request and waiting for its reply, for duration seconds.  UDP requests
    unanswered after timeout are resent (and counted lost); at the end,
    replies in flight get timeout seconds more before they count as lost.
    spin: busy-poll for replies (a core kept busy) instead of sleeping, so
    that latency is the server's alone, not also the client's wake-up."""
    load = _new_load(address, proto, conns, timeout, transform)
    low = UDP_HEADER if proto == "udp" else 1
    _check("size", size, low, UDP_MAX if proto == "udp" else 1 << 30)
    _check("duration", duration, 0.001, 24 * 3600)
    load.mode = lib.PS_LOAD_PINGPONG
    load.size = size
    load.duration_ms = millis(duration)
    load.spin = int(bool(spin))
    return _run(load, f"load on {url(address, proto)}")


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
