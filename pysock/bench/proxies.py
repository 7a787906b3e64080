"""pysock bench --proxies: pysock's proxies against HAProxy, in front of
the same upstream, under the same loads from the C load generator.

The upstream is pysock's C echo server (epoll); it and the load generator
share one CPU, and each proxy in turn runs alone on the other, so the
proxy is what is measured: its requests per second and latency, and its
own CPU time per request (or per MiB streamed).  HAProxy runs in TCP mode
with one thread, as Debian ships it; haproxy-splice adds
``option splice-auto`` (its kernel-side copy for streams).  Runs take
turns, as in pysock bench, and each figure is the median of plan.reps."""
from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Callable, TextIO

from pysock.bench import affinity
from pysock.bench.measure import (
    LOADS,
    QUICK,
    BenchServer,
    Plan,
    ServerProcess,
    _one_run,
    cpu_pair,
    machine,
)
from pysock.bench.report import Json, medians
from pysock.errors import PysockError

PROXIES = ("pysock-c", "pysock-python", "haproxy", "haproxy-splice")
BASELINE = "haproxy"
PROXY_LOADS = ("tcp-32x1k", "tcp-stream")
HAPROXY_CONFIG = """\
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
{splice}
frontend front
    bind fd@{fd}
    default_backend up
backend up
    server upstream {host}:{port}
"""
_READY = 20.0  # seconds for a proxy to answer


def haproxy_path() -> str | None:
    return shutil.which("haproxy")


class ProxyProcess(ServerProcess):
    """One proxy in its own process on cpu, in front of upstream."""

    def __init__(self, kind: str, upstream: tuple[str, int], cpu: int | None) -> None:
        self.config: tempfile._TemporaryFileWrapper[str] | None = None
        if kind.startswith("haproxy"):
            self._haproxy(kind, upstream, cpu)
        else:
            backend = kind.split("-", 1)[1]
            self.spawn([sys.executable, "-m", "pysock", "proxy", "0", f"tcp://{upstream[0]}:{upstream[1]}",
                        "--backend", backend, "--idle-timeout", "0"], cpu)
            try:
                self.address = self._ready("tcp")
            except BaseException:
                self.stop()
                raise

    def _haproxy(self, kind: str, upstream: tuple[str, int], cpu: int | None) -> None:
        """HAProxy serves a socket bound here (port 0, no race) and passed on."""
        path = haproxy_path()
        if path is None:
            raise PysockError("haproxy is not installed (apt-get install haproxy)")
        with socket.create_server(("127.0.0.1", 0), backlog=4096) as listener:
            listener.set_inheritable(True)
            self.config = tempfile.NamedTemporaryFile("w", suffix=".cfg")  # noqa: SIM115 - closed in stop()
            self.config.write(HAPROXY_CONFIG.format(splice="    option splice-auto" if kind == "haproxy-splice"
                                                    else "", fd=listener.fileno(), host=upstream[0],
                                                    port=upstream[1]))
            self.config.flush()
            self.spawn([path, "-db", "-f", self.config.name], cpu, pass_fds=[listener.fileno()])
            self.address = listener.getsockname()[:2]
        try:
            _wait_answering(self.address, self)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        super().stop()
        if self.config is not None:
            self.config.close()


def _wait_answering(address: tuple[str, int], proc: ServerProcess) -> None:
    from pysock.client import request

    deadline = time.monotonic() + _READY
    while True:
        try:
            if request(b"ready?", address, timeout=1.0) == b"READY?":
                return
        except OSError:
            pass
        if time.monotonic() > deadline or not proc.alive():
            raise PysockError(f"the proxy did not answer: {proc.errors() or 'nothing on stderr'}")
        time.sleep(0.05)


def measure(kinds: Sequence[str], plan: Plan, say: Callable[[str], None]) -> Json:
    """Every proxy under each load, in turns; the medians and ratios."""
    cpus = cpu_pair()
    mask = affinity.get()
    if cpus[1] is not None:
        affinity.set_to({cpus[1]})
    upstream = ServerProcess(BenchServer("upstream", "c", tcp="epoll", udp=None), "tcp", cpus[1])
    results: list[Json] = []
    try:
        say(f"upstream {upstream.address[0]}:{upstream.address[1]} and the load generator on CPU {cpus[1]}, "
            f"each proxy on CPU {cpus[0]}")
        for name in PROXY_LOADS:
            load = next(load for load in LOADS if load.name == name)
            say(f"{load.name}: {load.describe(plan)}")
            results += _measure_load(kinds, load, plan, upstream.address, cpus[0], say)
    finally:
        upstream.stop()
        affinity.set_to(mask)
    _ratios(results)
    return {"machine": machine(), "plan": {"reps": plan.reps, "duration": plan.duration,
                                           "stream_mib": plan.stream_mib or 256},
            "baseline": BASELINE, "results": results}


