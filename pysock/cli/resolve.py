"""pysock resolve: a struct hostent filled in C, beside Python's resolvers."""
from __future__ import annotations

import argparse

from pysock.cli.common import Subparsers


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("resolve", help="resolve a name into a struct hostent in C, beside Python's answers",
                       description="Fill a struct hostent with gethostbyname_r in C and print every field, "
                                   "then what socket.gethostbyname_ex and socket.getaddrinfo say, and "
                                   "whether they agree.")
    p.add_argument("name", help="host name (or IPv4 address) to resolve")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pysock.lessons import resolve

    print(resolve.report(args.name, as_json=args.json))
    return 0
