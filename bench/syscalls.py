"""System calls per request, per server: why one server costs less than another.

Each server runs in a process of its own (``python -m pysock serve 0``),
is warmed up, then traced with ``strace -c -f`` (every thread) while the C
load generator drives it; the calls strace counted, divided by the requests
answered, are the figure.  Tracing slows a server many times over, so the
times here mean nothing; the counts are exact.  Needs strace (Debian:
``apt-get install strace``) and permission to trace your own processes.

    python bench/syscalls.py                      # TCP 32 x 1 KiB, the C models and the twins
    python bench/syscalls.py --proto udp --conns 32 --size 1024
"""
from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import sys
import time

from pysock.config import available_models
from pysock.engine import parse_url
from pysock.loadgen import pingpong

SERVERS = {  # name: (backend, model) per protocol
    "tcp": [("c", "epoll"), ("c", "uring"), ("c", "threads"), ("python", "threads"),
            ("python", "asyncio"), ("python", "uvloop")],
    "udp": [("c", "loop"), ("c", "uring"), ("python", "loop"), ("python", "asyncio"),
            ("python", "uvloop")],
}
_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def serve(backend: str, model: str, proto: str) -> tuple[subprocess.Popen, tuple]:
    proc = subprocess.Popen([sys.executable, "-m", "pysock", "serve", "0", f"--{proto}",
                             "--backend", backend, "--model", model],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line:
        proc.kill()
        raise SystemExit(f"{backend} {model} did not start")
    return proc, parse_url(line)[1]


def count(pid: int, address: tuple, proto: str, conns: int, size: int, seconds: float) -> tuple:
    """(requests, {syscall: calls}) for one traced run."""
    tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # attached to every thread
    result = pingpong(address, proto, conns=conns, size=size, duration=seconds, timeout=2.0)
    tracer.send_signal(signal.SIGINT)
    _, summary = tracer.communicate(timeout=30)
    calls = {}
    for line in summary.splitlines():
        m = _ROW.match(line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return result.requests, calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if shutil.which("strace") is None:
        print("bench/syscalls.py needs strace (apt-get install strace)", file=sys.stderr)
        return 1
    print(f"{args.proto.upper()} ping-pong, {args.conns} x {args.size} B, under strace -c -f\n")
    print("| server | requests | system calls per request | the calls, per request |")
    print("|---|---|---|---|")
    for backend, model in SERVERS[args.proto]:
        if model not in available_models(backend, args.proto):
            print(f"| {backend} {model} | - | - | cannot run here |")
            continue
        proc, address = serve(backend, model, args.proto)
        try:
            pingpong(address, args.proto, conns=args.conns, size=args.size, duration=0.3)  # warm up
            requests, calls = count(proc.pid, address, args.proto, args.conns, args.size, args.seconds)
        finally:
            proc.terminate()
            proc.wait(10)
        total = sum(calls.values())
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:4]
        each = ", ".join(f"{name} {n / requests:.3g}" for name, n in top)
        print(f"| {backend} {model} | {requests:,} | {total / requests:.3f} | {each} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
