"""How the command line ends on a signal: Ctrl-C (SIGINT) as
KeyboardInterrupt, SIGTERM and SIGHUP as SystemExit(0), raised in the main
thread, once.  A second signal while the command is ending is noted and
ignored, so that the first one's cleanup (stopping servers, removing their
socket files) runs to the end, and the exit after it; and a command may hold signals back while it
makes something it must be able to undo (deferred()), then take the first
one as soon as it is done."""
from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import Callable

ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Ending:
    """The signal handlers of one command's run (install() in the main thread)."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal, once one came
        self._held = 0
        self._ending = False

    def install(self) -> None:
        for signum in ENDING_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None or self._ending:
            return  # ending already: this one would cut its cleanup short
        self.signum = signum
        if not self._held:
            self._raise()

    def _raise(self) -> None:
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(0)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Signals wait until the block is done (then the first is raised)."""
        self._held += 1
        try:
            yield
        finally:
            self._held -= 1
        if self.signum is not None and not self._held:
            self._raise()

    @contextmanager
    def ending(self) -> Iterator[None]:
        """The command's last cleanup: signals from now on are ignored, this
        cleanup's and the interpreter's exit after it alike (which would
        otherwise put the default actions back and be killed by a late one)."""
        self._ending = True
        for signum in ENDING_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        yield


# The run in progress: main() installs a fresh one; commands use it through
# deferred() and ending() below.
_current = Ending()


def install() -> Callable[[], None]:
    """A fresh Ending for this run, its handlers installed (main thread);
    what puts the handlers before it back."""
    global _current
    before = {signum: signal.getsignal(signum) for signum in ENDING_SIGNALS}
    _current = Ending()
    _current.install()

    def restore() -> None:
        for signum, handler in before.items():
            signal.signal(signum, handler)

    return restore


def deferred() -> AbstractContextManager[None]:
    return _current.deferred()


def ending() -> AbstractContextManager[None]:
    return _current.ending()
