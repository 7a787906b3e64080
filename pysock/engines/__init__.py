"""The engines: what serves a Server's socket.

- base.py: the engine protocol every engine follows, Stats, ConnEvent and
  the constants the C library and the twins share;
- c.py: the C library's server (the one module that drives it);
- twins/: the pure-Python twins (loop, threads, asyncio, uvloop);
- lifecycle.py: how a Server or a Proxy drives its engine: bind at
  construction, serve, stop from any thread in bounded time.

make_engine picks one from a validated configuration, importing only it:
the python backend never loads the compiled extension."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pysock.engines.base import Engine, OnEvent

if TYPE_CHECKING:
    from pysock.config import ServerConfig

__all__ = ["make_engine"]


def make_engine(cfg: ServerConfig, on_event: OnEvent = None) -> Engine:
    """The engine cfg asks for, bound (and listening) at once."""
    if cfg.backend == "python":
        from pysock.engines import twins

        return twins.make_engine(cfg, on_event)
    from pysock.engines.c import CEngine

    return CEngine(cfg, on_event)
