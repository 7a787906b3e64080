"""Every engine the contract (docs/contract.md) holds for, in one list.

An engine is a backend, a model and the options that change how it serves
(workers, spinning).  Every test that takes the ``tcp_options`` or
``udp_options`` fixture (conftest.py), or one of the servers made from them,
runs once per engine here: that is the conformance suite.  A model added
later is one line in this list, and the whole contract is checked against it.

A *variant* is a model with workers or spinning on top.  Each worker runs
the model's own loop on its own socket, and spinning changes only how that
loop waits for its next event: what happens to a connection, a datagram or a
reply is the model's code.  A test whose subject is only that (marked
``same_code_as_model``, with the reason) runs on the variants in the full
tier alone; everything about starting, stopping, waiting and counting runs
on every engine in the default tier.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EngineCase:
    name: str            # the test id: c-epoll, python-asyncio, ...
    backend: str
    model: str
    extra: dict = field(default_factory=dict)  # workers, spin_us
    needs: str | None = None                # a C build feature (c_features())

    def options(self) -> dict:
        """The Server keyword arguments that make this engine."""
        return {"backend": self.backend, "model": self.model, **self.extra}

    @property
    def variant(self) -> bool:
        """Workers or spinning on top of a model (see above)."""
        return bool(self.extra)


WORKERS = {"workers": 2}
SPIN = {"spin_us": 50}

ENGINES = {
    "tcp": [
        EngineCase("c-threads", "c", "threads"),
        EngineCase("c-epoll", "c", "epoll", needs="epoll"),
        EngineCase("c-epoll-workers", "c", "epoll", WORKERS, needs="reuseport"),
        EngineCase("c-epoll-spin", "c", "epoll", SPIN, needs="epoll"),
        EngineCase("c-uring", "c", "uring", needs="uring"),
        EngineCase("c-uring-workers", "c", "uring", WORKERS, needs="uring"),
        EngineCase("c-uring-spin", "c", "uring", SPIN, needs="uring"),
        EngineCase("python-loop", "python", "loop"),
        EngineCase("python-threads", "python", "threads"),
        EngineCase("python-asyncio", "python", "asyncio"),
        EngineCase("python-uvloop", "python", "uvloop"),
    ],
    "udp": [
        EngineCase("c-loop", "c", "loop"),
        EngineCase("c-loop-workers", "c", "loop", WORKERS, needs="reuseport"),
        EngineCase("c-loop-spin", "c", "loop", SPIN),
        EngineCase("c-uring", "c", "uring", needs="uring"),
        EngineCase("c-uring-workers", "c", "uring", WORKERS, needs="uring"),
        EngineCase("python-loop", "python", "loop"),
        EngineCase("python-asyncio", "python", "asyncio"),
        EngineCase("python-uvloop", "python", "uvloop"),
    ],
}

# The server whose replies every engine's are compared with: the C backend
# as it comes (its default model).
REFERENCE = {"backend": "c"}


def is_variant(options: dict) -> bool:
    """Whether Server options (an engine's) make a variant."""
    return "workers" in options or "spin_us" in options
