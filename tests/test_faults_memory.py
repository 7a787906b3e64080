"""The memory bound under faults, on every engine: a fault that holds
replies (latency, bandwidth, slices) counts what it holds against
max_unsent, records and buffers included, so a client that never reads
pins no more than without faults (docs/contract.md, "Faults on demand",
Memory).  The server's resident memory is read from /proc, the server in a
process of its own; -rP prints the figures."""
from __future__ import annotations

import socket
import time

import pytest
from memory import SANITIZED, ServerProcess, flood_until_the_server_stops_reading, never_reading_clients, settled
from support import wait_for

CONNS = 100
MAX_UNSENT = 256 << 10
BOUND = MAX_UNSENT + (128 << 10)  # the contract's, per client that never reads

# (faults, transform): what holds replies in each way the shapers do.
TCP_CASES = {
    "bandwidth-stamp": (dict(bandwidth=20_000), "stamp"),
    "bandwidth": (dict(bandwidth=20_000), "upper"),
    "slices": (dict(slice=100, slice_delay=0.01), "upper"),
    "latency": (dict(latency=3600.0), "upper"),
}


@SANITIZED
@pytest.mark.concurrent_clients
@pytest.mark.same_code_as_model("what a shaper holds is the model's per-connection code")
@pytest.mark.parametrize("case", [pytest.param(name, marks=[] if name == "bandwidth-stamp" else pytest.mark.slow)
                                  for name in TCP_CASES])
def test_a_client_that_never_reads_pins_no_more_under_faults(tcp_options, case, many_descriptors, request):
    faults, transform = TCP_CASES[case]
    unit = b"\n" if transform == "stamp" else b"x"
    server = ServerProcess(dict(tcp_options, transform=transform, max_unsent=MAX_UNSENT, send_timeout=0,
                                idle_timeout=0), faults=faults)
    conns: list[socket.socket] = []
    try:
        with socket.create_connection(server.address, timeout=10) as warm:  # what every server has anyway
            warm.sendall(b"warm")  # (its reply is held: not waited for)
        before = settled(server.rss)
        conns = never_reading_clients(server.address, CONNS)
        flood_until_the_server_stops_reading(server, conns, unit * 65536)
        pinned = (settled(server.rss) - before) / CONNS
        print(f"{request.node.callspec.id}: {pinned / 1024:.1f} KiB per client that never reads")
        assert pinned <= BOUND, f"{pinned / 1024:.0f} KiB per client that never reads, over {BOUND >> 10}"
    finally:
        for c in conns:
            c.close()
        server.close()


@SANITIZED
@pytest.mark.same_code_as_model("what a shaper holds is the model's per-socket code, per worker")
@pytest.mark.parametrize("size", [pytest.param(0, id="empty"), pytest.param(100, id="100B", marks=pytest.mark.slow)])
def test_held_datagrams_count_what_they_hold(udp_options, size, request):
    """Datagrams held by latency wait in at most max_unsent bytes per
    socket, each counted with its record (an empty datagram is not free);
    what does not fit is dropped and counted in errors."""
    limit = 64 << 10
    server = ServerProcess(dict(udp_options, max_unsent=limit), proto="udp", faults=dict(latency=30.0))
    try:
        before = settled(server.rss)
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            for _ in range(40):
                for _ in range(500):
                    s.sendto(b"d" * size, server.address)
                    sent += 1
                time.sleep(0.01)  # let the server keep up; what it cannot take, the kernel drops
        stats = wait_for(lambda: (s := server.stats())["datagrams"] >= sent * 0.5 and s, timeout=20)
        held = settled(server.rss) - before
        print(f"{request.node.callspec.id}: {held / 1024:.1f} KiB held for {stats['datagrams']} datagrams, "
              f"{stats['errors']} dropped")
        assert stats["errors"] > 0, stats  # the limit was reached
        assert held <= limit * server.workers + (256 << 10), f"{held / 1024:.0f} KiB held"
    finally:
        server.close()
