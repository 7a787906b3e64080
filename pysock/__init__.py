"""pysock: uppercase echo servers over TCP and UDP whose hot path is a small C
library bound with cffi, with Python for configuration, lifecycle and clients.

Names are imported on first use, so ``import pysock`` (and the pytest plugin)
stays light until a server or an address is asked for."""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "HostEntry": "pysock.addr",
    "resolve": "pysock.addr",
    "sockaddr_in": "pysock.addr",
    "sockaddr_in6": "pysock.addr",
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
    "Stats": "pysock.engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pysock' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
