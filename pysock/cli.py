"""The command line: ``pysock serve``, ``pysock send`` and friends.

Every failure becomes one line on stderr and an exit code: 1 for a runtime
error, 2 for a usage error, 130 after Ctrl-C; never a traceback."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Callable, Optional, Sequence

from pysock.config import BACKENDS, DEFAULT_HOST, DEFAULT_PORT, MODELS
from pysock.errors import PysockError

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
    p.add_argument("--backend", default="c", choices=BACKENDS,
                   help="c (default) or python: the pure-Python twins, same behaviour")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="how the server waits for clients; " + "; ".join(
                       f"{b} {proto}: {', '.join(MODELS[(b, proto)])}" for b in BACKENDS for proto in ("tcp", "udp"))
                   + " (default: the first)")


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
    return {"transform": args.transform, "backend": args.backend, "model": args.model}


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


# -- bench ----------------------------------------------------------------
def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure the C backend against the pure-Python twins",
                       description="Run each server in its own process under the same loads from the C "
                                   "load generator; print medians, each as a ratio to the C backend. "
                                   "Progress goes to stderr. Exit 1 if a run got a bad reply.")
    p.add_argument("--quick", action="store_true", help="short runs, one each (under 30 s): a smoke test")
    p.add_argument("--servers", metavar="LIST", help="comma-separated servers (default: all; see --list)")
    p.add_argument("--loads", metavar="LIST", help="comma-separated loads (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the servers and loads, and exit")
    p.add_argument("--reps", type=int, default=None, help="measured runs per server and load (default 5)")
    p.add_argument("--duration", type=float, default=None, help="seconds per ping-pong run (default 1)")
    p.add_argument("--stream-mib", type=int, default=None, metavar="MIB",
                   help="MiB per stream run (default 256)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON instead of the table")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the comparison (needs matplotlib)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from pysock import bench

    if args.list:
        for s in bench.SERVERS:
            print(f"server {s.name:<16} {s.backend} backend; tcp: {s.tcp or '-'}, udp: {s.udp or '-'}"
                  + (f"; {s.missing()}" if s.missing() else ""))
        for load in bench.LOADS:
            print(f"load   {load.name:<16} {load.describe(bench.FULL)}")
        return 0
    for name in ("reps", "duration", "stream_mib"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, not {value}")
    try:
        bench.select_named(bench.SERVERS, args.servers, "server")
        bench.select_named(bench.LOADS, args.loads, "load")
    except PysockError as exc:
        raise UsageError(str(exc)) from None
    return bench.main(args)


# -- main -----------------------------------------------------------------
COMMANDS: list[Callable] = [_add_serve, _add_send, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pysock", description="Echo servers with a C hot path, and lessons on the socket structs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def _sigterm(signum, frame) -> None:
    raise SystemExit(0)


def main(argv: Optional[Sequence[str]] = None) -> int:
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
    except UsageError as exc:
        print(f"pysock: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PysockError, OSError) as exc:
        print(f"pysock: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
