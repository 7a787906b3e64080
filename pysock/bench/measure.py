"""``pysock bench``: the C backend against the pure-Python twins, measured.
This is the measuring half (servers, loads, processes, pinning, CPU time);
pysock.bench.report turns what it measures into medians, a table and a plot.

Each server runs in a process of its own (``python -m pysock serve``), one
after another, under the same loads from the C load generator
(pysock.bench.loadgen), which runs in this process.  With two or more CPUs the
server and the load generator are pinned to different ones.  Besides what
the load generator sees (requests/s, latency, MB/s), the server process's
own CPU time (user + system, from /proc) is read before and after each run:
on a shared machine that figure is steadier than requests/s, and it is the
honest cost of the server.

A run with a bad reply or a dropped connection is marked failed and left out
of the medians.  Adding a server to compare is one line in SERVERS; a load
is one line in LOADS."""
from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, TextIO, TypeVar

from pysock.bench import affinity
from pysock.bench.report import (
    FORMATS,
    Json,
    add_ratios,
    check_plot_available,
    compare,
    failed_runs,
    load_report,
    medians,
    plot,
)
from pysock.config import default_model, model_available, uring_refused
from pysock.errors import ConfigError, PysockError
from pysock.urls import parse_url

# A model of "the backend as it comes": its default, found out when a run
# needs it (so that importing this module loads no C and probes no kernel).
AS_IT_COMES = "default"


@dataclass(frozen=True)
class BenchServer:
    """A server to measure: a backend, its model per protocol (None: it
    does not serve that protocol; AS_IT_COMES: the backend's default), and
    any further ``pysock serve`` options."""

    name: str
    backend: str
    tcp: str | None
    udp: str | None
    options: tuple[str, ...] = ()
    default: bool = True  # in a run that names no --servers
    python: str | None = None  # another interpreter (--python): its path; None: this one
    reference: bool = False  # the plainest server of its kind (references.py): tcp/udp name the kind

    def model(self, proto: str) -> str | None:
        model = self.tcp if proto == "tcp" else self.udp
        return default_model(self.backend, proto) if model == AS_IT_COMES else model

    def missing(self) -> str | None:
        """Why it cannot run here (an optional package), or None."""
        if self.python is not None:
            return None  # checked when the interpreter was added (interpreter_servers)
        for model in (self.model("tcp"), self.model("udp")):
            if model is not None and not model_available(model):
                return f"{model} is not installed"
            if self.backend == "c" and model == "uring" and uring_refused() is not None:
                return f"model 'uring' cannot run here: {uring_refused()}"
        return None


SERVERS = (
    BenchServer("c", "c", tcp=AS_IT_COMES, udp="loop"),  # the C backend as it comes
    BenchServer("c-threads", "c", tcp="threads", udp=None),
    BenchServer("c-epoll", "c", tcp="epoll", udp=None, default=False),
    BenchServer("c-uring", "c", tcp="uring", udp="uring"),
    BenchServer("c-spin50", "c", tcp="epoll", udp="loop", options=("--spin", "50"), default=False),
    BenchServer("c-workers2", "c", tcp="epoll", udp="loop", options=("--workers", "2"), default=False),
    BenchServer("python-loop", "python", tcp="loop", udp="loop"),
    BenchServer("python-threads", "python", tcp="threads", udp=None),
    BenchServer("python-asyncio", "python", tcp="asyncio", udp="asyncio"),
    BenchServer("python-uvloop", "python", tcp="uvloop", udp="uvloop"),
    # The plainest server of each kind (pysock/bench/references.py), to
    # measure pysock's engines against: no limits, counters, stop or log.
    BenchServer("ref-c", "c", tcp="c", udp="c", reference=True),
    BenchServer("ref-loop", "python", tcp=None, udp="loop", reference=True),
    BenchServer("ref-threads", "python", tcp="threads", udp=None, reference=True),
    BenchServer("ref-asyncio", "python", tcp="asyncio", udp="asyncio", reference=True),
    BenchServer("ref-uvloop", "python", tcp="uvloop", udp="uvloop", reference=True),
)
BASELINE = "c"

