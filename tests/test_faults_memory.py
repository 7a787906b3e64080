"""The memory bound under faults, on every engine: a fault that holds
replies (latency, bandwidth, slices) counts what it holds against
max_unsent, records and buffers included, so a client that never reads
pins no more than without faults (docs/contract.md, "Faults on demand",
Memory).  The server's resident memory is read from /proc, the server in a
process of its own; -rP prints the figures."""
from __future__ import annotations

import platform
import socket
import struct
import time

import pytest
from memory import SANITIZED, ServerProcess, flood_until_the_server_stops_reading, never_reading_clients, settled
from support import wait_for

CONNS = 100
WARM_CONNS = 16  # enough that each of two workers (SO_REUSEPORT) warms for its share
MAX_UNSENT = 256 << 10
BOUND = MAX_UNSENT + (128 << 10)  # the contract's, per client that never reads
# PyPy keeps garbage until a collection, and after one keeps the heap it
# grew to: a twin's resident memory there is the peak of its heap, not what
# it holds (docs/contract.md, "Where engines differ", says so and how much).
ON_PYPY = platform.python_implementation() == "PyPy"
PYPY_TWIN_FACTOR = 1.5
PYPY_TWIN_UDP_SLACK = 4 << 20  # and the machine code its JIT compiles for the path held replies take


def bound_for(options: dict) -> int:
    return int(BOUND * PYPY_TWIN_FACTOR) if ON_PYPY and options["backend"] == "python" else BOUND

# (faults, transform): what holds replies in each way the shapers do.
TCP_CASES = {
    "bandwidth-stamp": (dict(bandwidth=20_000), "stamp"),
    "bandwidth": (dict(bandwidth=20_000), "upper"),
    "slices": (dict(slice=100, slice_delay=0.01), "upper"),
    "latency": (dict(latency=3600.0), "upper"),
    # replies that fall due at once, to a client whose kernel buffers are
    # full: what waits is held by the server, and counted, not piled up
    # unbounded in a send buffer of its own
    "latency-short": (dict(latency=0.01), "upper"),
}


@SANITIZED
@pytest.mark.concurrent_clients
@pytest.mark.same_code_as_model("what a shaper holds is the model's per-connection code")
@pytest.mark.parametrize("case", [pytest.param(name, marks=[] if name == "bandwidth-stamp" else pytest.mark.slow)
                                  for name in TCP_CASES])
def test_a_client_that_never_reads_pins_no_more_under_faults(tcp_options, case, many_descriptors, request):
    faults, transform = TCP_CASES[case]
    unit = b"\n" if transform == "stamp" else b"x"
    # The warm-up's replies are held a moment only: a connection whose
    # replies wait an hour keeps them (and itself) that long.
    warm_faults = dict(faults, latency=min(faults.get("latency", 0.0), 0.05))
    server = ServerProcess(dict(tcp_options, transform=transform, max_unsent=MAX_UNSENT, send_timeout=0,
                                idle_timeout=0), faults=warm_faults)
    conns: list[socket.socket] = []
    try:
        # What every server has anyway, before the clients that count:
        # threads, buffers, and the code a JIT compiles for this very job
        # (PyPy's grows the process by megabytes once it has run a while).
        warm = never_reading_clients(server.address, WARM_CONNS)
        flood_until_the_server_stops_reading(server, warm, unit * 65536)
        for c in warm:  # reset: the server closes at once
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        wait_for(lambda: server.stats()["active"] == 0, timeout=20)
        server.set_faults(faults)
        before = settled(server.rss)
        conns = never_reading_clients(server.address, CONNS)
        flood_until_the_server_stops_reading(server, conns, unit * 65536)
        pinned = (settled(server.rss) - before) / CONNS
        print(f"{request.node.callspec.id}: {pinned / 1024:.1f} KiB per client that never reads")
        bound = bound_for(tcp_options)
        assert pinned <= bound, f"{pinned / 1024:.0f} KiB per client that never reads, over {bound >> 10}"
    finally:
        for c in conns:
            c.close()
        server.close()


def send_datagrams(address: tuple[str, int], size: int) -> int:
    """20,000 datagrams of size bytes, as fast as the server can take most
    of them (what it cannot, the kernel drops); how many were sent."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for _ in range(40):
            for _ in range(500):
                s.sendto(b"d" * size, address)
                sent += 1
            time.sleep(0.01)
    return sent


@SANITIZED
@pytest.mark.same_code_as_model("what a shaper holds is the model's per-socket code, per worker")
@pytest.mark.parametrize("size", [pytest.param(0, id="empty"), pytest.param(100, id="100B", marks=pytest.mark.slow)])
def test_held_datagrams_count_what_they_hold(udp_options, size, request):
    """Datagrams held by latency wait in at most max_unsent bytes per
    socket, each counted with its record (an empty datagram is not free);
    what does not fit is dropped and counted in errors."""
    limit = 64 << 10
    server = ServerProcess(dict(udp_options, max_unsent=limit), proto="udp", faults=dict(latency=0.01))
    try:
        # The same job first, each reply held a moment only: what every
        # server has anyway (and the code a JIT compiles for it).
        # (What a slow server cannot take, the kernel drops: whatever it
        # took, once the count stops, it has.)
        send_datagrams(server.address, size)
        settled(lambda: server.stats()["datagrams"])
        settled(lambda: server.stats()["bytes_out"])  # what was held has gone
        server.set_faults(dict(latency=30.0))
        before = settled(server.rss)
        send_datagrams(server.address, size)
        settled(lambda: server.stats()["datagrams"])
        stats = server.stats()
        held = settled(server.rss) - before
        print(f"{request.node.callspec.id}: {held / 1024:.1f} KiB held for {stats['datagrams']} datagrams, "
              f"{stats['errors']} dropped")
        assert stats["errors"] > 0, stats  # the limit was reached
        slack = PYPY_TWIN_UDP_SLACK if ON_PYPY and udp_options["backend"] == "python" else 256 << 10
        assert held <= limit * server.workers + slack, f"{held / 1024:.0f} KiB held"
    finally:
        server.close()
