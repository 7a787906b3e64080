"""What every command shares: exit codes, one-line usage errors, the
argument types, and -b ADDR."""
from __future__ import annotations

import argparse

from pysock.config import DEFAULT_HOST

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and goes through main()."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, not {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


def count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {n}")
    return n


def add_bind_option(p: argparse.ArgumentParser) -> None:
    """-b ADDR, which every listening command takes."""
    p.add_argument("-b", "--bind", default=DEFAULT_HOST, metavar="ADDR",
                   help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 for every interface)")
