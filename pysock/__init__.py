"""pysock: uppercase echo servers over TCP and UDP whose hot path is a small C
library bound with cffi, with Python for configuration, lifecycle and clients.

Names are imported on first use, so ``import pysock`` (and the pytest plugin)
stays light until a server or an address is asked for; type checkers and
editors see the real names through the TYPE_CHECKING block."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pysock.client import Connection, request
    from pysock.config import ServerConfig
    from pysock.engines.base import Stats
    from pysock.errors import ConfigError, PysockError, ReplyError, ResolveError, ServerError
    from pysock.faults import Faults
    from pysock.lessons.addr import HostEntry, resolve, sockaddr_in, sockaddr_in6
    from pysock.proxy.proxy import Proxy
    from pysock.server import Server

__version__ = "0.1.0"

_EXPORTS = {
    "HostEntry": "pysock.lessons.addr",
    "resolve": "pysock.lessons.addr",
    "sockaddr_in": "pysock.lessons.addr",
    "sockaddr_in6": "pysock.lessons.addr",
    "Connection": "pysock.client",
    "request": "pysock.client",
    "ServerConfig": "pysock.config",
    "ConfigError": "pysock.errors",
    "PysockError": "pysock.errors",
    "ReplyError": "pysock.errors",
    "ResolveError": "pysock.errors",
    "ServerError": "pysock.errors",
    "Faults": "pysock.faults",
    "Server": "pysock.server",
    "Proxy": "pysock.proxy.proxy",
    "Stats": "pysock.engines.base",
}

__all__ = [
    "ConfigError", "Connection", "Faults", "HostEntry", "Proxy", "PysockError", "ReplyError", "ResolveError", "Server",
    "ServerConfig", "ServerError", "Stats", "request", "resolve", "sockaddr_in", "sockaddr_in6",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pysock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
