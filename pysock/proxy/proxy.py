"""pysock.Proxy: faults in front of any real server.  Each client
connection (or UDP sender) gets its own connection to the upstream; bytes
go both ways, shaped by faults (what clients receive) and faults_up (what
the upstream receives).  The lifecycle is a Server's (pysock.engines.lifecycle)."""
from __future__ import annotations

import inspect
from typing import Callable

from pysock.config import DEFAULT_HOST, check_known
from pysock.engines.base import OnEvent, ProxyEngine
from pysock.engines.lifecycle import Lifecycle
from pysock.errors import ConfigError
from pysock.faults import Faults
from pysock.proxy.config import ProxyConfig, parse_upstream
from pysock.urls import Address

__all__ = ["Proxy", "make_engine"]


def make_engine(cfg: ProxyConfig, on_event: OnEvent = None) -> ProxyEngine:
    """The proxy engine cfg asks for, bound (and listening) at once."""
    if cfg.backend == "python":
        from pysock.proxy.twin import ProxyTwin

        return ProxyTwin(cfg, on_event)
    from pysock.engines.c import CEngine

    return CEngine(cfg, on_event)


class Proxy(Lifecycle):
    """A proxy to upstream, bound when constructed.

    >>> with Proxy("tcp://127.0.0.1:5432", faults=Faults(latency=0.1)) as px:
    ...     connect_my_client(px.address)   # 100 ms on every reply

    It serves once, as a Server does: start() or serve_forever(), then
    stop(); a context manager starts and stops it."""

    def __init__(self, upstream: str | tuple[str, int], *, host: str = DEFAULT_HOST, port: int = 0,
                 proto: str | None = None,
                 path: str | None = None,
                 backend: str = ProxyConfig.backend,
                 model: str | None = None,
                 max_conns: int = ProxyConfig.max_conns,
                 idle_timeout: float | None = ProxyConfig.idle_timeout,
                 send_timeout: float | None = ProxyConfig.send_timeout,
                 max_unsent: int = ProxyConfig.max_unsent,
                 backlog: int = ProxyConfig.backlog,
                 ipv6_only: bool | None = ProxyConfig.ipv6_only,
                 log: Callable[[str], None] | None = None,
                 faults: Faults | None = None,
                 faults_up: Faults | None = None,
                 **unknown: object) -> None:
        """Check the options, bind (and listen), ready to serve.

        - upstream: where to forward: "tcp://HOST:PORT", "udp://HOST:PORT",
          "unix:///PATH" (as ``pysock serve`` prints it) or (host, port) for
          TCP.  A host name is resolved once, here.
        - host, port: where to listen (port 0: a free one; ``address`` has it).
        - proto: "tcp" or "udp"; None: the upstream's kind (a unix upstream
          is a stream: "tcp").  A stream proxy may listen on one family and
          forward to another (TCP to unix and back).
        - path: listen on this AF_UNIX path instead of host and port.
        - backend: "c" (the compiled epoll proxy; streams) or "python" (the
          asyncio twin; streams and datagrams).
        - max_conns: client connections (UDP: senders) at most; the next is
          closed at once (UDP: its datagrams are dropped, counted in errors).
        - idle_timeout: close a connection (forget a sender) silent this long.
        - send_timeout: cut off a pair whose bytes one side leaves unread this long.
        - max_unsent: stop reading from a side while this much is held for
          the other, per direction.
        - log: called with a line for each connection opened and closed.
        - faults: a pysock.Faults for what clients receive; faults_up for
          what the upstream receives.  set_faults() changes both while serving.

        Raises ConfigError for a bad option, ResolveError for an upstream
        host that does not resolve, OSError for a port or path in use.  The
        upstream need not be up yet: each connection connects anew."""
        check_known(unknown, _OPTIONS)
        upstream_proto, upstream_address = parse_upstream(upstream)
        if proto is None:
            proto = "udp" if upstream_proto == "udp" else "tcp"
        self.config: ProxyConfig = ProxyConfig(
            host=host, port=port, proto=proto, path=path, backend=backend, model=model, max_conns=max_conns,
            idle_timeout=idle_timeout, send_timeout=send_timeout, max_unsent=max_unsent, backlog=backlog,
            ipv6_only=ipv6_only, upstream_proto=upstream_proto, upstream=upstream_address).validated()
        self._faults = self._checked_faults(faults)
        self._faults_up = self._checked_up(faults_up)
        config = self.config
        self._open(lambda lines: make_engine(config, lines), log)

    def _configure(self) -> None:
        super()._configure()
        if self._faults_up is not None:
            self._proxy_engine().set_faults_up(self._faults_up)

    def _proxy_engine(self) -> ProxyEngine:
        engine = self._engine
        assert isinstance(engine, ProxyEngine)
        return engine

    # -- what it is ----------------------------------------------------------
    @property
    def upstream(self) -> Address:
        """Where it forwards: (numeric host, port), or a unix path."""
        return self.config.upstream

    @property
    def upstream_url(self) -> str:
        return self.config.upstream_url()

    @property
    def faults_up(self) -> Faults | None:
        """The faults on what the upstream receives (seed drawn), or None."""
        return self._faults_up

    def set_faults(self, faults: Faults | None, faults_up: Faults | None = None) -> None:
        """From any thread, while serving or before: faults for what clients
        receive and for what the upstream receives, from now on; None turns
        a direction's off.  A seed of None draws a fresh one."""
        down = self._checked_faults(faults)
        up = self._checked_up(faults_up)
        with self._lock:
            self._check_open()
            self._engine.set_faults(down)
            self._proxy_engine().set_faults_up(up)
            self._faults, self._faults_up = down, up

    def _checked_up(self, faults: Faults | None) -> Faults | None:
        proto = "udp" if self.config.upstream_proto == "udp" else "tcp"
        family = "unix" if self.config.upstream_proto == "unix" else "inet"
        try:
            return self._checked_faults(faults, proto, family)
        except ConfigError as exc:
            raise ConfigError(f"faults_up: {exc}") from None

    def __repr__(self) -> str:
        return (f"<pysock.Proxy {self.url} -> {self.upstream_url} backend={self.config.backend} "
                f"model={self.config.model}>")


# Every keyword Proxy takes, for the error that lists them.
_OPTIONS = tuple(name for name in inspect.signature(Proxy.__init__).parameters
                 if name not in ("self", "unknown", "upstream"))
