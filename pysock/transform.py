"""The transforms in Python: the reference the tests hold the C code to, and
what the pure-Python servers run.  A transform is made per connection (or
per datagram) because some keep state between reads."""
from __future__ import annotations


class Upper:
    """ASCII uppercase on bytes: exactly bytes.upper()."""

    def feed(self, data: bytes) -> bytes:
        return data.upper()

    def finish(self) -> bytes:
        """What is still owed when the client half-closes."""
        return b""


class Echo:
    """The bytes unchanged."""

    def feed(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


TRANSFORMS = {"upper": Upper, "echo": Echo}


def make(name: str):
    """A fresh transform for one connection or one datagram."""
    return TRANSFORMS[name]()


def apply(name: str, data: bytes) -> bytes:
    """The whole reply to data sent at once and then half-closed."""
    t = make(name)
    return t.feed(data) + t.finish()
