"""pysock send: a message (or each line of stdin) to an echo server, the
reply printed."""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

from pysock.cli.common import Subparsers, UsageError, host_port, seconds, url_arg
from pysock.errors import ReplyError
from pysock.urls import Address, format_url


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("send", help="send a message to an echo server and print the reply",
                       usage="pysock send [-h] [-u] [-t TIMEOUT] (HOST PORT | URL | --unix PATH) [MESSAGE ...]",
                       description="With a MESSAGE, send it and print the reply. Without one, "
                                   "send each line of stdin and print each reply. URL is a ready line "
                                   "of pysock serve: tcp://HOST:PORT, udp://[::1]:PORT, unix://PATH.")
    p.add_argument("-u", "--udp", action="store_true", help="use UDP, or a datagram socket with --unix (default TCP)")
    p.add_argument("-t", "--timeout", type=seconds, default=5.0, help="seconds to wait for a reply (default 5)")
    p.add_argument("--unix", metavar="PATH", help="the server's AF_UNIX socket, instead of HOST PORT")
    p.add_argument("words", nargs="*", metavar="HOST PORT MESSAGE", help="the server, then the message")
    p.set_defaults(func=run)


PROMPT = "Input lowercase sentence:"


def send_target(args: argparse.Namespace) -> tuple[Address, list[str]]:
    """The server's address, and the message words that follow it.  A URL
    (what pysock serve prints) also sets the protocol: udp:// means -u."""
    if args.unix is not None:
        return args.unix, args.words
    if args.words and "://" in args.words[0]:
        scheme, address = url_arg(args.words[0])
        args.udp = args.udp or scheme == "udp"
        return address, args.words[1:]
    if len(args.words) < 2:
        raise UsageError("send needs HOST PORT (or --unix PATH) (see 'pysock send --help')")
    return host_port(args.words[0], args.words[1]), args.words[2:]


def _print_reply(reply: bytes) -> None:
    out = sys.stdout.buffer
    out.write(reply if reply.endswith(b"\n") else reply + b"\n")
    out.flush()


def run(args: argparse.Namespace) -> int:
    address, message = send_target(args)
    proto = "udp" if args.udp else "tcp"
    try:
        return _converse(address, proto, message, args.timeout)
    except (ReplyError, BrokenPipeError):
        raise
    except OSError as exc:  # say where: "[Errno 111] Connection refused" alone names nothing
        if exc.errno is None:
            raise
        raise OSError(exc.errno, f"{format_url(proto, address)}: {exc.strerror}") from None


def _converse(address: Address, proto: str, message: list[str], timeout: float) -> int:
    from pysock import client

    if message:
        # Arguments as the system gave them: bytes that are not UTF-8 go as they are.
        data = os.fsencode(" ".join(message))
        try:
            reply = client.request(data, address, proto, timeout)  # -t bounds it all
        except ReplyError as exc:
            if exc.partial:
                _print_reply(exc.partial)  # what came, then the line that says it did not end
            raise
        if not reply and proto == "tcp":
            raise ReplyError(f"{format_url(proto, address)} closed the connection without replying")
        _print_reply(reply)
        return 0
    interactive = sys.stdin.isatty()
    with client.connect(address, proto, timeout) as sock:
        lines = client.LineReader(sock) if proto == "tcp" else None
        while True:
            if interactive:
                print(PROMPT, end="", flush=True)
            line = sys.stdin.buffer.readline()
            if not line:
                return 0
            if lines is None:
                sock.send(line.rstrip(b"\n"))
                _print_reply(sock.recv(1 << 16))
                continue
            deadline = time.monotonic() + timeout  # -t bounds each line's exchange
            data = line if line.endswith(b"\n") else line + b"\n"
            try:  # a long line is sent while its reply is read: neither side's buffers fill up
                reply = client.send_while(sock, data, functools.partial(lines.readline, deadline))
            except ReplyError as exc:
                if exc.partial:
                    _print_reply(exc.partial)
                raise ReplyError(f"{format_url(proto, address)}: the reply to a line did not end within "
                                 f"{timeout} s") from None
            if not reply:
                raise ReplyError(f"{format_url(proto, address)} closed the connection without replying")
            _print_reply(reply)
