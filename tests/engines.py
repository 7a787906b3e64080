"""Every engine the contract (docs/contract.md) holds for, in one list.

An engine is a backend, a model and the options that change how it serves
(workers, spinning).  Every test that takes the ``tcp_options`` or
``udp_options`` fixture (conftest.py), or one of the servers made from them,
runs once per engine here: that is the conformance suite.  A model added
later is one line in this list, and the whole contract is checked against it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Engine:
    name: str            # the test id: c-epoll, python-asyncio, ...
    backend: str
    model: str
    extra: dict = field(default_factory=dict)  # workers, spin_us
    needs: Optional[str] = None                # a C build feature (c_features())

    def options(self) -> dict:
        """The Server keyword arguments that make this engine."""
        return {"backend": self.backend, "model": self.model, **self.extra}



WORKERS = {"workers": 2}
SPIN = {"spin_us": 50}

ENGINES = {
    "tcp": [
        Engine("c-threads", "c", "threads"),
        Engine("c-epoll", "c", "epoll", needs="epoll"),
        Engine("c-epoll-workers", "c", "epoll", WORKERS, needs="reuseport"),
        Engine("c-epoll-spin", "c", "epoll", SPIN, needs="epoll"),
        Engine("c-uring", "c", "uring", needs="uring"),
        Engine("c-uring-workers", "c", "uring", WORKERS, needs="uring"),
        Engine("c-uring-spin", "c", "uring", SPIN, needs="uring"),
        Engine("python-loop", "python", "loop"),
        Engine("python-threads", "python", "threads"),
        Engine("python-asyncio", "python", "asyncio"),
        Engine("python-uvloop", "python", "uvloop"),
    ],
    "udp": [
        Engine("c-loop", "c", "loop"),
        Engine("c-loop-workers", "c", "loop", WORKERS, needs="reuseport"),
        Engine("c-loop-spin", "c", "loop", SPIN),
        Engine("c-uring", "c", "uring", needs="uring"),
        Engine("c-uring-workers", "c", "uring", WORKERS, needs="uring"),
        Engine("python-loop", "python", "loop"),
        Engine("python-asyncio", "python", "asyncio"),
        Engine("python-uvloop", "python", "uvloop"),
    ],
}

# The server whose replies every engine's are compared with: the C backend
# as it comes (its default model).
REFERENCE = {"backend": "c"}
