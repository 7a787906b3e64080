"""The command line: ``pysock serve``, ``pysock send``, ``pysock chat``,
``pysock talk`` and friends.

Every failure becomes one line on stderr and an exit code: 1 for a runtime
error, 2 for a usage error, 130 after Ctrl-C; never a traceback."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from typing import Callable, Optional, Sequence

from pysock.config import BACKENDS, DEFAULT_HOST, DEFAULT_PORT, MODELS, TRANSFORMS, ServerConfig
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


def add_server_options(p: argparse.ArgumentParser) -> None:
    """The echo server's options: where, which backend and model, limits."""
    add_bind_option(p)
    p.add_argument("--backend", default="c", choices=BACKENDS,
                   help="c (default) or python: the pure-Python twins, same behaviour")
    p.add_argument("--model", default=None, metavar="MODEL",
                   help="how the server waits for clients; " + "; ".join(
                       f"{b} {proto}: {', '.join(MODELS[(b, proto)])}" for b in BACKENDS for proto in ("tcp", "udp"))
                   + " (default: the first this build can run)")
    p.add_argument("--workers", type=count, default=1, metavar="N",
                   help="serving threads, each with its own socket on the port (default 1)")
    p.add_argument("--spin", type=count, default=0, metavar="US",
                   help="keep polling this many microseconds before sleeping (default 0): "
                        "quicker answers to clients that do not sleep either, for a busy core")
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
    p = sub.add_parser("serve", help="run the echo server (TCP and UDP, or AF_UNIX)",
                       description="Serve until Ctrl-C. Prints one ready line per socket: tcp://HOST:PORT, "
                                   "udp://HOST:PORT, unix://PATH.")
    p.add_argument("port", nargs="?", type=port_number, default=None,
                   help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    add_server_options(p)
    p.add_argument("--tcp", action="store_true", help="serve TCP (default: TCP and UDP)")
    p.add_argument("--udp", action="store_true", help="serve UDP (default: TCP and UDP)")
    p.add_argument("--transform", default="upper", choices=TRANSFORMS,
                   help="upper (default), echo, or stamp: 'at <ctime()> :' before each line or datagram")
    p.add_argument("--unix", metavar="PATH",
                   help="serve on an AF_UNIX socket instead: --tcp a stream socket at PATH, --udp a "
                        "datagram socket at PATH, neither (or both) the two, the datagram one at PATH.dgram")
    p.set_defaults(func=cmd_serve)


def server_options(args: argparse.Namespace, proto: str) -> dict:
    """The Server keyword arguments the shared options ask for.  --model
    applies to each protocol that offers it (a C UDP server has one loop)."""
    options = {"transform": args.transform, "backend": args.backend, "workers": args.workers,
               "spin_us": args.spin, "max_conns": args.max_conns, "idle_timeout": args.idle_timeout,
               "send_timeout": args.send_timeout, "max_unsent": args.max_unsent}
    if args.model in MODELS[(args.backend, proto)]:
        options["model"] = args.model
    return options


def check_model(args: argparse.Namespace, protos: list[str]) -> None:
    """--model must name a model of at least one protocol being served."""
    offered = [m for p in protos for m in MODELS[(args.backend, p)]]
    if args.model is not None and args.model not in offered:
        raise UsageError(f"unknown model {args.model!r} for {args.backend} {'/'.join(protos)}: "
                         f"choose one of {', '.join(dict.fromkeys(offered))}")


DGRAM_SUFFIX = ".dgram"  # serve --unix PATH: the datagram socket's path when both are served


def serve_targets(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """(proto, where) for each server the serve command opens."""
    protos = [p for p in ("tcp", "udp") if getattr(args, p)] or ["tcp", "udp"]
    if args.unix is None:
        port = DEFAULT_PORT if args.port is None else args.port
        return [(proto, {"host": args.bind, "port": port}) for proto in protos]
    if args.port is not None or args.bind != DEFAULT_HOST:
        raise UsageError("--unix takes a PATH, not a PORT or -b ADDR")
    if len(protos) == 1:
        return [(protos[0], {"path": args.unix})]
    return [("tcp", {"path": args.unix}), ("udp", {"path": args.unix + DGRAM_SUFFIX})]


def cmd_serve(args: argparse.Namespace) -> int:
    from pysock.server import Server

    targets = serve_targets(args)
    check_model(args, [proto for proto, _ in targets])
    servers = []
    try:
        for proto, where in targets:
            servers.append(Server(proto=proto, **where, **server_options(args, proto)))
            if where.get("port") == 0 and len(targets) > 1:
                for _, later in targets:
                    later["port"] = servers[0].port  # both protocols on the one free port
        run_until_signal(servers)
    finally:
        stop_all(servers)
    return 0


def run_until_signal(servers: list) -> None:
    """Start the servers, print their ready lines, and wait for Ctrl-C,
    SIGTERM or SIGHUP, or for a server whose loop failed (stop_all then
    reports it)."""
    ended = threading.Event()
    for srv in servers:
        srv.start()
        threading.Thread(target=lambda s=srv: s.wait() and ended.set(), daemon=True,
                         name=f"pysock watch {srv.url}").start()
    for srv in servers:
        print(srv.url, flush=True)
    ended.wait()


def stop_all(servers: list) -> None:
    """Stop every server, then raise the first failure any of them had."""
    failures = []
    for srv in servers:
        try:
            srv.stop()
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


# -- send -----------------------------------------------------------------
def _add_send(sub) -> None:
    p = sub.add_parser("send", help="send a message to an echo server and print the reply",
                       usage="pysock send [-h] [-u] [-t TIMEOUT] (HOST PORT | --unix PATH) [MESSAGE ...]",
                       description="With a MESSAGE, send it and print the reply. Without one, "
                                   "send each line of stdin and print each reply.")
    p.add_argument("-u", "--udp", action="store_true", help="use UDP, or a datagram socket with --unix (default TCP)")
    p.add_argument("-t", "--timeout", type=float, default=5.0, help="seconds to wait for a reply (default 5)")
    p.add_argument("--unix", metavar="PATH", help="the server's AF_UNIX socket, instead of HOST PORT")
    p.add_argument("words", nargs="*", metavar="HOST PORT MESSAGE", help="the server, then the message")
    p.set_defaults(func=cmd_send)


PROMPT = "Input lowercase sentence:"


def send_target(args: argparse.Namespace):
    """The server's address, and the message words that follow it."""
    if args.unix is not None:
        return args.unix, args.words
    if len(args.words) < 2:
        raise UsageError("send needs HOST PORT (or --unix PATH) (see 'pysock send --help')")
    try:
        port = port_number(args.words[1])
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None
    return (args.words[0], port), args.words[2:]


def _print_reply(reply: bytes) -> None:
    out = sys.stdout.buffer
    out.write(reply if reply.endswith(b"\n") else reply + b"\n")
    out.flush()


def cmd_send(args: argparse.Namespace) -> int:
    from pysock import client

    proto = "udp" if args.udp else "tcp"
    address, message = send_target(args)
    if message:
        _print_reply(client.request(" ".join(message).encode(), address, proto, args.timeout))
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


# -- chat -----------------------------------------------------------------
def _add_chat(sub) -> None:
    p = sub.add_parser("chat", help="the UDP chat room: serve it, or join it",
                       description="The tutorials' UDP chat room.")
    room = p.add_subparsers(dest="chat_command", metavar="serve|join", parser_class=_Parser)
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
    s.set_defaults(func=cmd_chat_serve)
    j = room.add_parser("join", usage="pysock chat join [-h] [-t TIMEOUT] NAME [HOST] PORT",
                        help="enter the room as NAME: type lines, read the others'",
                        description="Send each line of stdin to the room and print what the others say, "
                                    "until EOF or the line q.")
    j.add_argument("-t", "--timeout", type=float, default=5.0,
                   help="seconds to wait for the room's welcome (default 5)")
    j.add_argument("name", metavar="NAME")
    j.add_argument("where", nargs="+", metavar="[HOST] PORT")
    j.set_defaults(func=cmd_chat_join)


def chat_defaults() -> tuple[int, float]:
    from pysock.chat import MAX_MEMBERS, MEMBER_TIMEOUT

    return MAX_MEMBERS, MEMBER_TIMEOUT


def cmd_chat_serve(args: argparse.Namespace) -> int:
    from pysock.chat import ChatServer
    from pysock.interactive import say

    room = ChatServer(args.bind, args.port, log=say, max_members=args.max_members,
                      member_timeout=args.member_timeout)
    try:
        say(room.url)
        room.serve_forever()
    finally:
        room.close()
    return 0


def cmd_chat_join(args: argparse.Namespace) -> int:
    from pysock import chat

    if len(args.where) > 2:
        raise UsageError("chat join takes NAME [HOST] PORT (see 'pysock chat join --help')")
    host = args.where[0] if len(args.where) == 2 else DEFAULT_HOST
    try:
        port = port_number(args.where[-1])
        name = chat.check_name(args.name)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    chat.join(name, (host, port), args.timeout)
    return 0


# -- talk -----------------------------------------------------------------
def _add_talk(sub) -> None:
    p = sub.add_parser("talk", help="two-way talk over TCP: --listen on one side, HOST PORT on the other",
                       usage="pysock talk [-h] (--listen [PORT] [-b ADDR] | HOST PORT)",
                       description="Send each line of stdin to the peer and print the peer's, at once, "
                                   "until either side ends (EOF, the line q, Ctrl-C).")
    p.add_argument("--listen", nargs="?", type=port_number, const=DEFAULT_PORT, metavar="PORT",
                   help=f"wait for one peer on PORT (default {DEFAULT_PORT}; 0 picks a free one) "
                        "and print the ready line tcp://HOST:PORT")
    add_bind_option(p)
    p.add_argument("-t", "--timeout", type=float, default=5.0, help="seconds to wait to connect (default 5)")
    p.add_argument("peer", nargs="*", metavar="HOST PORT", help="the listening side to connect to")
    p.set_defaults(func=cmd_talk)


def cmd_talk(args: argparse.Namespace) -> int:
    from pysock import talk

    if args.listen is not None:
        if args.peer:
            raise UsageError("talk --listen takes no HOST PORT (see 'pysock talk --help')")
        talk.serve_one(args.bind, args.listen)
        return 0
    if len(args.peer) != 2:
        raise UsageError("talk needs HOST PORT, or --listen [PORT] (see 'pysock talk --help')")
    try:
        port = port_number(args.peer[1])
    except argparse.ArgumentTypeError as exc:
        raise UsageError(str(exc)) from None
    talk.call(args.peer[0], port, args.timeout)
    return 0


# -- bench ----------------------------------------------------------------
def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure the C backend against the pure-Python twins",
                       description="Run each server in its own process under the same loads from the C "
                                   "load generator; print medians, each as a ratio to the C backend. "
                                   "Progress goes to stderr. Exit 1 if a run got a bad reply.")
    p.add_argument("--quick", action="store_true", help="short runs, one each (under 30 s): a smoke test")
    p.add_argument("--servers", metavar="LIST", help="comma-separated servers (default: all but those --list marks 'only when named')")
    p.add_argument("--loads", metavar="LIST", help="comma-separated loads (default: all but those --list marks 'only when named')")
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
            options = f"; {' '.join(s.options)}" if s.options else ""
            print(f"server {s.name:<16} {s.backend} backend; tcp: {s.tcp or '-'}, udp: {s.udp or '-'}{options}"
                  + ("" if s.default else " (only when named)")
                  + (f"; {s.missing()}" if s.missing() else ""))
        for load in bench.LOADS:
            print(f"load   {load.name:<16} {load.describe(bench.FULL)}" + ("" if load.default else " (only when named)"))
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
COMMANDS: list[Callable] = [_add_serve, _add_send, _add_bench, _add_layout, _add_resolve, _add_chat, _add_talk]


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
        signal.signal(signal.SIGHUP, _sigterm)  # the terminal went away: end as cleanly
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
