"""pysock layout: the socket structs as the compiler laid them out."""
from __future__ import annotations

import argparse
import ipaddress

from pysock.cli.common import Subparsers, UsageError, port_number

# The filled example's address (pysock.lessons.layout has the same; importing it
# here would load the C extension just to print --help).
EXAMPLE_HOST = "127.0.0.1"
EXAMPLE_PORT = 12000


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("layout", help="show the socket structs (sockaddr_in ... msghdr, epoll_event, "
                                      "io_uring_sqe) as C laid them out",
                       description="Every member's offset, size and alignment, every padding hole, as "
                                   "the C compiler laid the structs out; the same structs as ctypes and "
                                   "struct formats beside them; then a sockaddr_in for --host and --port, "
                                   "filled in C, byte by byte. NAME picks structs (msghdr or "
                                   "'struct msghdr'); the example then shows only if --host or --port is given.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="structs to show (default: all): sockaddr_in, in_addr, hostent, sockaddr_in6, "
                        "iovec, msghdr, mmsghdr, sockaddr_storage, sockaddr_un, addrinfo, epoll_event, "
                        "io_uring_sqe, io_uring_cqe")
    p.add_argument("--host", default=None,
                   help=f"address (or name) for the filled example (default {EXAMPLE_HOST})")
    p.add_argument("--port", type=port_number, default=None,
                   help=f"port for the filled example (default {EXAMPLE_PORT})")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def _is_host(text: str) -> bool:
    """An address or a host name with a dot (no struct has one), or localhost."""
    return _is_address(text) or "." in text or text == "localhost"


def old_form(names: list[str]) -> tuple[str, int] | None:
    """`pysock layout HOST [PORT]`, the form before struct names, kept
    working: a host (see _is_host), or anything followed by a port number."""
    if len(names) == 2 and names[1].isdigit():
        return names[0], port_number(names[1])
    if len(names) == 1 and _is_host(names[0]):
        return names[0], EXAMPLE_PORT
    return None


def run(args: argparse.Namespace) -> int:
    from pysock.lessons import layout

    host = args.host or EXAMPLE_HOST
    port = args.port if args.port is not None else EXAMPLE_PORT
    names = list(args.names)
    try:
        layout.find_structs(names)
    except ValueError as exc:
        old = old_form(names) if args.host is None and args.port is None else None
        if old is None:
            raise UsageError(f"{exc} (the filled example's address is --host HOST --port PORT)") from None
        (host, port), names = old, []
    example = not names or args.host is not None or args.port is not None
    print(layout.report(host, port, as_json=args.json, names=names, example=example))
    return 0
