"""A proxy's configuration: the listening side is a server's (host, port
or path, proto, limits), plus the upstream it forwards to, checked and
resolved before any engine runs."""
from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass

from pysock.config import ServerConfig, c_features, model_available
from pysock.errors import ConfigError, ResolveError
from pysock.urls import Address, format_url, parse_url

__all__ = ["PROXY_MODELS", "ProxyConfig", "parse_upstream"]

# The engines a proxy can run on: the C library's epoll loops (proxy.c for
# streams, dproxy.c for datagrams), and the asyncio twin.
PROXY_MODELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("c", "tcp"): ("epoll",),
    ("c", "udp"): ("epoll",),
    ("python", "tcp"): ("asyncio", "uvloop"),
    ("python", "udp"): ("asyncio", "uvloop"),
}
UPSTREAM_PROTOS = ("tcp", "udp", "unix")


def parse_upstream(upstream: object) -> tuple[str, Address]:
    """("tcp", ("db", 5432)) from "tcp://db:5432", "udp://[::1]:53",
    "unix:///run/app.sock" or a (host, port) tuple (TCP)."""
    if isinstance(upstream, tuple) and len(upstream) == 2:
        host, port = upstream
        if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
            raise ConfigError(f"upstream (host, port) takes a string and a whole number, not {upstream!r}")
        return "tcp", (host, port)
    if isinstance(upstream, os.PathLike):
        upstream = os.fspath(upstream)
    if not isinstance(upstream, str):
        raise ConfigError(f"upstream must be a URL (tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH) "
                          f"or a (host, port) tuple, not {upstream!r}")
    try:
        return parse_url(upstream)
    except ValueError as exc:
        raise ConfigError(f"upstream: {exc}") from None


@dataclass(frozen=True)
class ProxyConfig(ServerConfig):
    """A ServerConfig for the listening side, and the upstream: its proto
    ("tcp", "udp" or "unix": a unix stream socket) and address (after
    validated(): a numeric host, or an absolute path)."""

    upstream_proto: str = "tcp"
    upstream: Address = ("127.0.0.1", 0)

    def model_choices(self) -> tuple[str, ...]:
        return PROXY_MODELS[(self.backend, self.proto)]

    def default_model(self) -> str:
        choices = [m for m in self.model_choices() if model_available(m)]
        if self.backend == "c" and "epoll" not in c_features():
            raise ConfigError("the C proxy needs Linux's epoll, which this build of pysock lacks: "
                              "use backend='python'")
        return choices[0]

    def validated(self) -> ProxyConfig:
        """A checked copy: the listening side as a server's, one worker, and
        an upstream of the same kind (a stream for a stream, datagrams for
        datagrams), resolved to a numeric address."""
        if self.workers != 1:
            raise ConfigError(f"a proxy runs one worker, not {self.workers!r}")
        _check_kinds(self.proto, self.upstream_proto)
        checked = super().validated()
        assert isinstance(checked, ProxyConfig)
        return dataclasses.replace(checked, upstream=_resolved(self.upstream_proto, self.upstream))

    def upstream_url(self) -> str:
        """tcp://HOST:PORT, udp://HOST:PORT or unix://PATH."""
        return format_url(self.upstream_proto, self.upstream)


def _check_kinds(proto: str, upstream_proto: str) -> None:
    if upstream_proto not in UPSTREAM_PROTOS:
        raise ConfigError(f"unknown upstream proto {upstream_proto!r}: choose one of {', '.join(UPSTREAM_PROTOS)}")
    if (proto == "udp") != (upstream_proto == "udp"):
        kind = "datagrams" if proto == "udp" else "a stream"
        raise ConfigError(f"a {proto} proxy forwards {kind}: its upstream must be "
                          f"{'udp://' if proto == 'udp' else 'tcp:// or unix://'}, not {upstream_proto}://")


def _resolved(upstream_proto: str, address: Address) -> Address:
    """The upstream as the engines connect to it: a path made absolute, a
    host name resolved (once, here) to its first address."""
    if upstream_proto == "unix":
        if not isinstance(address, str) or not address or "\0" in address:
            raise ConfigError(f"a unix upstream needs a path, not {address!r}")
        return os.path.abspath(address)
    if isinstance(address, str):
        raise ConfigError(f"a {upstream_proto} upstream needs (host, port), not {address!r}")
    host, port = address
    if not 1 <= port <= 65535:
        raise ConfigError(f"upstream port {port} is out of range 1-65535")
    socktype = socket.SOCK_DGRAM if upstream_proto == "udp" else socket.SOCK_STREAM
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socktype)
    except (socket.gaierror, UnicodeError) as exc:
        why = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid host name"
        raise ResolveError(f"upstream {host!r} does not resolve: {why}") from None
    return str(infos[0][4][0]), port
