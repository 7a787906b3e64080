"""pysock serve: the echo servers until a signal, one ready line per socket."""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pysock.cli.common import Subparsers, UsageError, add_bind_option, count, port_number
from pysock.cli.signals import deferred, ending
from pysock.config import BACKENDS, DEFAULT_HOST, DEFAULT_PORT, MODELS, TRANSFORMS, ServerConfig, lift_descriptor_limit
from pysock.faults import TCP_ONLY, Faults, from_pairs, not_for, with_seed

if TYPE_CHECKING:
    from pysock.engines.base import Stats
    from pysock.engines.lifecycle import Lifecycle
    from pysock.server import Server


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
                        help="cut off a client that leaves its echo unread this long "
                             f"(default {ServerConfig.send_timeout:g})")
    limits.add_argument("--max-unsent", type=int, default=ServerConfig.max_unsent, metavar="BYTES",
                        help="stop reading from a client with this much unread echo, until it reads "
                             f"(default {ServerConfig.max_unsent})")


def add_parser(sub: Subparsers) -> None:
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
    p.add_argument("--ipv6-only", action="store_true",
                   help="with -b ::, serve IPv6 clients alone (default: IPv4 too, dual stack)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log to stderr each connection opened, closed (why, bytes) or rejected, "
                        "and each second's datagrams")
    p.add_argument("--ready-json", action="store_true",
                   help="print each ready line as JSON (url, proto, host, port, path, pid), for scripts")
    p.add_argument("--fault", action="append", default=[], metavar="NAME=VALUE",
                   help="misbehave on purpose, one option per fault: latency=S, jitter=S, bandwidth=BYTES/S, "
                        "slice=BYTES, slice_delay=S, limit_data=BYTES, reset_after=BYTES, stall=yes, "
                        "close_delay=S (TCP); drop=P, duplicate=P, reorder=P (UDP); seed=N. "
                        "The seed in use is printed on stderr, to replay a run")
    p.set_defaults(func=run)


def server_options(args: argparse.Namespace, proto: str) -> dict[str, Any]:
    """The Server keyword arguments the shared options ask for.  --model
    applies to each protocol that offers it (a C UDP server has one loop)."""
    options = {"transform": args.transform, "backend": args.backend, "workers": args.workers,
               "spin_us": args.spin, "max_conns": args.max_conns, "idle_timeout": args.idle_timeout,
               "send_timeout": args.send_timeout, "max_unsent": args.max_unsent,
               "ipv6_only": True if args.ipv6_only else None,
               "log": log_line if getattr(args, "verbose", False) else None}
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


def serve_targets(args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
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


def fault_options(args: argparse.Namespace, protos: list[str]) -> dict[str, Faults]:
    """--fault options, as each protocol's Faults (one seed for all): a
    fault goes to the servers it applies to, and must apply to one."""
    faults = with_seed(from_pairs(args.fault))
    if faults is None:
        return {}
    unused = [name for name in faults.set_fields()
              if all(name in not_for(proto) for proto in protos)]
    if unused:
        which = "TCP" if unused[0] in TCP_ONLY else "UDP"
        raise UsageError(f"--fault {', '.join(unused)}: applies to {which} only, and this serves "
                         f"{'/'.join(protos).upper()} alone")
    return {proto: faults.only_for(proto) for proto in protos}


def run(args: argparse.Namespace) -> int:
    from pysock.server import Server

    targets = serve_targets(args)
    check_model(args, [proto for proto, _ in targets])
    _room_for(args.max_conns)
    faults = fault_options(args, [proto for proto, _ in targets])
    servers: list[Server] = []
    try:
        with deferred():  # a signal now waits until what is made can be undone
            for proto, where in targets:
                srv = Server(proto=proto, **where, **server_options(args, proto), faults=faults.get(proto))
                servers.append(srv)
                if srv.faults is not None:
                    print(f"pysock: {srv.url} faults: {srv.faults.describe()}", file=sys.stderr, flush=True)
                if where.get("port") == 0 and len(targets) > 1:
                    for _, later in targets:
                        later["port"] = servers[0].port  # both protocols on the one free port
        run_until_signal(servers, ready_json=args.ready_json, verbose=args.verbose)
    finally:
        with ending():  # a second signal must not cut this short
            stop_all(servers)
            for srv in servers:  # what each served, once stopped: one line each on stderr
                print(f"pysock: served {srv.url}: {counters(srv.stats)}", file=sys.stderr, flush=True)
    return 0


def _room_for(max_conns: int) -> None:
    """Descriptors for max_conns connections, as far as the hard limit
    allows; a warning line when it does not (the connections past it are
    refused, as when descriptors run out)."""
    needed = max_conns + 64
    room = lift_descriptor_limit(needed)
    if room != resource.RLIM_INFINITY and room < needed:
        print(f"pysock: warning: --max-conns {max_conns:,} needs about {needed:,} descriptors, and this process "
              f"may open {room:,} (RLIMIT_NOFILE's hard limit): connections past that are refused",
              file=sys.stderr, flush=True)


_log_lock = threading.Lock()


def log_line(text: str) -> None:
    """One line of serve -v on stderr, whole, from any thread."""
    with _log_lock:
        print(f"pysock: {text}", file=sys.stderr, flush=True)


def log_datagrams(srv: Lifecycle, ended: threading.Event, last: Stats) -> None:
    """serve -v for a datagram server: each second that had any, how many
    (last: the counters before the ready line, so none is missed)."""
    while not ended.wait(1.0):
        now = srv.stats
        if now.datagrams != last.datagrams:
            log_line(f"{srv.url} {now.datagrams - last.datagrams} datagrams, "
                     f"{now.bytes_in - last.bytes_in} bytes in, {now.bytes_out - last.bytes_out} out "
                     "in the last second")
        last = now


def counters(stats: Stats) -> str:
    return ", ".join(f"{name} {value}" for name, value in stats.__dict__.items())


def ready_line(srv: Lifecycle, as_json: bool) -> str:
    """The ready line: the URL, or the same as JSON for scripts."""
    if not as_json:
        return srv.url
    unix = srv.config.family == "unix"
    return json.dumps({"url": srv.url, "proto": srv.config.proto, "host": None if unix else srv.host,
                       "port": None if unix else srv.port, "path": srv.address if unix else None,
                       "pid": os.getpid()})


def _set_when_done(srv: Lifecycle, ended: threading.Event) -> None:
    srv.wait()
    ended.set()


def run_until_signal(servers: Sequence[Lifecycle], ready_json: bool = False, verbose: bool = False) -> None:
    """Start the servers, print their ready lines, and wait for Ctrl-C,
    SIGTERM or SIGHUP, or for a server whose loop failed (stop_all then
    reports it)."""
    ended = threading.Event()
    for srv in servers:
        srv.start()
        threading.Thread(target=_set_when_done, args=(srv, ended), daemon=True,
                         name=f"pysock watch {srv.url}").start()
    for srv in servers:
        if verbose and srv.config.proto == "udp":
            threading.Thread(target=log_datagrams, args=(srv, ended, srv.stats), daemon=True,
                             name=f"pysock datagrams {srv.url}").start()
        print(ready_line(srv, ready_json), flush=True)
    ended.wait()


def stop_all(servers: Sequence[Lifecycle]) -> None:
    """Stop every server, then raise the first failure any of them had."""
    failures = []
    for srv in servers:
        try:
            srv.stop()
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]
