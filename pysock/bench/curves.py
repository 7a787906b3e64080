"""``pysock bench --curve rate|conns``: curves, not points.

- rate: for each server, the closed-loop maximum first (CONNS connections of
  SIZE bytes), then the open loop at stepped multiples of it, past it until
  the server falls behind (it answers less than 90% of the offered rate in
  time, or loses more than 1%).  Each point: the achieved rate and the
  latency percentiles from each request's due time, so the knee (where the
  tail explodes) shows.  (An open loop keeps several requests in flight on
  a connection, so a server can take more than its closed-loop maximum.)
- conns: 1 to 50,000 connections, each sending CONNS_SIZE bytes at a small
  fixed rate (a total of at least MIN_RATE).  Each point: the achieved rate, p99, the
  server's CPU per request and its resident memory per connection.

Every point carries the fields of ``pysock load --json`` (loadgen.FIELDS),
and the conns curve adds ``conns``, ``cpu_us_per_req`` and
``rss_kib_per_conn``.  Each server runs in a process of its own, pinned
apart from the load generator, as for the points of ``pysock bench``."""
from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, TextIO

from pysock.bench import affinity, loadgen
from pysock.bench.measure import SERVERS, BenchServer, ServerProcess, cpu_pair, machine, process_cpu_seconds
from pysock.bench.report import Json
from pysock.errors import PysockError

CURVES = ("rate", "conns")
CONNS = 64          # the rate curve's connections
SIZE = 1024         # bytes per request, the rate curve
CONNS_SIZE = 64     # bytes per request, the conns curve
PER_CONN_RATE = 2.0  # the conns curve: requests per second per connection...
MIN_RATE = 200.0    # ...and at least this many in all
TIMEOUT = 2.0       # replies in flight at a point's end get this long
LOST_SHARE = 0.01   # a point where more than this share went unanswered: the server stopped keeping up
BEHIND = 0.9        # a point that achieved less than this share of its offered rate: past the knee


@dataclass(frozen=True)
class CurvePlan:
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 12.0)
    conns: tuple[int, ...] = (1, 100, 1_000, 10_000, 50_000)
    duration: float = 3.0     # seconds per point
    probe: float = 2.0        # seconds of closed loop to find the maximum


FULL = CurvePlan()
QUICK = CurvePlan(fractions=(0.25, 1.0, 2.0), conns=(1, 100, 1_000), duration=0.5, probe=0.5)

# The servers a curve takes by default: every engine that serves many TCP
# connections at once, and the references of those kinds.  (The loop
# models serve one connection at a time.)
DEFAULT_SERVERS = ("c", "c-uring", "c-threads", "python-threads", "python-asyncio", "python-uvloop",
                   "ref-c", "ref-threads", "ref-asyncio", "ref-uvloop")


def curve_servers(names: str | None) -> list[BenchServer]:
    """The servers named (or the default ones that can run here); each must
    serve TCP to many clients at once."""
    from pysock.bench.measure import select_named

    if names is None:
        chosen = [s for s in SERVERS if s.name in DEFAULT_SERVERS and s.missing() is None]
    else:
        chosen = select_named(SERVERS, names, "server")
    for s in chosen:
        if s.model("tcp") in (None, "loop"):
            raise PysockError(f"{s.name} cannot make a curve: it does not serve many TCP connections at once")
    return chosen


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


Say = Callable[[str], None]


def rate_curve(server: BenchServer, plan: CurvePlan, cpus: tuple[int | None, int | None], say: Say) -> list[Json]:
    """The closed-loop maximum, then the open loop at each fraction of it."""
    points: list[Json] = []
    with ServerProcess(server, "tcp", cpus[0]) as proc:
        peak = loadgen.pingpong(proc.address, "tcp", conns=CONNS, size=SIZE, duration=plan.probe, timeout=TIMEOUT)
        if not peak.ok or peak.rps <= 0:
            raise PysockError(f"{server.name}: the closed-loop run failed ({peak.bad} bad, {peak.failed} failed)")
        say(f"  {server.name}: closed-loop maximum {peak.rps:,.0f} req/s")
        for fraction in plan.fractions:
            rate = max(peak.rps * fraction, 1.0)
            before = process_cpu_seconds(proc.proc.pid)
            r = loadgen.openloop(proc.address, "tcp", rate=rate, conns=CONNS, size=SIZE, duration=plan.duration,
                                 timeout=TIMEOUT)
            cpu = process_cpu_seconds(proc.proc.pid) - before
            point = dict(server=server.name, fraction=fraction, closed_loop_rps=round(peak.rps, 1), **r.figures(),
                         cpu_us_per_req=cpu_us_per_req(cpu, r))
            points.append(point)
            say(f"  {server.name} at {fraction:.0%}: {r.achieved_rps:,.0f} req/s, p99 {r.p99_us:,.0f} us")
            if falls_behind(r):
                point["behind"] = True
                break  # past the knee: more would only queue longer
    return points


