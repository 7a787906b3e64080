"""pysock's exceptions.  Failures of the operating system stay OSError (with
the errno's own subclass); these cover what is pysock's to say."""
from __future__ import annotations


class PysockError(Exception):
    """Base of pysock's own errors."""


class ConfigError(PysockError, ValueError):
    """A server or client was asked for something it cannot be."""


class ResolveError(PysockError, OSError):
    """A host name did not resolve."""


class ReplyError(PysockError, OSError):
    """A peer did not answer as an echo server must (no reply, a short one,
    or one that did not end in time).  ``partial`` holds what did arrive."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class ServerError(PysockError, RuntimeError):
    """A server stopped serving on its own: its loop failed.  The failure
    itself is the exception's __cause__."""


class ReflectionWarning(RuntimeWarning):
    """A UDP service (echo, chat) reachable from other machines: it answers
    any sender, spoofed ones too, so it can reflect traffic at others."""
