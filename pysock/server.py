"""The echo server: its options, checked into a ServerConfig; its
lifecycle (bind at construction, serve, stop from any thread in bounded
time) is pysock.engines.lifecycle's.

The serving itself is an engine's (pysock.engines.base): the C library
(pysock.engines.c) or a pure-Python twin (pysock.engines.twins), chosen once from the
configuration.  Stats and ReflectionWarning are importable from here too."""
from __future__ import annotations

import inspect
import warnings
from typing import Callable

from pysock.config import DEFAULT_HOST, ServerConfig, check_known, is_loopback
from pysock.engines import make_engine
from pysock.engines.base import Stats
from pysock.engines.lifecycle import Lifecycle
from pysock.errors import ReflectionWarning
from pysock.faults import Faults

__all__ = ["ReflectionWarning", "Server", "Stats"]


class Server(Lifecycle):
    """An echo server, bound when constructed.

    >>> with Server(port=0, proto="udp") as srv:   # serving in a thread
    ...     host, port = srv.address

    ``Server(path="/tmp/echo.sock", proto="tcp")`` (or ``family="unix"``)
    serves on an AF_UNIX socket instead: proto "tcp" is a stream socket,
    "udp" a datagram one.  The path is made absolute, and removed when the
    server stops if it is still the socket file this server bound.

    A server serves once: new -> serving (start() or serve_forever()) ->
    stopped (stop()).  A loop that fails on its own ends the server; stop()
    (or serve_forever()) then raises ServerError with the failure as cause.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, proto: str = "tcp", *,
                 path: str | None = None,
                 transform: str = ServerConfig.transform,
                 backend: str = ServerConfig.backend,
                 model: str | None = None,
                 workers: int = ServerConfig.workers,
                 spin_us: int = ServerConfig.spin_us,
                 max_conns: int = ServerConfig.max_conns,
                 idle_timeout: float | None = ServerConfig.idle_timeout,
                 send_timeout: float | None = ServerConfig.send_timeout,
                 max_unsent: int = ServerConfig.max_unsent,
                 backlog: int = ServerConfig.backlog,
                 family: str = ServerConfig.family,
                 ipv6_only: bool | None = ServerConfig.ipv6_only,
                 log: Callable[[str], None] | None = None,
                 faults: Faults | None = None,
                 **unknown: object) -> None:
        """Check the options, bind (and listen), ready to serve.

        - host, port: where to listen (port 0: a free one; ``address`` has it).
        - proto: "tcp" or "udp" (over a unix socket: stream or datagram).
        - path: serve on this AF_UNIX path instead of host and port.
        - transform: "upper" (bytes.upper()), "echo", or "stamp" (the
          tutorials' timestamp server: "at <ctime> :" before each line).
        - backend: "c" (the compiled library) or "python" (the pure-Python twins).
        - model: how it waits for clients; None: the first this build can run
          (C TCP: "epoll", "uring", "threads"; C UDP: "loop", "uring";
          Python TCP: "threads", "loop", "asyncio", "uvloop"; Python UDP:
          "loop", "asyncio", "uvloop").
        - workers: serving threads, each with its own socket on the port.
        - spin_us: busy-poll this many microseconds before sleeping.
        - max_conns: open connections at most; the next is closed at once.
        - idle_timeout: close a connection silent this many seconds (0: never).
        - send_timeout: cut off a client that leaves its echo unread this long.
        - max_unsent: stop reading from a client with this much echo unsent.
        - backlog: the listen backlog (0: the system's SOMAXCONN).
        - ipv6_only: an IPv6 server serves IPv6 alone; None (the default): yes,
          but for "::", which serves IPv4 clients too (dual stack).
        - log: called with a line for each connection opened, closed (why, and
          its bytes) or rejected (pysock serve -v), in order, from a thread
          of its own: a slow or raising log never slows the serving, and it
          may call stop().
        - faults: a pysock.Faults: how to misbehave (latency, drops, resets...);
          set_faults() changes it while serving.

        Raises ConfigError for a bad option (before any engine runs),
        ResolveError for a host that does not resolve, OSError for a port
        or path in use.  docs/contract.md says what every engine does."""
        check_known(unknown, _OPTIONS)
        self.config: ServerConfig = ServerConfig(
            host=host, port=port, proto=proto, family=family, path=path, transform=transform,
            backend=backend, model=model, workers=workers, spin_us=spin_us, backlog=backlog,
            max_conns=max_conns, idle_timeout=idle_timeout, send_timeout=send_timeout,
            max_unsent=max_unsent, ipv6_only=ipv6_only).validated()
        self._faults = self._checked_faults(faults)
        config = self.config
        self._open(lambda lines: make_engine(config, lines), log)

    def _configure(self) -> None:
        super()._configure()
        if self.config.proto == "udp" and not is_loopback(self.host):
            warnings.warn(f"UDP echo on {self.url} answers anyone who can reach it, and any spoofed "
                          "sender: it can be used to reflect traffic at others", ReflectionWarning,
                          stacklevel=4)


# Every keyword Server takes, for the error that lists them.
_OPTIONS = tuple(name for name in inspect.signature(Server.__init__).parameters if name not in ("self", "unknown"))