def _measure_load(kinds: Sequence[str], load: object, plan: Plan, upstream: tuple[str, int], cpu: int | None,
                  say: Callable[[str], None]) -> list[Json]:
    from pysock.bench.measure import Load

    assert isinstance(load, Load)
    mib = plan.stream_mib or load.mib
    entries: dict[str, Json] = {kind: {"proxy": kind, "load": load.name, "runs": []} for kind in kinds}
    procs: dict[str, ProxyProcess] = {}
    try:
        for kind in kinds:
            try:
                procs[kind] = ProxyProcess(kind, upstream, cpu)
                _one_run(procs[kind], load, plan, plan.warmup, min(mib, 16))
            except (PysockError, OSError) as exc:
                entries[kind]["error"] = str(exc)
                say(f"  {kind:<15} error: {exc}")
        for i in range(plan.reps):
            for kind, proc in procs.items():
                run = _one_run(proc, load, plan, plan.duration, mib)
                entries[kind]["runs"].append(run)
                say(f"  {kind:<15} run {i + 1}/{plan.reps}: {_brief(run, load.stream)}")
    finally:
        for proc in procs.values():
            proc.stop()
    for entry in entries.values():
        if entry["runs"]:
            entry["median"] = medians(entry["runs"])
            entry["ok"] = all(run["ok"] for run in entry["runs"])
    return list(entries.values())


def _brief(run: Json, stream: bool) -> str:
    if stream:
        return f"{run['mb_s']:.0f} MB/s, proxy CPU {run['cpu_s']:.2f} s"
    return f"{run['rps']:.0f} req/s, p99 {run['p99_us']:.0f} us, proxy CPU {run['cpu_us_per_req']:.1f} us/req"


def _cell(median: Json, key: str, width: int, digits: int = 0) -> str:
    value = median.get(key)
    return f"{value:>{width}.{digits}f}" if isinstance(value, (int, float)) else f"{'-':>{width}}"


def _ratios(results: list[Json]) -> None:
    """Each figure as a ratio to HAProxy's under the same load."""
    base = {r["load"]: r.get("median") for r in results if r["proxy"] == BASELINE}
    for r in results:
        b, m = base.get(r["load"]), r.get("median")
        if not b or not m:
            continue
        r["vs_haproxy"] = {key: m[key] / b[key] for key in ("rps", "cpu_us_per_req", "mb_s", "cpu_ms_per_mib")
                           if m.get(key) and b.get(key)}


def table(report: Json) -> str:
    lines = [f"{'proxy':<15} {'load':<11} {'req/s':>9} {'p99 us':>8} {'CPU us/req':>10} {'MB/s':>7} "
             f"{'CPU ms/MiB':>10}   vs haproxy"]
    for r in report["results"]:
        m = r.get("median") or {}
        ratio = r.get("vs_haproxy", {})
        vs = ", ".join(f"{key} {value:.2f}x" for key, value in ratio.items()) if r["proxy"] != BASELINE else "-"
        lines.append(f"{r['proxy']:<15} {r['load']:<11} {_cell(m, 'rps', 9)} {_cell(m, 'p99_us', 8)} "
                     f"{_cell(m, 'cpu_us_per_req', 10, 1)} {_cell(m, 'mb_s', 7)} {_cell(m, 'cpu_ms_per_mib', 10, 2)}"
                     "   " + (r.get("error") or vs))
    return "\n".join(lines)


def main(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    import json

    def say(text: str) -> None:
        print(text, file=err, flush=True)

    kinds = [k for k in PROXIES if not k.startswith("haproxy") or haproxy_path() is not None]
    if haproxy_path() is None:
        say("haproxy is not installed: pysock's proxies alone (apt-get install haproxy to compare)")
    base = QUICK if args.quick else Plan()
    plan = Plan(duration=args.duration or base.duration, reps=args.reps or base.reps, warmup=base.warmup,
                stream_mib=args.stream_mib or base.stream_mib)
    report = measure(kinds, plan, say)
    if args.json:
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        print(table(report), file=out)
    return 0 if all(r.get("ok", False) for r in report["results"]) else 1
