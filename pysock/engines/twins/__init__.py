"""The pure-Python twins of the C servers: the same job, counters, limits and
stop behaviour behind the engine interface pysock.server.Server drives
(address, serve(), wake(), stats(), close()), written the ways a Python
programmer would write them:

- "loop": the tutorials' loop, one connection at a time (blocking.py);
- "threads": a thread per connection, like socketserver.ThreadingTCPServer;
- "asyncio" and "uvloop": asyncio protocols, on asyncio's own event loop or
  on uvloop's (aio.py).

Nothing here calls into the C library."""
from __future__ import annotations

from pysock.config import ServerConfig
from pysock.engines.base import OnEvent
from pysock.engines.twins.common import TwinEngine

__all__ = ["TwinEngine", "make_engine"]


def make_engine(cfg: ServerConfig, on_event: OnEvent = None) -> TwinEngine:
    """The twin for a validated configuration (backend "python"); on_event
    hears of each connection's open, close and rejection."""
    if cfg.model in ("asyncio", "uvloop"):
        from pysock.engines.twins import aio

        return aio.AsyncioEngine(cfg, on_event)
    from pysock.engines.twins import blocking

    if cfg.proto == "udp":
        return blocking.LoopUDP(cfg, on_event)
    if cfg.model == "loop":
        return blocking.LoopTCP(cfg, on_event)
    return blocking.ThreadsTCP(cfg, on_event)