def cpu_us_per_req(cpu: float, r: loadgen.LoadResult) -> float | None:
    """The server's CPU seconds over the run, per answered request, in µs."""
    return round(cpu / r.received * 1e6, 2) if r.received else None


def falls_behind(r: loadgen.LoadResult) -> bool:
    offered = r.offered_rps or 0.0
    return r.achieved_rps < BEHIND * offered or r.lost > LOST_SHARE * max(r.sent, 1) or r.bad + r.failed > 0


def conns_point(server: BenchServer, conns: int, plan: CurvePlan, cpus: tuple[int | None, int | None]) -> Json:
    """One point of the conns curve: a fresh server (its memory with no
    client read first), conns connections at the fixed rate."""
    rate = max(conns * PER_CONN_RATE, MIN_RATE)
    point: Json = {"server": server.name, "conns": conns}
    try:
        loadgen.raise_descriptor_limit(conns)
    except PysockError as exc:
        return dict(point, stopped=f"the load generator: {exc}")
    extra = ("--max-conns", str(conns + 100), "--idle-timeout", "0")
    with ServerProcess(server, "tcp", cpus[0], extra=extra) as proc:
        idle = rss_bytes(proc.proc.pid)
        peak = [idle]

        def sample(_: loadgen.LoadResult) -> None:
            peak.append(rss_bytes(proc.proc.pid))

        before = process_cpu_seconds(proc.proc.pid)
        try:
            r = loadgen.openloop(proc.address, "tcp", rate=rate, conns=conns, size=CONNS_SIZE, duration=plan.duration,
                                 timeout=TIMEOUT, progress=sample)
        except OSError as exc:
            return dict(point, stopped=f"connecting failed: {exc.strerror or exc}")
        cpu = process_cpu_seconds(proc.proc.pid) - before
        served = r.received / r.sent if r.sent else 0.0
        point.update(r.figures(), cpu_us_per_req=cpu_us_per_req(cpu, r),
                     rss_kib_per_conn=round((max(peak) - idle) / conns / 1024, 2))
        if r.bad + r.failed or 1.0 - served > LOST_SHARE:
            point["stopped"] = (f"{r.bad + r.failed} errors and {r.lost} lost of {r.sent} sent: "
                                f"{proc.errors() or 'the server kept no more'}")
    return point


def conns_curve(server: BenchServer, plan: CurvePlan, cpus: tuple[int | None, int | None], say: Say) -> list[Json]:
    points = []
    for conns in plan.conns:
        point = conns_point(server, conns, plan, cpus)
        points.append(point)
        if "stopped" in point:
            say(f"  {server.name} at {conns:,} connections: stopped ({point['stopped']})")
            break  # more connections fare no better
        say(f"  {server.name} at {conns:,} connections: {point['achieved_rps']:,.0f} req/s, "
            f"p99 {point['p99_us']:,.0f} us, {point['rss_kib_per_conn']} KiB per connection")
    return points


def run_curve(kind: str, servers: Sequence[BenchServer], plan: CurvePlan, say: Say) -> Json:
    """Every server's curve, one after another; Ctrl-C keeps what was measured."""
    cpus = cpu_pair()
    mask = affinity.get()
    if cpus[1] is not None:
        affinity.set_to({cpus[1]})
    points: list[Json] = []
    interrupted = False
    try:
        for n, server in enumerate(servers, 1):
            say(f"[{n}/{len(servers)}] {server.name}: the {kind} curve")
            curve = rate_curve if kind == "rate" else conns_curve
            points.extend(curve(server, plan, cpus, say))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        affinity.set_to(mask)
    rate = kind == "rate"
    return {"curve": kind, "machine": machine(), "plan": asdict(plan), "conns": CONNS if rate else None,
            "size": SIZE if rate else CONNS_SIZE, "servers": [s.name for s in servers],
            "interrupted": interrupted, "points": points}


