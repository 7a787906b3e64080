"""What an engine is, and what every engine shares.

An engine is the thing that serves: the C library (pysock.engines.c) or
one of the pure-Python twins (pysock.engines.twins).  pysock.server.Server drives any of
them through the same five members and never asks which one it has.  This
module imports nothing of pysock's C side, so the twins (and the CLI's
python backend) run without the compiled extension."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol, runtime_checkable

from pysock.urls import Address

if TYPE_CHECKING:
    from pysock.faults import Faults

# Shared by the C library (csrc/pysock.h, csrc/internal.h) and the twins.
BUFSIZE = 65536          # the most one read takes (PS_BUFSIZE)
UDP_MAX = 65507          # the largest UDP payload over IPv4 (PS_UDP_MAX)
STOP_GRACE = 0.1         # seconds a stopping server keeps sending an echo it started
ACCEPT_BACKOFF = 0.05    # seconds out of descriptors before accepting again

@dataclass(frozen=True)
class Stats:
    """A snapshot of a server's counters (docs/contract.md says what each counts)."""

    accepted: int = 0      # connections accepted (TCP)
    active: int = 0        # connections open now (TCP)
    rejected: int = 0      # closed at once: over max_conns
    idle_closed: int = 0   # closed after idle_timeout
    slow_closed: int = 0   # cut off: echo left unread past send_timeout
    datagrams: int = 0     # datagrams received (UDP)
    bytes_in: int = 0
    bytes_out: int = 0
    errors: int = 0        # failures that did not end the server


STATS_FIELDS = tuple(Stats.__dataclass_fields__)

@dataclass(frozen=True)
class ConnEvent:
    """A connection's open, close or rejection, for a server's log."""

    kind: str              # "open", "close", "rejected"
    conn: int              # the connection's number on this server, from 1
    peer: str = ""         # "127.0.0.1:50112", "[::1]:50112"; "" over AF_UNIX
    why: str = ""          # close: eof, idle, slow, error, stop, fault, upstream
    bytes_in: int = 0      # close: what the client sent, and what it was sent
    bytes_out: int = 0

    def describe(self) -> str:
        who = f"#{self.conn}" + (f" from {self.peer}" if self.peer else "")
        if self.kind == "open":
            return f"{who} open"
        if self.kind == "rejected":
            return f"{who} rejected: max_conns are open"
        return f"{who} closed ({self.why}): {self.bytes_in} bytes in, {self.bytes_out} out"


OnEvent = Optional[Callable[[ConnEvent], None]]


class Engine(Protocol):
    """A bound socket that can serve.  Constructed from a validated
    ServerConfig; binds (and listens) at once."""

    address: Address

    def serve(self) -> None:
        """Serve in the calling thread until wake(); close every connection
        (within STOP_GRACE) before returning.  Raises if the loop fails."""

    def wake(self) -> None:
        """From any thread: end serve() soon, refuse new clients at once."""

    def stats(self) -> Stats:
        """The counters now."""

    def set_faults(self, faults: Faults | None) -> None:
        """From any thread: the faults for data received from now on."""

    def close(self, log_timeout: float | None = None) -> None:
        """Release the sockets (not while serve() runs in another thread),
        then end the log: waiting events get log_timeout seconds (None: as
        long as they take), the rest are dropped.  More than once is fine."""

    def disown(self) -> Stats:
        """After fork(), in the child: let go, the parent's sockets untouched,
        taking no lock (the child runs one thread: a lock another thread
        held at fork() stays held there); the counters as they were."""


@runtime_checkable
class ProxyEngine(Engine, Protocol):
    """A proxy's engine: an engine with a second direction of faults."""

    def set_faults_up(self, faults: Faults | None) -> None:
        """From any thread: the faults for what the upstream receives."""
