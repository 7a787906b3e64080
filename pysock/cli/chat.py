"""pysock chat serve|join: the tutorials' UDP chat room."""
from __future__ import annotations

import argparse

from pysock.cli.common import Parser, Subparsers, UsageError, add_bind_option, count, peer_address, port_number, seconds
from pysock.config import DEFAULT_PORT


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("chat", help="the UDP chat room: serve it, or join it",
                       description="The tutorials' UDP chat room.")
    room = p.add_subparsers(dest="chat_command", metavar="serve|join", parser_class=Parser)
    room.required = True
    s = room.add_parser("serve", help="run the room; prints its ready line udp://HOST:PORT",
                        description="Relay every member's lines to the others until Ctrl-C.")
    s.add_argument("port", nargs="?", type=port_number, default=DEFAULT_PORT,
                   help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    add_bind_option(s)
    s.add_argument("--max-members", type=count, default=chat_defaults()[0], metavar="N",
                   help=f"members at most; a newcomer over it is told the room is full (default {chat_defaults()[0]})")
    s.add_argument("--member-timeout", type=float, default=chat_defaults()[1], metavar="S",
                   help=f"drop a member silent this long (default {chat_defaults()[1]:g})")
    s.set_defaults(func=run_serve)
    j = room.add_parser("join", usage="pysock chat join [-h] [-t TIMEOUT] NAME ([HOST] PORT | URL)",
                        help="enter the room as NAME: type lines, read the others'",
                        description="Send each line of stdin to the room and print what the others say, "
                                    "until EOF or the line q.")
    j.add_argument("-t", "--timeout", type=seconds, default=5.0,
                   help="seconds to wait for the room's welcome (default 5)")
    j.add_argument("name", metavar="NAME")
    j.add_argument("where", nargs="+", metavar="[HOST] PORT | URL")
    j.set_defaults(func=run_join)


def chat_defaults() -> tuple[int, float]:
    from pysock.apps.chat import MAX_MEMBERS, MEMBER_TIMEOUT

    return MAX_MEMBERS, MEMBER_TIMEOUT


def run_serve(args: argparse.Namespace) -> int:
    from pysock.apps.chat import ChatServer
    from pysock.apps.interactive import say

    room = ChatServer(args.bind, args.port, log=say, max_members=args.max_members,
                      member_timeout=args.member_timeout)
    try:
        say(room.url)
        room.serve_forever()
    finally:
        room.close()
    return 0


def run_join(args: argparse.Namespace) -> int:
    from pysock.apps import chat

    address = peer_address(args.where, "udp", "chat join takes NAME [HOST] PORT or NAME URL "
                                              "(see 'pysock chat join --help')", host_optional=True)
    try:
        name = chat.check_name(args.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    chat.join(name, address, args.timeout)
    return 0
