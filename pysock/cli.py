"""The command line: ``pysock serve``, ``pysock send`` and friends.

Every failure becomes one line on stderr and an exit code: 1 for a runtime
error, 2 for a usage error, 130 after Ctrl-C; never a traceback."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from typing import Callable, Optional, Sequence

from pysock.config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig
from pysock.errors import ConfigError, PysockError

EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
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


# -- serve ----------------------------------------------------------------
def add_server_options(p: argparse.ArgumentParser) -> None:
    """Options every listening command shares."""
    p.add_argument("-b", "--bind", default=DEFAULT_HOST, metavar="ADDR",
                   help=f"address to bind (default {DEFAULT_HOST}; 0.0.0.0 for every interface)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-conns", type=int, default=ServerConfig.max_conns, metavar="N",
                        help=f"open connections at most; the next is closed at once (default {ServerConfig.max_conns})")
    limits.add_argument("--idle-timeout", type=float, default=ServerConfig.idle_timeout, metavar="S",
                        help=f"close a connection silent this long, 0: never (default {ServerConfig.idle_timeout:g})")
    limits.add_argument("--send-timeout", type=float, default=ServerConfig.send_timeout, metavar="S",
                        help=f"cut off a client that leaves its echo unread this long (default {ServerConfig.send_timeout:g})")
    limits.add_argument("--max-unsent", type=int, default=ServerConfig.max_unsent, metavar="BYTES",
                        help=f"cut off a client with more unread echo than this (default {ServerConfig.max_unsent})")


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="run the uppercase echo server (TCP and UDP)",
                       description="Serve until Ctrl-C. Prints one ready line per socket: tcp://HOST:PORT, udp://HOST:PORT.")
    p.add_argument("port", nargs="?", type=port_number, default=DEFAULT_PORT,
                   help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    add_server_options(p)
    p.add_argument("--tcp", action="store_true", help="serve TCP (default: TCP and UDP)")
    p.add_argument("--udp", action="store_true", help="serve UDP (default: TCP and UDP)")
    p.add_argument("--transform", default="upper", help="upper (default) or echo")
    p.set_defaults(func=cmd_serve)


def server_options(args: argparse.Namespace) -> dict:
    """The Server keyword arguments that the shared options set."""
    return {"transform": args.transform, "max_conns": args.max_conns, "idle_timeout": args.idle_timeout,
            "send_timeout": args.send_timeout, "max_unsent": args.max_unsent}


def cmd_serve(args: argparse.Namespace) -> int:
    from pysock.server import Server

    protos = [p for p in ("tcp", "udp") if getattr(args, p)] or ["tcp", "udp"]
    options = server_options(args)
    servers = []
    try:
        for proto in protos:
            servers.append(Server(args.bind, args.port, proto, **options))
            if args.port == 0 and len(protos) > 1:
                args.port = servers[0].port  # both protocols on the one free port
        run_until_signal(servers)
    finally:
        for srv in servers:
            srv.stop()
    return 0


def run_until_signal(servers: list) -> None:
    """Start the servers, print their ready lines, wait for Ctrl-C or SIGTERM."""
    for srv in servers:
        srv.start()
    for srv in servers:
        print(srv.url, flush=True)
    threading.Event().wait()


# -- send -----------------------------------------------------------------
def _add_send(sub) -> None:
    p = sub.add_parser("send", help="send a message to an echo server and print the reply",
                       description="With a MESSAGE, send it and print the reply. Without one, "
                                   "send each line of stdin and print each reply.")
    p.add_argument("-u", "--udp", action="store_true", help="use UDP (default TCP)")
    p.add_argument("-t", "--timeout", type=float, default=5.0, help="seconds to wait for a reply (default 5)")
    p.add_argument("host")
    p.add_argument("port", type=port_number)
    p.add_argument("message", nargs="*")
    p.set_defaults(func=cmd_send)


PROMPT = "Input lowercase sentence:"


def _print_reply(reply: bytes) -> None:
    out = sys.stdout.buffer
    out.write(reply if reply.endswith(b"\n") else reply + b"\n")
    out.flush()


def cmd_send(args: argparse.Namespace) -> int:
    from pysock import client

    proto = "udp" if args.udp else "tcp"
    address = (args.host, args.port)
    if args.message:
        _print_reply(client.request(" ".join(args.message).encode(), address, proto, args.timeout))
        return 0
    interactive = sys.stdin.isatty()
    with client.connect(address, proto, args.timeout) as sock:
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
            else:
                sock.sendall(line if line.endswith(b"\n") else line + b"\n")
                _print_reply(lines.readline())


# -- layout, resolve (pysock/layout.py, pysock/resolve_cmd.py) ----------------
def _add_layout(sub) -> None:
    from pysock.layout import DEFAULT_HOST as EXAMPLE_HOST, DEFAULT_PORT as EXAMPLE_PORT

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
    p.set_defaults(func=cmd_layout)


def cmd_layout(args: argparse.Namespace) -> int:
    from pysock import layout

    print(layout.report(args.host, args.port, as_json=args.json))
    return 0


def _add_resolve(sub) -> None:
    p = sub.add_parser("resolve", help="resolve a name into a struct hostent in C, beside Python's answers",
                       description="Fill a struct hostent with gethostbyname_r in C and print every field, "
                                   "then what socket.gethostbyname_ex and socket.getaddrinfo say, and "
                                   "whether they agree.")
    p.add_argument("name", help="host name (or IPv4 address) to resolve")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_resolve)


def cmd_resolve(args: argparse.Namespace) -> int:
    from pysock import resolve_cmd

    print(resolve_cmd.report(args.name, as_json=args.json))
    return 0


# -- main -----------------------------------------------------------------
COMMANDS: list[Callable] = [_add_serve, _add_send, _add_layout, _add_resolve]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pysock", description="Echo servers with a C hot path, and lessons on the socket structs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def _sigterm(signum, frame) -> None:
    raise SystemExit(0)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"pysock: warning: {message}", file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    warnings.showwarning = _show_warning
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"pysock: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_SIGINT
    except (UsageError, ConfigError) as exc:
        print(f"pysock: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PysockError, OSError) as exc:
        print(f"pysock: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
