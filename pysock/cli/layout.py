"""pysock layout: the socket structs as the compiler laid them out."""
from __future__ import annotations

import argparse

from pysock.cli.common import port_number

# The filled example's address (pysock.layout has the same; importing it
# here would load the C extension just to print --help).
EXAMPLE_HOST = "127.0.0.1"
EXAMPLE_PORT = 12000


def add_parser(sub) -> None:
    p = sub.add_parser("layout", help="show sockaddr_in, in_addr, hostent, sockaddr_in6 as C laid them out",
                       description="Every member's offset, size and alignment, every padding hole, as "
                                   "the C compiler laid the structs out; the same structs as ctypes and "
                                   "struct formats beside them; then a sockaddr_in for HOST:PORT, filled "
                                   "in C, byte by byte.")
    p.add_argument("host", nargs="?", default=EXAMPLE_HOST,
                   help=f"address (or name) for the filled example (default {EXAMPLE_HOST})")
    p.add_argument("port", nargs="?", type=port_number, default=EXAMPLE_PORT,
                   help=f"port for the filled example (default {EXAMPLE_PORT})")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pysock import layout

    print(layout.report(args.host, args.port, as_json=args.json))
    return 0
