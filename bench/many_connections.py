"""10,000 concurrent TCP connections against one pysock server process.

    python bench/many_connections.py [-n 10000] [--model epoll] [--workers 1]

Starts one C server in a process of its own (127.0.0.1, a free port), opens
N connections to it and keeps them all open, sends a distinct message on
every one and checks every echo (twice), then reads the server's resident
memory (VmRSS in /proc/PID/status) while all N are open.  Exits 0 when every
echo was right and the server stayed under --max-rss MB, 1 otherwise, 2 when
this machine cannot open N connections (descriptor limit, ephemeral ports).

The tests keep a smaller version (a few hundred connections) for CI."""
from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SPARE_FDS = 64  # the interpreter's own files, pipes, the listening socket


class CannotRun(Exception):
    """This machine's limits forbid the run."""


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise CannotRun(f"{needed} descriptors needed, the hard limit (ulimit -Hn) is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def check_ephemeral_ports(n: int) -> None:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except OSError:
        return  # not Linux: connect() will say so if ports run out
    if high - low + 1 < n:
        raise CannotRun(f"{n} connections need {n} ephemeral ports, "
                        f"net.ipv4.ip_local_port_range has {high - low + 1}")


# -- the server process ----------------------------------------------------------
def serve(args: argparse.Namespace) -> None:
    """Child: serve, print the port, answer 'stats' lines on stdin; exit at EOF."""
    sys.path.insert(0, str(ROOT))
    import pysock

    raise_fd_limit(args.connections + SPARE_FDS)
    srv = pysock.Server(HOST, 0, "tcp", model=args.model, workers=args.workers,
                        max_conns=args.connections + 10, idle_timeout=0).start()
    print(srv.port, flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            print(json.dumps(srv.stats.__dict__), flush=True)
    srv.stop(timeout=5)


class ServerProcess:
    def __init__(self, args: argparse.Namespace) -> None:
        cmd = [sys.executable, __file__, "--serve", "-n", str(args.connections),
               "--model", args.model, "--workers", str(args.workers)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def stats(self) -> dict:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def memory_mb(self) -> dict:
        """VmRSS (now) and VmHWM (peak) of the server process, in MB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024  # kB
        return fields

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


# -- the clients -------------------------------------------------------------------
def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def open_all(port: int, n: int) -> list[socket.socket]:
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection((HOST, port), timeout=30))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def echo_round(socks: list[socket.socket], round_: int) -> int:
    """Send a distinct message on every connection, then read every echo;
    how many came back right."""
    messages = [b"round %d, connection %d\n" % (round_, i) for i in range(len(socks))]
    for s, m in zip(socks, messages):
        s.sendall(m)
    return sum(recv_exactly(s, len(m)) == m.upper() for s, m in zip(socks, messages))


def run(args: argparse.Namespace) -> int:
    check_ephemeral_ports(args.connections)
    raise_fd_limit(args.connections + SPARE_FDS)
    server = ServerProcess(args)
    socks: list[socket.socket] = []
    try:
        idle = server.memory_mb()["VmRSS"]
        start = time.monotonic()
        socks = open_all(server.port, args.connections)
        opened = time.monotonic() - start
        right = [echo_round(socks, r) for r in (1, 2)]
        stats = server.stats()
        mem = server.memory_mb()
    finally:
        for s in socks:
            s.close()
        server.stop()
    n = args.connections
    ok = right == [n, n] and stats["active"] == n and mem["VmRSS"] < args.max_rss
    print(f"server: C, model {args.model}, {args.workers} worker(s), pid {server.proc.pid}")
    print(f"connections: {n} opened in {opened:.1f} s, {stats['active']} open at the server at once")
    print(f"echoes right: {right[0]}/{n} (round 1), {right[1]}/{n} (round 2)")
    print(f"server VmRSS: {mem['VmRSS']:.1f} MB with {n} connections open "
          f"(idle before: {idle:.1f} MB; peak VmHWM {mem['VmHWM']:.1f} MB); limit {args.max_rss} MB")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--connections", type=int, default=10_000)
    p.add_argument("--model", default="epoll", help="the server's TCP model (default epoll)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--max-rss", type=float, default=64.0, help="MB the server may use (default 64)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args)
        return 0
    try:
        return run(args)
    except CannotRun as exc:
        print(f"many_connections: cannot run here: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
