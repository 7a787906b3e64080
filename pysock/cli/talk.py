"""pysock talk: two-way talk over TCP."""
from __future__ import annotations

import argparse

from pysock.cli.common import Subparsers, UsageError, add_bind_option, peer_address, port_number, seconds
from pysock.config import DEFAULT_PORT


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("talk", help="two-way talk over TCP: --listen on one side, HOST PORT on the other",
                       usage="pysock talk [-h] (--listen [PORT] [-b ADDR] | HOST PORT | URL)",
                       description="Send each line of stdin to the peer and print the peer's, at once, "
                                   "until either side ends (EOF, the line q, Ctrl-C).")
    p.add_argument("--listen", nargs="?", type=port_number, const=DEFAULT_PORT, metavar="PORT",
                   help=f"wait for one peer on PORT (default {DEFAULT_PORT}; 0 picks a free one) "
                        "and print the ready line tcp://HOST:PORT")
    add_bind_option(p)
    p.add_argument("-t", "--timeout", type=seconds, default=5.0, help="seconds to wait to connect (default 5)")
    p.add_argument("peer", nargs="*", metavar="HOST PORT | URL", help="the listening side to connect to")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pysock.apps import talk

    if args.listen is not None:
        if args.peer:
            raise UsageError("talk --listen takes no HOST PORT (see 'pysock talk --help')")
        talk.serve_one(args.bind, args.listen)
        return 0
    host, port = peer_address(args.peer, "tcp", "talk needs HOST PORT, a tcp:// URL, or --listen [PORT] "
                                                "(see 'pysock talk --help')")
    talk.call(host, port, args.timeout)
    return 0
