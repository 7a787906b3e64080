"""pysock proxy: a proxy with faults in front of a real server, until a
signal; one ready line per socket, as serve prints them.  --api serves
the toxiproxy-compatible control API (pysock.proxy.api) as well."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from pysock.cli.common import Subparsers, UsageError, add_bind_option, port_number
from pysock.cli.serve import counters, log_line, run_until_signal, stop_all
from pysock.cli.signals import deferred, ending
from pysock.config import BACKENDS, DEFAULT_HOST, ServerConfig
from pysock.faults import from_pairs, with_seed

if TYPE_CHECKING:
    from pysock.engines.lifecycle import Lifecycle
    from pysock.proxy.api import ControlAPI

FAULT_HELP = ("latency=S, jitter=S, bandwidth=BYTES/S, slice=BYTES, slice_delay=S, limit_data=BYTES, "
              "reset_after=BYTES, stall=yes, close_delay=S, close_after_time=S, reset_after_time=S, "
              "corrupt=P, toxicity=P (streams); drop=P, duplicate=P, reorder=P, corrupt=P, toxicity=P "
              "(datagrams); seed=N")


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("proxy", help="forward to a real server, with faults on demand",
                       description="Forward each client to UPSTREAM (tcp://HOST:PORT, udp://HOST:PORT, "
                                   "unix:///PATH, or HOST:PORT for TCP) until Ctrl-C. Prints the ready line "
                                   "(tcp://HOST:PORT, udp://..., unix://...), and with --api the control "
                                   "API's http://HOST:PORT.")
    p.add_argument("where", nargs="*", metavar="PORT UPSTREAM",
                   help="the port to listen on (0 picks a free one; none with --unix) and where to forward "
                        "each client")
    add_bind_option(p)
    p.add_argument("--unix", metavar="PATH", help="listen on this AF_UNIX stream path instead of a port")
    p.add_argument("--backend", default="c", choices=BACKENDS,
                   help="c (default: the epoll proxy) or python (the asyncio twin)")
    p.add_argument("--fault", action="append", default=[], metavar="NAME=VALUE",
                   help="a fault on what clients receive, one option each: " + FAULT_HELP)
    p.add_argument("--fault-up", action="append", default=[], metavar="NAME=VALUE",
                   help="a fault on what the upstream receives (the same names)")
    p.add_argument("--api", metavar="[HOST:]PORT", default=None,
                   help="serve toxiproxy's HTTP control API here (HOST defaults to 127.0.0.1)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-conns", type=int, default=ServerConfig.max_conns, metavar="N",
                        help=f"client connections (senders) at most (default {ServerConfig.max_conns})")
    limits.add_argument("--idle-timeout", type=float, default=ServerConfig.idle_timeout, metavar="S",
                        help=f"close a pair silent this long, 0: never (default {ServerConfig.idle_timeout:g})")
    limits.add_argument("--send-timeout", type=float, default=ServerConfig.send_timeout, metavar="S",
                        help=f"cut off a pair one side leaves unread this long (default {ServerConfig.send_timeout:g})")
    limits.add_argument("--max-unsent", type=int, default=ServerConfig.max_unsent, metavar="BYTES",
                        help=f"per direction, stop reading while this much waits (default {ServerConfig.max_unsent})")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log to stderr each connection opened and closed (why, bytes)")
    p.set_defaults(func=run)


def api_address(text: str) -> tuple[str, int]:
    """(host, port) from --api's [HOST:]PORT."""
    host, colon, port = text.rpartition(":")
    host = host.strip("[]") if colon else DEFAULT_HOST
    try:
        return host or DEFAULT_HOST, port_number(port)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"--api {text!r}: {exc}") from None


def proxy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Proxy keyword arguments the options ask for."""
    faults = with_seed(from_pairs(args.fault))
    faults_up = with_seed(from_pairs(args.fault_up))
    where: dict[str, Any] = {"path": args.unix} if args.unix else {"host": args.bind, "port": args.port}
    return {**where, "backend": args.backend, "faults": faults, "faults_up": faults_up,
            "max_conns": args.max_conns, "idle_timeout": args.idle_timeout, "send_timeout": args.send_timeout,
            "max_unsent": args.max_unsent, "log": log_line if args.verbose else None}


def run(args: argparse.Namespace) -> int:
    from pysock.proxy.proxy import Proxy

    split_where(args)
    upstream = _upstream_arg(args.upstream) if args.upstream is not None else None
    servers: list[Lifecycle] = []
    api: ControlAPI | None = None
    try:
        with deferred():
            px = Proxy(upstream, **proxy_options(args)) if upstream is not None else None
            if px is not None:
                servers.append(px)
                for name, faults in (("faults", px.faults), ("faults_up", px.faults_up)):
                    if faults is not None:
                        print(f"pysock: {px.url} {name}: {faults.describe()}", file=sys.stderr, flush=True)
            if args.api is not None:
                from pysock.proxy.api import ControlAPI

                api = ControlAPI(*api_address(args.api), backend=args.backend)
                if px is not None:
                    api.adopt("pysock", px)
        if api is not None:
            api.start()
            print(api.url, flush=True)
        run_until_signal(servers)
    finally:
        with ending():
            if api is not None:
                api.stop()
            stop_all(servers)
            for srv in servers:
                print(f"pysock: proxied {srv.url}: {counters(srv.stats)}", file=sys.stderr, flush=True)
    return 0


def split_where(args: argparse.Namespace) -> None:
    """args.port and args.upstream from the words: PORT UPSTREAM, UPSTREAM
    alone with --unix, or nothing with --api."""
    words = list(args.where)
    wanted = 1 if args.unix else 2
    if not words and args.api is not None:
        args.port = args.upstream = None
        return
    if len(words) != wanted:
        usage = "--unix PATH UPSTREAM" if args.unix else "PORT UPSTREAM"
        raise UsageError(f"pysock proxy takes {usage} (or --api [HOST:]PORT alone to make proxies over HTTP)")
    if args.unix and args.bind != DEFAULT_HOST:
        raise UsageError("--unix takes a PATH, not -b ADDR")
    try:
        args.port = None if args.unix else port_number(words[0])
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"PORT: {exc}") from None
    args.upstream = words[-1]


def _upstream_arg(text: str) -> str:
    """UPSTREAM as a URL: HOST:PORT is TCP."""
    if "://" in text:
        return text
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise UsageError(f"UPSTREAM {text!r}: write tcp://HOST:PORT, udp://HOST:PORT, unix:///PATH or HOST:PORT")
    return f"tcp://{host}:{port}"
