"""Measuring what a client can make a server hold in its own memory: the
server in a process of its own (its resident memory is its alone), clients
that burst or never read, and the figures settled before they are read.
For the contract's memory bounds (test_contract.py) and the same bounds
under faults (test_faults_memory.py)."""
from __future__ import annotations

import json
import os
import platform
import selectors
import socket
import subprocess
import sys
import time

import pytest
from support import LOCALHOST, cli_env

MEM_CONNS = 200
MEM_MAX_UNSENT = 256 << 10
IDLE_BOUND = 128 << 10                       # an idle connection after a burst
NEVER_READS_BOUND = MEM_MAX_UNSENT + (128 << 10)  # a client that never reads


class ServerProcess:
    """A server in a process of its own, so that its resident memory is its
    alone: it prints its address, then answers each line on its stdin with
    its counters (JSON)."""

    CODE = ("import gc, json, sys, pysock\n"
            "faults = json.loads(sys.argv[3])\n"
            "srv = pysock.Server('127.0.0.1', 0, sys.argv[2], **json.loads(sys.argv[1]),\n"
            "                    faults=pysock.Faults(**faults) if faults else None).start()\n"
            "print(srv.port, flush=True)\n"
            "for line in sys.stdin:\n"
            "    if line == 'collect\\n':\n"
            "        gc.collect()\n"
            "    elif line.startswith('faults '):\n"
            "        srv.set_faults(pysock.Faults(**json.loads(line[7:])))\n"
            "    print(json.dumps(srv.stats.__dict__), flush=True)\n"
            "srv.stop()\n")

    def __init__(self, options: dict, proto: str = "tcp", faults: dict | None = None) -> None:
        self.workers = options.get("workers", 1)
        env = cli_env()
        if platform.python_implementation() == "PyPy":
            # PyPy frees a large object with free() in whichever thread
            # collects, and glibc keeps what each of 200 threads freed in its
            # own arena (8 per core): docs/contract.md, "Where engines differ".
            env.setdefault("MALLOC_ARENA_MAX", "2")
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, json.dumps(options), proto,
                                      json.dumps(faults or {})], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        self.address = (LOCALHOST, int(self.proc.stdout.readline()))

    def set_faults(self, faults: dict) -> None:
        self.proc.stdin.write(f"faults {json.dumps(faults)}\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def stats(self) -> dict:
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def collect(self) -> None:
        """Garbage goes now: CPython frees it at once (reference counts);
        PyPy lets its heap grow to 1.82 times the live data before a major
        collection (PYPY_GC_MAJOR_COLLECT), and that slack is not what a
        client holds."""
        self.proc.stdin.write("collect\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def rss(self) -> int:
        self.collect()
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.stdout.close()


class ProxyProcess(ServerProcess):
    """A proxy in a process of its own, in front of upstream: the same
    protocol on its stdin (stats, collect)."""

    CODE = ("import gc, json, sys, pysock\n"
            "faults, up = (json.loads(a) for a in sys.argv[3:5])\n"
            "px = pysock.Proxy(sys.argv[2], **json.loads(sys.argv[1]),\n"
            "                  faults=pysock.Faults(**faults) if faults else None,\n"
            "                  faults_up=pysock.Faults(**up) if up else None).start()\n"
            "print(px.port, flush=True)\n"
            "for line in sys.stdin:\n"
            "    if line == 'collect\\n':\n"
            "        gc.collect()\n"
            "    elif line.startswith('faults '):\n"
            "        down, up = (pysock.Faults(**f) if f else None for f in json.loads(line[7:]))\n"
            "        px.set_faults(down, up)\n"
            "    print(json.dumps(px.stats.__dict__), flush=True)\n"
            "px.stop()\n")

    def set_faults(self, faults: dict, faults_up: dict | None = None) -> None:
        self.proc.stdin.write(f"faults {json.dumps([faults, faults_up or {}])}\n")
        self.proc.stdin.flush()
        self.proc.stdout.readline()

    def __init__(self, options: dict, upstream: str, faults: dict | None = None,
                 faults_up: dict | None = None) -> None:
        self.workers = 1
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, json.dumps(options), upstream,
                                      json.dumps(faults or {}), json.dumps(faults_up or {})],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=cli_env())
        self.address = (LOCALHOST, int(self.proc.stdout.readline()))


def settled(read, still: float = 0.5, timeout: float = 60.0):
    """read() once it has not changed for `still` seconds."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() - since < still:
        assert time.monotonic() < deadline, f"still changing after {timeout} s"
        time.sleep(0.1)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
    return last


def burst(conns: list, data: bytes, reply_len: int) -> None:
    """Each connection sends data and reads its whole reply, all at once."""
    left = {c: reply_len for c in conns}
    with selectors.DefaultSelector() as sel:
        for c in conns:
            c.sendall(data)
            c.setblocking(False)
            sel.register(c, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while left:
            assert time.monotonic() < deadline, f"{len(left)} replies unfinished"
            for key, _ in sel.select(1):
                chunk = key.fileobj.recv(1 << 20)
                assert chunk, "the server closed a connection mid-burst"
                left[key.fileobj] -= len(chunk)
                if left[key.fileobj] <= 0:
                    sel.unregister(key.fileobj)
                    del left[key.fileobj]


def flood_until_the_server_stops_reading(server: ServerProcess, conns: list, chunk: bytes) -> None:
    """Offer data on every connection, reading nothing, until the server has
    taken nothing more for a second."""
    for c in conns:
        c.setblocking(False)

    def offer() -> int:
        for c in conns:
            try:
                c.send(chunk)
            except BlockingIOError:
                pass
        return server.stats()["bytes_in"]

    settled(offer, still=1.0, timeout=90)


# Under AddressSanitizer (.ci/sanitize) resident memory is its allocator's:
# freed blocks wait in a quarantine and every block carries redzones.
SANITIZED = pytest.mark.skipif(os.environ.get("PYSOCK_SANITIZED") == "1",
                               reason="resident memory under AddressSanitizer is its allocator's "
                                      "(quarantine, redzones): measured in the plain run")


def never_reading_clients(address: tuple[str, int], n: int) -> list[socket.socket]:
    """n connections that will never read: a 4 KiB receive buffer, so the
    echo backs up at once.  Small segments keep the server's kernel send
    buffer small (it grows with the segment size), so the echo reaches the
    server after a few KiB instead of 4 MiB per connection; and a small send
    buffer keeps what the flood leaves in this side's kernel small: tests
    run side by side, and the whole machine's TCP memory has a pressure
    limit (tcp_mem) past which every connection stalls."""
    conns = []
    for _ in range(n):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
        c.connect(address)
        conns.append(c)
    return conns