# -- reporting ----------------------------------------------------------------------
def columns(report: Json) -> list[str]:
    first = ["server", "fraction"] if report["curve"] == "rate" else ["server", "conns"]
    extra = ["cpu_us_per_req"] + (["rss_kib_per_conn", "stopped"] if report["curve"] == "conns" else [])
    return first + list(loadgen.FIELDS) + extra


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(report: Json) -> str:
    keys = ["server", "fraction" if report["curve"] == "rate" else "conns", "offered_rps", "achieved_rps",
            "p50_us", "p99_us", "p999_us", "errors", "lost", "cpu_us_per_req"]
    if report["curve"] == "conns":
        keys.append("rss_kib_per_conn")
    m = report["machine"]
    lines = [f"pysock bench --curve {report['curve']}: {m['cpu']}, {m['nproc']} CPUs, Python {m['python']}"]
    rows = [[k.replace("_per_", "/").replace("_", " ") for k in keys]]
    rows += [[_cell(p.get(k)) for k in keys] for p in report["points"]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(keys))]
    for row in rows:
        lines.append("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    lines += [f"{p['server']} stopped at {p['conns']:,} connections: {p['stopped']}"
              for p in report["points"] if p.get("stopped")]
    return "\n".join(lines)


def as_csv(report: Json) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns(report), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(report["points"])
    return out.getvalue().rstrip("\n")


def as_markdown(report: Json) -> str:
    keys = columns(report)
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(p.get(k)) for k in keys) + " |" for p in report["points"]]
    return "\n".join(lines)


FORMATS: dict[str, Callable[[Json], str]] = {"table": table, "csv": as_csv, "markdown": as_markdown}


def plot(report: Json, path: str) -> None:
    """rate: p99 against the achieved rate, every server on one chart (log
    latency).  conns: the achieved rate, p99, CPU per request and memory
    per connection against the connections (log axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_server: dict[str, list[Json]] = {}
    for p in report["points"]:
        if p.get("achieved_rps") is not None:
            by_server.setdefault(p["server"], []).append(p)
    m = report["machine"]
    title = f"pysock bench --curve {report['curve']}: {m['cpu']}, {m['nproc']} CPUs, Python {m['python']}"
    if report["curve"] == "rate":
        fig, ax = plt.subplots(figsize=(9, 5.5))
        for server, points in by_server.items():
            ax.plot([p["achieved_rps"] for p in points], [max(p["p99_us"], 1.0) for p in points],
                    marker="o", label=server, linestyle="--" if server.startswith("ref-") else "-")
        ax.set_yscale("log")
        ax.set_xlabel(f"achieved requests/s ({report['conns']} connections x {report['size']} B, open loop)")
        ax.set_ylabel("p99 latency from the due time (us, log)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small", ncol=2)
    else:
        panels = [("achieved_rps", "requests/s"), ("p99_us", "p99 latency (us)"),
                  ("cpu_us_per_req", "server CPU per request (us)"), ("rss_kib_per_conn", "server KiB per connection")]
        fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
        for ax, (key, label) in zip(axes.flat, panels):
            for server, points in by_server.items():
                kept = [p for p in points if p.get(key) is not None and p[key] > 0]
                ax.plot([p["conns"] for p in kept], [p[key] for p in kept], marker="o", label=server,
                        linestyle="--" if server.startswith("ref-") else "-")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("connections")
            ax.set_title(label, fontsize="medium")
            ax.grid(alpha=0.3, which="both")
        axes[0, 0].legend(fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """pysock bench --curve KIND: measure, print (table, JSON, CSV or
    Markdown), maybe plot.  130 after Ctrl-C (what was measured is printed
    all the same); 1 when a point had a bad reply."""
    servers = curve_servers(args.servers)
    base = QUICK if args.quick else FULL
    plan = CurvePlan(fractions=base.fractions, conns=base.conns, duration=args.duration or base.duration,
                     probe=base.probe)

    def say(text: str) -> None:
        print(text, file=err, flush=True)

    started = time.monotonic()
    report = run_curve(args.curve, servers, plan, say)
    report["command"] = " ".join(["pysock", *sys.argv[1:]])
    report["seconds"] = round(time.monotonic() - started, 1)
    say(("interrupted" if report["interrupted"] else "done") + f" after {report['seconds']:.0f} s")
    if args.json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        print(FORMATS[args.format](report), file=out)
    if args.plot and report["points"]:
        plot(report, args.plot)
        say(f"plot written to {args.plot}")
    if report["interrupted"]:
        return 130
    return 1 if any(p.get("errors") and not p.get("stopped") for p in report["points"]) else 0
