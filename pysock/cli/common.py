"""What every command shares: exit codes, one-line usage errors, the
argument types, and -b ADDR."""
from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from pysock.config import DEFAULT_HOST
from pysock.urls import Address, parse_url

if TYPE_CHECKING:  # what add_subparsers() returns, each command's add_parser() takes
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction

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


def seconds(text: str) -> float:
    """A client's timeout: a finite number of seconds over 0 (0 would make
    every socket call non-blocking, which is no timeout at all)."""
    return positive_float(text, "a number of seconds", 1_000_000,
                          "a timeout is a number of seconds over 0, at most 1000000")


def positive_float(text: str, expected: str, most: float, bounds: str) -> float:
    """A finite number over 0 and at most most; otherwise "expected ..."
    (not a number) or "<bounds>, not ..." (out of range)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, not {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= most):
        raise argparse.ArgumentTypeError(f"{bounds}, not {text}")
    return value


def host_arg(text: str) -> str:
    """-b ADDR: an address as pysock prints it, brackets and all ([::1])."""
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def add_bind_option(p: argparse.ArgumentParser) -> None:
    """-b ADDR, which every listening command takes."""
    p.add_argument("-b", "--bind", type=host_arg, default=DEFAULT_HOST, metavar="ADDR",
                   help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 for every interface)")


def url_arg(text: str) -> tuple[str, Address]:
    """(scheme, address) from a URL as pysock serve prints it; a usage error
    saying what is wrong otherwise."""
    try:
        return parse_url(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def host_port(host: str, port: str) -> tuple[str, int]:
    """(host, port) from HOST PORT as typed ([::1] as printed, too)."""
    try:
        return host_arg(host), port_number(port)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None


def peer_address(words: list[str], proto: str, usage: str, host_optional: bool = False) -> tuple[str, int]:
    """(host, port) from what a user typed: HOST PORT ([HOST] PORT with
    host_optional), or one URL as pysock serve prints it (proto://HOST:PORT,
    brackets and all)."""
    if len(words) == 1 and "://" in words[0]:
        scheme, address = url_arg(words[0])
        if scheme != proto or isinstance(address, str):
            raise UsageError(f"{words[0]} is not a {proto}:// address")
        return address
    if not (len(words) == 2 or (host_optional and len(words) == 1)):
        raise UsageError(usage)
    return host_port(words[0] if len(words) == 2 else DEFAULT_HOST, words[-1])
