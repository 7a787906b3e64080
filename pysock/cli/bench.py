"""pysock bench: the C backend against the pure-Python twins, measured."""
from __future__ import annotations

import argparse

from pysock.cli.common import Subparsers, UsageError, seconds
from pysock.errors import PysockError


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser("bench", help="measure the C backend against the pure-Python twins",
                       description="Run each server in its own process under the same loads from the C "
                                   "load generator; print medians, each as a ratio to the C backend. "
                                   "Progress goes to stderr. Exit 1 if a run got a bad reply.")
    p.add_argument("--quick", action="store_true", help="short runs, one each (under 30 s): a smoke test")
    p.add_argument("--curve", choices=("rate", "conns"),
                   help="a curve instead of points: rate (open-loop latency against the offered rate, to "
                        "past each server's maximum) or conns (1 to 50,000 connections at a small rate each)")
    p.add_argument("--proxies", action="store_true",
                   help="pysock's proxies (C, Python) against HAProxy (TCP mode, one thread) in front of the "
                        "same C echo upstream: 32 connections x 1 KiB, and a stream")
    p.add_argument("--servers", metavar="LIST",
                   help="comma-separated servers (default: all but those --list marks 'only when named')")
    p.add_argument("--loads", metavar="LIST",
                   help="comma-separated loads (default: all but those --list marks 'only when named')")
    p.add_argument("--list", action="store_true", help="list the servers and loads, and exit")
    p.add_argument("--reps", type=int, default=None, help="measured runs per server and load (default 5)")
    p.add_argument("--duration", type=seconds, default=None, help="seconds per ping-pong run (default 1)")
    p.add_argument("--stream-mib", type=int, default=None, metavar="MIB",
                   help="MiB per stream run (default 256)")
    p.add_argument("--json", action="store_true", help="print the full report as JSON instead of the table "
                                                      "(save it to compare a later run with it)")
    p.add_argument("--format", choices=("table", "csv", "markdown"), default="table",
                   help="the figures as a text table (default), CSV or a Markdown table")
    p.add_argument("--compare", metavar="OLD.json", help="also show each figure against a run saved with --json")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the comparison (needs matplotlib)")
    p.add_argument("--python", action="append", metavar="INTERP",
                   help="also run the chosen servers under this interpreter (the C ones where pysock's "
                        "extension is built for it), e.g. pypy3 or python3.13; repeatable")
    p.add_argument("--syscalls", action="store_true",
                   help="also count each server's system calls per request: one more run per server and "
                        "load under strace -f, not timed (needs strace)")
    p.set_defaults(func=run)


# What only the points take: a curve has its own servers' default, loads and runs.
POINTS_ONLY = ("loads", "reps", "stream_mib", "compare", "python", "syscalls")


def run_curve(args: argparse.Namespace) -> int:
    from pysock.bench import curves, report

    for name in POINTS_ONLY:
        if getattr(args, name):
            raise UsageError(f"--{name.replace('_', '-')} is for the points, not --curve")
    try:
        curves.curve_servers(args.servers)
        if args.plot:
            report.check_writable(args.plot)
            report.check_plot_available()
    except PysockError as exc:
        raise UsageError(str(exc)) from None
    return curves.main(args)


def run_proxies(args: argparse.Namespace) -> int:
    from pysock.bench import proxies

    for name in ("curve", "servers", "loads", "list", "compare", "plot", "python", "syscalls"):
        if getattr(args, name):
            raise UsageError(f"--{name.replace('_', '-')} is not for --proxies")
    if args.format != "table":
        raise UsageError("--proxies prints a table or --json")
    return proxies.main(args)


def run(args: argparse.Namespace) -> int:
    from pysock.bench import measure, report

    if args.curve and not args.list:
        return run_curve(args)
    if args.proxies:
        return run_proxies(args)

    if args.list:
        for s in measure.SERVERS:
            options = f"; {' '.join(s.options)}" if s.options else ""
            kind = "reference (the plainest of its kind)" if s.reference else f"{s.backend} backend"
            print(f"server {s.name:<16} {kind}; tcp: {s.model('tcp') or '-'}, "
                  f"udp: {s.model('udp') or '-'}{options}"
                  + ("" if s.default else " (only when named)")
                  + (f"; {s.missing()}" if s.missing() else ""))
        for load in measure.LOADS:
            print(f"load   {load.name:<16} {load.describe(measure.FULL)}"
                  + ("" if load.default else " (only when named)"))
        return 0
    for name in ("reps", "duration", "stream_mib"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, not {value}")
    try:  # every option checked before anything is measured
        measure.select_named(measure.SERVERS, args.servers, "server")
        measure.select_named(measure.LOADS, args.loads, "load")
        if args.plot:
            report.check_writable(args.plot)
        if args.compare:
            report.load_report(args.compare)
        for command in args.python or []:
            measure.interpreter_servers(command)
        if args.syscalls and not measure.strace_available():
            raise PysockError("--syscalls needs strace (Debian: apt-get install strace)")
    except PysockError as exc:
        raise UsageError(str(exc)) from None
    return measure.main(args)
