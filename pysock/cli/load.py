"""pysock load: the C load generator against any echo server, open loop
(--rate) or closed loop, with latency percentiles."""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING

from pysock.bench.report import LOAD_FIELDS
from pysock.cli.common import EXIT_SIGINT, Subparsers, UsageError, count, positive_float, seconds, url_arg
from pysock.urls import format_url

if TYPE_CHECKING:
    from pysock.bench.loadgen import LoadResult

PROGRESS_AFTER = 3.0  # runs longer than this say how they go, on stderr, once a second


def rate(text: str) -> float:
    return positive_float(text, "requests per second", 1e8, "a rate is over 0 and at most 100000000 per second")


def add_parser(sub: Subparsers) -> None:
    p = sub.add_parser(
        "load", help="drive an echo server with the C load generator (open loop with --rate)",
        description="Send requests to an echo server (pysock's or any other) and measure its "
                    "replies, every byte checked. With --rate, open loop: requests go on a fixed "
                    "schedule whatever the server does, and latency runs from when each was due, "
                    "so a stall counts for every request due during it. Without it, closed loop: "
                    "each connection sends its next request when its reply has come. URL is a "
                    "ready line of pysock serve: tcp://HOST:PORT, udp://[::1]:PORT, unix://PATH.")
    p.add_argument("url", metavar="URL", help="the server, as pysock serve prints it")
    p.add_argument("-u", "--udp", action="store_true", help="a unix URL is a datagram socket (default stream)")
    p.add_argument("--rate", type=rate, help="requests per second, all connections together (open loop)")
    p.add_argument("--conns", type=count, default=1, help="TCP connections or UDP sockets (default 1)")
    p.add_argument("--size", type=count, default=64, help="bytes per request (default 64; UDP at least 16)")
    p.add_argument("--duration", type=seconds, default=5.0, help="seconds to send for (default 5)")
    p.add_argument("--timeout", type=seconds, default=1.0,
                   help="seconds a reply may take: UDP later is lost; after the run, in-flight replies "
                        "get this long (default 1)")
    p.add_argument("--transform", choices=("upper", "echo"), default="upper",
                   help="what the server sends back (default upper)")
    p.add_argument("--json", action="store_true", help="print one JSON object: " + ", ".join(LOAD_FIELDS))
    p.set_defaults(func=run)


def table(r: LoadResult) -> str:
    offered = "closed loop" if r.offered_rps is None else f"{r.offered_rps:,.0f} req/s"
    return "\n".join([
        f"offered     {offered}",
        f"achieved    {r.achieved_rps:,.0f} req/s",
        f"sent        {r.sent:,}",
        f"received    {r.received:,}",
        f"errors      {r.bad + r.failed:,}",
        f"lost        {r.lost:,}",
        f"latency us  p50 {r.p50_us:,.1f}  p90 {r.p90_us:,.1f}  p99 {r.p99_us:,.1f}  "
        f"p99.9 {r.p999_us:,.1f}  max {r.max_us:,.1f}",
    ])


class _Progress:
    """A line on stderr once a second, for runs long enough to want one."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self.started = time.monotonic()
        self.shown = self.started

    def __call__(self, r: LoadResult) -> None:
        now = time.monotonic()
        if self.duration <= PROGRESS_AFTER or now - self.shown < 1.0:
            return
        self.shown = now
        print(f"pysock load: {min(now - self.started, self.duration):.0f} s of {self.duration:g}: "
              f"{r.sent:,} sent, {r.received:,} received, {r.bad + r.failed:,} errors, {r.lost:,} lost",
              file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from pysock.bench import loadgen

    scheme, address = url_arg(args.url)
    proto = "udp" if scheme == "udp" or (scheme == "unix" and args.udp) else "tcp"
    if args.udp and scheme == "tcp":
        raise UsageError("-u is for a unix URL; a tcp:// URL is a stream")
    loadgen.raise_descriptor_limit(args.conns)
    progress = _Progress(args.duration)
    try:
        if args.rate is None:
            result = loadgen.pingpong(address, proto, conns=args.conns, size=args.size, duration=args.duration,
                                      timeout=args.timeout, transform=args.transform, progress=progress)
        else:
            result = loadgen.openloop(address, proto, rate=args.rate, conns=args.conns, size=args.size,
                                      duration=args.duration, timeout=args.timeout, transform=args.transform,
                                      progress=progress)
    except loadgen.LoadInterrupted as stop:
        print(f"pysock load: interrupted after {stop.result.seconds:.1f} s; what was measured:",
              file=sys.stderr)
        _show(stop.result, args.json)
        return EXIT_SIGINT
    _show(result, args.json)
    if result.sent == 0 and result.received == 0:
        print(f"pysock load: {format_url(proto, address)} took no request", file=sys.stderr)
        return 1
    return 0


def _show(result: LoadResult, as_json: bool) -> None:
    print(json.dumps(result.figures()) if as_json else table(result), flush=True)