# What --python asks another interpreter: what it is, and which of pysock's
# servers it can run (the twins need only the standard library; uvloop and
# the C backend need a package and a build of their own for it).
_PROBE = """
import importlib, json, platform, sys
def can(name):
    try:
        importlib.import_module(name)  # found is not enough: the C extension needs cffi there too
        return True
    except Exception:
        return False
print(json.dumps({"impl": platform.python_implementation(), "version": platform.python_version(),
                  "twins": can("pysock.engines.twins"), "uvloop": can("uvloop"), "c": can("pysock._pysock")}))
"""


def child_env() -> dict[str, str]:
    """The environment for a child interpreter: this pysock first on its
    path (a checkout's, when that is what runs here)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@functools.cache
def _probe(path: str, command: str) -> dict[str, Any]:
    """What the interpreter at path is and can run (asked once per run:
    checking --python and measuring both need it)."""
    out = None
    try:
        out = subprocess.run([path, "-c", _PROBE], capture_output=True, text=True, timeout=60, env=child_env())
        info: dict[str, Any] = json.loads(out.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        said = out.stderr.strip().splitlines()[-1:] if out is not None else []
        raise ConfigError(f"{command} does not run as a Python: {said[0] if said else exc}") from None
    return info


def interpreter_servers(command: str, chosen: Sequence[BenchServer] = SERVERS) -> list[BenchServer]:
    """The chosen servers another interpreter (a command on PATH, or a path)
    can run: the Python twins, and the C ones if pysock's extension is built
    for it, named SERVER@IMPL-VERSION (python-asyncio@pypy-3.9)."""
    path = shutil.which(command)
    if path is None:
        raise ConfigError(f"no interpreter {command!r} on PATH")
    info = _probe(path, command)
    if not info["twins"]:
        raise ConfigError(f"{command} cannot import pysock.engines.twins (a Python 3.9 or later is needed)")
    label = f"{'pypy' if info['impl'] == 'PyPy' else 'cpython'}-{'.'.join(info['version'].split('.')[:2])}"
    servers = []
    for base in chosen:
        runs = info["c"] if base.backend == "c" else base.tcp != "uvloop" or info["uvloop"]
        if runs and base.python is None:
            servers.append(BenchServer(f"{base.name}@{label}", base.backend, tcp=base.tcp, udp=base.udp,
                                       options=base.options, python=path, reference=base.reference))
    return servers


@dataclass(frozen=True)
class Load:
    """conns connections (sockets) of size-byte ping-pong, or (mib > 0) a
    stream of mib MiB sent and echoed back over one connection."""

    name: str
    proto: str
    conns: int
    size: int = 0
    mib: int = 0
    spin: bool = False     # the load generator busy-polls: latency is the server's alone
    default: bool = True   # in a run that names no --loads

    @property
    def stream(self) -> bool:
        return self.mib > 0

    def describe(self, plan: Plan) -> str:
        if self.stream:
            return f"TCP stream of {plan.stream_mib or self.mib} MiB, echoed back"
        what = "connection" if self.proto == "tcp" else "socket"
        plural = "s" if self.conns > 1 else ""
        spin = ", the load generator busy-polling" if self.spin else ""
        return f"{self.proto.upper()} ping-pong, {self.conns} {what}{plural} x {_size(self.size)}{spin}"


LOADS = (
    Load("tcp-1x64", "tcp", 1, 64),
    Load("tcp-32x1k", "tcp", 32, 1024),
    Load("tcp-32x16k", "tcp", 32, 16384),
    Load("udp-1x64", "udp", 1, 64),
    Load("udp-32x1k", "udp", 32, 1024),
    Load("tcp-stream", "tcp", 1, mib=256),
    Load("tcp-1x64-spin", "tcp", 1, 64, spin=True, default=False),
    Load("udp-1x64-spin", "udp", 1, 64, spin=True, default=False),
)


@dataclass(frozen=True)
class Plan:
    duration: float = 1.0      # seconds per ping-pong run
    reps: int = 5              # measured runs per server and load
    warmup: float = 0.5        # seconds of unmeasured ping-pong first
    timeout: float = 0.2       # UDP resend; wait for replies in flight at the end
    stream_mib: int = 0        # 0: each stream load's own size
    stream_timeout: float = 10.0
    syscalls: bool = False     # one more run per server and load under strace -f


FULL = Plan()
QUICK = Plan(duration=0.25, reps=1, warmup=0.1, stream_mib=16)

_READY_TIMEOUT = 20.0
_STOP_TIMEOUT = 5.0


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n >= 1024 and n % 1024 == 0 else f"{n} B"



Cpus = tuple[Optional[int], Optional[int]]  # the server's CPU and the load generator's (None: any)
class Named(Protocol):
    """A server or a load: what --servers and --loads pick by."""

    @property
    def name(self) -> str: ...

    @property
    def default(self) -> bool: ...


T = TypeVar("T", bound=Named)

# -- choosing ------------------------------------------------------------------
def select_named(items: Sequence[T], names: str | None, what: str) -> list[T]:
    """The items named in a comma-separated list (the default ones when
    names is None)."""
    if names is None:
        return [item for item in items if item.default]
    known = {item.name: item for item in items}
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in known:
            raise ConfigError(f"unknown {what} {name!r}: choose from {', '.join(known)}")
        chosen.append(known[name])
    if not chosen:
        raise ConfigError(f"no {what} chosen")
    return chosen


def cpu_pair() -> Cpus:
    """(server CPU, load generator CPU), or (None, None) with a single CPU."""
    allowed = sorted(affinity.get())
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def machine() -> Json:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpus_allowed": len(affinity.get()), "cpu": model,
            "python": platform.python_version(), "system": f"{platform.system()} {platform.release()}"}


# -- the server's process -----------------------------------------------------------
def process_cpu_seconds(pid: int) -> float:
    """CPU time of a whole process (every thread, living or ended), to the
    nanosecond: the process's CPU-time clock (clock_getcpuclockid(3)).
    /proc/PID/stat counts in 10 ms ticks, so a short run could read 0."""
    clock = _cpu_clock(pid)
    if clock is not None:
        return time.clock_gettime(clock)
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _cpu_clock(pid: int) -> int | None:
    """The clock id of pid's CPU time, or None where libc has no
    clock_getcpuclockid (or refuses: another user's process)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        clock = ctypes.c_int()
        if libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return clock.value


def context_switches(pid: int) -> dict[int, int]:
    """Each thread's context switches so far (voluntary: it waited;
    involuntary: the scheduler took the CPU), from /proc/PID/task/*/status.
    A thread that has ended is gone from there."""
    out: dict[int, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue  # it ended meanwhile
        out[int(tid)] = sum(int(line.split()[1]) for line in text.splitlines() if "ctxt_switches" in line)
    return out


def switches_between(before: dict[int, int], after: dict[int, int]) -> int:
    """Context switches of the threads alive at the end, since the start
    (or since they began)."""
    return sum(n - before.get(tid, 0) for tid, n in after.items())


class ServerProcess:
    """``python -m pysock serve 0 --PROTO ...`` on 127.0.0.1, started on
    cpu, its ready line read.  extra: more serve options (a reference
    server, which has none, ignores them)."""

    def __init__(self, server: BenchServer, proto: str, cpu: int | None, extra: Sequence[str] = ()) -> None:
        model = server.model(proto)
        if model is None:
            raise ConfigError(f"{server.name} serves no {proto}")
        if server.reference:
            args = [server.python or sys.executable, "-m", "pysock.bench.references", model, proto]
        else:
            args = [server.python or sys.executable, "-m", "pysock", "serve", "0", f"--{proto}",
                    "--backend", server.backend, "--model", model, *server.options, *extra]
        self.spawn(args, cpu)
        try:
            self.address = self._ready(proto)
        except BaseException:
            self.stop()
            raise

    def spawn(self, args: Sequence[str], cpu: int | None, pass_fds: Sequence[int] = ()) -> None:
        """Start args on cpu (None: any), its stderr kept for errors()."""
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - the server's stderr, closed in close()
        mask = affinity.get()
        if cpu is not None:
            affinity.set_to({cpu})  # the child inherits it, and its threads
        try:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=self.stderr, env=child_env(), pass_fds=tuple(pass_fds))
        finally:
            affinity.set_to(mask)

    def _ready(self, proto: str) -> tuple[str, int]:
        assert self.proc.stdout is not None  # Popen(stdout=PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], _READY_TIMEOUT)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        try:
            scheme, address = parse_url(line)
        except ValueError:
            scheme, address = "", ""
        if scheme != proto or isinstance(address, str):
            said = self.errors() or "nothing on stderr"
            raise PysockError(f"the server did not start ({line or 'no ready line'}): {said}")
        return address

    def errors(self) -> str:
        """The last line the server wrote on stderr, or ''."""
        self.stderr.seek(0)
        text = self.stderr.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else ""

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.proc.pid)

    def switches(self) -> dict[int, int]:
        return context_switches(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(_STOP_TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- measuring ---------------------------------------------------------------------
def _one_run(proc: ServerProcess, load: Load, plan: Plan, duration: float, mib: int) -> Json:
    from pysock.bench import loadgen

    switched = proc.switches()
    before = proc.cpu_seconds()
    if load.stream:
        r = loadgen.bulk(proc.address, mib << 20, conns=load.conns, timeout=plan.stream_timeout)
    else:
        r = loadgen.pingpong(proc.address, load.proto, conns=load.conns, size=load.size,
                             duration=duration, timeout=plan.timeout, spin=load.spin)
    cpu = proc.cpu_seconds() - before
    ctx = switches_between(switched, proc.switches())
    run: Json = {"ok": r.ok, "requests": r.requests, "bad": r.bad, "lost": r.lost, "late": r.late,
           "failed": r.failed, "seconds": r.seconds, "mb_s": r.mb_per_s, "cpu_s": cpu}
    if load.stream:
        run["cpu_ms_per_mib"] = cpu * 1e3 / (r.bytes_in / (1 << 20)) if r.bytes_in else None
        run["ctx_per_mib"] = ctx / (r.bytes_in / (1 << 20)) if r.bytes_in else None
    else:
        run.update(rps=r.rps, p50_us=r.p50_us, p99_us=r.p99_us,
                   cpu_us_per_req=cpu * 1e6 / r.requests if r.requests else None,
                   ctx_per_req=ctx / r.requests if r.requests else None)
    return run


STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def strace_available() -> bool:
    return shutil.which("strace") is not None


def traced_run(proc: ServerProcess, load: Load, plan: Plan, mib: int) -> Json:
    """One more run with the server under strace -c -f (every thread, those
    that end included): its system calls per request (per MiB for a
    stream), in all and by call.  Tracing slows the server many times
    over, so nothing of this run is timed."""
    from pysock.bench import loadgen

    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(proc.proc.pid)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # attached to every thread
        if load.stream:
            r = loadgen.bulk(proc.address, min(mib, 16) << 20, conns=load.conns, timeout=plan.stream_timeout * 4)
            units = r.bytes_in / (1 << 20)
        else:
            r = loadgen.pingpong(proc.address, load.proto, conns=load.conns, size=load.size,
                                 duration=plan.duration, timeout=max(plan.timeout, 1.0), spin=load.spin)
            units = r.requests
    finally:
        tracer.send_signal(signal.SIGINT)
        _, summary = tracer.communicate(timeout=30)
    calls = {}
    for line in summary.splitlines():
        m = STRACE_ROW.match(line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    if not units or not calls:
        return {"per_unit": None, "calls": {}, "error": summary.strip().splitlines()[-1:] or ["no output"]}
    top = sorted(calls.items(), key=lambda kv: -kv[1])
    return {"per_unit": sum(calls.values()) / units, "calls": {k: n / units for k, n in top}}


def _new_entry(server: BenchServer, load: Load) -> Json:
    entry: Json = {"server": server.name, "backend": server.backend, "model": server.model(load.proto),
             "load": load.name, "runs": [], "status": "ok"}
    if server.model(load.proto) is None:
        entry["status"] = "n/a"
    elif server.missing():
        entry.update(status="n/a", error=server.missing())
    return entry


def _give_up(entry: Json, exc: Exception, say: Callable[[str], None]) -> None:
    entry["status"] = "error"
    entry["error"] = str(exc)
    say(f"  {entry['server']:<16} error: {exc}")


def _finish(entry: Json) -> None:
    if entry["status"] != "ok":
        return
    entry["failed_runs"] = sum(1 for r in entry["runs"] if not r.get("ok"))
    entry["median"] = medians(entry["runs"])
    if entry["failed_runs"] == len(entry["runs"]):
        entry["status"] = "failed"


def measure_load(servers: Sequence[BenchServer], load: Load, plan: Plan, cpus: Cpus,
                 say: Callable[[str], None]) -> list[Json]:
    """Every server under one load: a process each, a warm-up each, then
    plan.reps rounds in which the servers take turns (run 1 of each, run 2
    of each, ...).  Only one server is under load at a time; taking turns
    spreads a burst of noise from elsewhere on the machine over them all
    instead of one server's block of runs."""
    entries = [_new_entry(s, load) for s in servers]
    live = []
    mib = plan.stream_mib or load.mib
    interrupted = False
    try:
        for server, entry in zip(servers, entries):
            if entry["status"] == "ok":
                try:
                    live.append((server, entry, ServerProcess(server, load.proto, cpus[0])))
                except (PysockError, OSError) as exc:
                    _give_up(entry, exc, say)
        for _, entry, proc in live:
            try:
                _one_run(proc, load, plan, plan.warmup, min(mib, 16))
            except OSError as exc:
                _give_up(entry, exc, say)
        for i in range(plan.reps):
            for server, entry, proc in live:
                if entry["status"] != "ok":
                    continue
                try:
                    run = _one_run(proc, load, plan, plan.duration, mib)
                except OSError as exc:
                    run = {"ok": False, "error": str(exc)}
                entry["runs"].append(run)
                say(f"  {server.name:<16} run {i + 1}/{plan.reps}: {_brief(run, load)}")
                if not proc.alive():
                    _give_up(entry, PysockError(f"the server exited: {proc.errors() or 'nothing on stderr'}"), say)
        for server, entry, proc in live:
            if plan.syscalls and entry["status"] == "ok":
                entry["syscalls"] = traced_run(proc, load, plan, mib)
                say(f"  {server.name:<16} under strace: {_brief_calls(entry['syscalls'], load)}")
    except KeyboardInterrupt:
        interrupted = True  # keep what was measured: the caller reports it
    finally:
        for _, _, proc in live:
            proc.stop()
    for entry in entries:
        _finish(entry)
    if interrupted:
        raise Interrupted(entries)
    return entries


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a load; entries holds what was measured of it."""

    def __init__(self, entries: list[Json]) -> None:
        super().__init__()
        self.entries = entries


def measure(server: BenchServer, load: Load, plan: Plan, cpus: Cpus, say: Callable[[str], None]) -> Json:
    """One server under one load (see measure_load)."""
    return measure_load([server], load, plan, cpus, say)[0]


def _brief_calls(traced: Json, load: Load) -> str:
    if traced["per_unit"] is None:
        return f"no count ({traced['error'][0]})"
    unit = "MiB" if load.stream else "request"
    return f"{traced['per_unit']:.3g} system calls per {unit}"


def _brief(run: Json, load: Load) -> str:
    if "error" in run:
        return f"FAILED: {run['error']}"
    status = "" if run["ok"] else f"  FAILED: {run['bad']} bad, {run['failed']} dropped"
    if load.stream:
        return f"{run['mb_s']:.0f} MB/s, server CPU {run['cpu_s']:.2f} s{status}"
    cpu = run["cpu_us_per_req"]
    cpu_text = f"{cpu:.1f} us/req" if cpu is not None else "-"
    return f"{run['rps']:.0f} req/s, server CPU {cpu_text}, lost {run['lost']}{status}"


def run_bench(servers: list[BenchServer], loads: list[Load], plan: Plan, say: Callable[[str], None]) -> Json:
    cpus = cpu_pair()
    mask = affinity.get()
    if cpus[1] is not None:
        affinity.set_to({cpus[1]})
        say(f"server on CPU {cpus[0]}, load generator on CPU {cpus[1]}")
    else:
        say("one CPU: server and load generator share it (not pinned)")
    results: list[Json] = []
    done: list[Load] = []
    interrupted = False
    try:
        for n, load in enumerate(loads, 1):
            say(f"[{n}/{len(loads)}] {load.name}: {load.describe(plan)}")
            try:
                results.extend(measure_load(servers, load, plan, cpus, say))
            except Interrupted as exc:
                results.extend(exc.entries)
                interrupted = True
            done.append(load)
            if interrupted:
                break
    except KeyboardInterrupt:
        interrupted = True  # between loads
    finally:
        affinity.set_to(mask)
    add_ratios(results, BASELINE)
    return {"machine": machine(), "pinned": {"server": cpus[0], "loadgen": cpus[1]},
            "plan": asdict(plan), "baseline": BASELINE, "interrupted": interrupted,
            "servers": [asdict(s) for s in servers],
            "loads": [dict(asdict(load), description=load.describe(plan)) for load in done],
            "results": results}


EXIT_INTERRUPTED = 130


def main(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The bench command: measure, print the table (or JSON, CSV, Markdown),
    maybe compare with a saved run and plot.  Returns 1 when a run failed (a
    bad reply or a dropped connection), 130 after Ctrl-C (what was measured
    until then is printed all the same)."""
    chosen = select_named(SERVERS, args.servers, "server")
    others = [s for command in getattr(args, "python", None) or [] for s in interpreter_servers(command, chosen)]
    # Each server's runs under other interpreters come right after its own:
    # what the machine's load does meanwhile hits the pair alike.
    servers = [s for base in chosen for s in [base] + [o for o in others if o.name.split("@")[0] == base.name]]
    loads = select_named(LOADS, args.loads, "load")
    old = load_report(args.compare) if args.compare else None
    if args.plot:
        check_plot_available()
    base = QUICK if args.quick else FULL
    plan = Plan(duration=args.duration or base.duration, reps=args.reps or base.reps, warmup=base.warmup,
                timeout=base.timeout, stream_mib=args.stream_mib or base.stream_mib,
                stream_timeout=base.stream_timeout, syscalls=bool(getattr(args, "syscalls", False)))

    def say(text: str) -> None:
        print(text, file=err, flush=True)

    started = time.monotonic()
    report = run_bench(servers, loads, plan, say)
    report["command"] = " ".join(["pysock", *sys.argv[1:]])
    report["seconds"] = round(time.monotonic() - started, 1)
    if report["interrupted"]:
        say(f"interrupted after {report['seconds']:.0f} s: what was measured so far")
    else:
        say(f"done in {report['seconds']:.0f} s")
    fmt = "json" if args.json else args.format
    if fmt == "json":
        json.dump(report, out, indent=2)
        out.write("\n")
    else:
        print(FORMATS[fmt](report), file=out)
    if old is not None and fmt != "json":
        print("\n" + compare(report, old), file=out)
    if args.plot and report["results"]:
        plot(report, args.plot)
        say(f"plot written to {args.plot}")
    if report["interrupted"]:
        return EXIT_INTERRUPTED
    bad = failed_runs(report)
    if bad:
        say(f"pysock: error: {bad} run(s) failed (a bad reply or a dropped connection): see the table")
        return 1
    return 0
