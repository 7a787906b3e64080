"""The transforms in Python: the reference the tests hold the C code to, and
what the pure-Python servers run.  A transform is made per connection (or
per datagram) because some keep state between reads.

Over a stream, a server calls ``feed(data)`` for each read and sends what it
returns, then ``finish()`` at the client's EOF.  For a datagram it sends
``datagram(data)``: the whole datagram is one message."""
from __future__ import annotations

import time
from typing import Callable, Protocol

from pysock.engines.base import BUFSIZE, UDP_MAX

LINE_MAX = 65536  # stamp: a longer line is answered in pieces of this size
STAMP_MAX = 32    # the most bytes a stamp adds to a line (C's PS__STAMP_MAX)


class Transform(Protocol):
    """What every transform does (Upper, Echo, Stamp)."""

    def read_max(self, room: int) -> int:
        """The most bytes the next read may take so that its reply fits in room."""

    def feed(self, data: bytes) -> bytes:
        """The reply to one read of a stream."""

    def finish(self) -> bytes:
        """What is still owed when the client half-closes."""

    def datagram(self, data: bytes) -> bytes:
        """The reply to one datagram."""


class Upper:
    """ASCII uppercase on bytes: exactly bytes.upper()."""

    def read_max(self, room: int) -> int:
        """The most bytes the next read may take so that its reply fits in
        room: a reply the size of its input needs no more than the read."""
        return BUFSIZE

    def feed(self, data: bytes) -> bytes:
        return data.upper()

    def finish(self) -> bytes:
        """What is still owed when the client half-closes."""
        return b""

    def datagram(self, data: bytes) -> bytes:
        return data.upper()


class Echo:
    """The bytes unchanged."""

    def read_max(self, room: int) -> int:
        return BUFSIZE

    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""

    def datagram(self, data: bytes) -> bytes:
        return data


def stamp_prefix(now: float | None = None) -> bytes:
    """b"at <ctime()> :", ctime as C's ctime_r gives it, without its newline."""
    return b"at " + time.ctime(now).encode() + b" :"


class Stamp:
    """The tutorials' timestamp server: each line (ending in \\n, which the
    reply keeps) comes back as ``at <ctime()> :<line>``.  The unfinished line
    waits for the next feed(), or for finish(), which answers it without a
    \\n.  A line longer than LINE_MAX bytes (its \\n included) is answered in
    pieces of LINE_MAX bytes, so what waits stays bounded."""

    def __init__(self) -> None:
        self.line = bytearray()

    def read_max(self, room: int) -> int:
        """A read of n bytes answers at most n lines, the waiting one with
        the first: len(line) + n * (1 + STAMP_MAX) bytes.  At least 1."""
        n = (room - len(self.line)) // (1 + STAMP_MAX)
        return min(max(n, 1), BUFSIZE)

    def feed(self, data: bytes) -> bytes:
        prefix = stamp_prefix()  # one time for every line of one read, as in C
        out = bytearray()
        view = memoryview(data)
        while view:
            room = LINE_MAX - len(self.line)
            piece = bytes(view[:room])
            end = piece.find(b"\n")
            if end >= 0:
                piece = piece[: end + 1]
            self.line += piece
            view = view[len(piece):]
            if end >= 0 or len(self.line) == LINE_MAX:
                out += prefix + self.line
                self.line.clear()
        return bytes(out)

    def finish(self) -> bytes:
        if not self.line:
            return b""
        out = stamp_prefix() + self.line
        self.line.clear()
        return bytes(out)

    def datagram(self, data: bytes) -> bytes:
        """One reply for the whole datagram, cut to UDP_MAX bytes so it can
        be sent."""
        return (stamp_prefix() + data)[:UDP_MAX]


TRANSFORMS: dict[str, Callable[[], Transform]] = {"upper": Upper, "echo": Echo, "stamp": Stamp}


def make(name: str) -> Transform:
    """A fresh transform for one connection or one datagram."""
    return TRANSFORMS[name]()


def apply(name: str, data: bytes) -> bytes:
    """The whole reply to data sent at once over a stream and then half-closed."""
    t = make(name)
    return t.feed(data) + t.finish()


def datagram(name: str, data: bytes) -> bytes:
    """The reply to one datagram."""
    return make(name).datagram(data)
