"""The C load generator: it must catch every wrong reply, count what never
comes back, and always return.  (Smoke runs for correctness; speed is the
benchmarks' business, never asserted here.)"""
from __future__ import annotations

import socket
import threading
import time

import pytest

import pysock
from pysock.bench import loadgen


@pytest.fixture
def c_tcp():
    with pysock.Server("127.0.0.1", 0, "tcp") as srv:
        yield srv


@pytest.fixture
def c_udp():
    with pysock.Server("127.0.0.1", 0, "udp") as srv:
        yield srv


def _sane(r: loadgen.LoadResult) -> None:
    assert r.ok and r.bad == 0 and r.failed == 0
    assert r.requests > 0
    assert 0 < r.p50_us <= r.p99_us <= r.max_us * 1.02  # histogram buckets: within 2 %


@pytest.mark.parametrize("conns, size", [(1, 64), (8, 1024), (4, 100_000)])
def test_tcp_pingpong_against_the_c_server(c_tcp, conns, size):
    r = loadgen.pingpong(c_tcp.address, "tcp", conns=conns, size=size, duration=0.3)
    _sane(r)
    assert r.lost == 0
    assert r.bytes_in >= r.requests * size
    assert c_tcp.stats.bytes_in >= r.bytes_in  # the server saw every byte it echoed


@pytest.mark.parametrize("conns, size", [(1, 64), (8, 1024), (2, 65507)])
def test_udp_pingpong_against_the_c_server(c_udp, conns, size):
    r = loadgen.pingpong(c_udp.address, "udp", conns=conns, size=size, duration=0.3)
    _sane(r)  # loss is possible over UDP, even on loopback: counted, not asserted


def test_bulk_streams_come_back_whole(c_tcp):
    r = loadgen.bulk(c_tcp.address, 8 << 20, conns=3)
    assert r.ok and r.requests == 3 and r.lost == 0
    assert r.bytes_out == r.bytes_in == 3 * (8 << 20)
    assert r.seconds > 0 and r.mb_per_s > 0


def test_over_unix_sockets(tmp_path):
    path = str(tmp_path / "s")
    with pysock.Server(proto="tcp", path=path) as srv:
        _sane(loadgen.pingpong(srv.address, "tcp", conns=2, size=500, duration=0.2))
        assert loadgen.bulk(srv.address, 1 << 20).requests == 1
    with pysock.Server(proto="udp", path=path) as srv:
        _sane(loadgen.pingpong(srv.address, "udp", conns=2, size=500, duration=0.2))


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_replies_that_are_not_the_uppercase_are_bad(proto):
    with pysock.Server("127.0.0.1", 0, proto, transform="echo") as srv:
        r = loadgen.pingpong(srv.address, proto, conns=2, size=64, duration=0.2)
        assert r.bad > 0 and r.requests == 0 and not r.ok
        # ...and right when the load generator expects the echo unchanged.
        assert loadgen.pingpong(srv.address, proto, size=64, duration=0.2, transform="echo").ok


def test_bulk_catches_a_wrong_echo():
    with pysock.Server("127.0.0.1", 0, "tcp", transform="echo") as srv:
        r = loadgen.bulk(srv.address, 1 << 20)
    assert r.bad == 1 and r.requests == 0


def test_a_server_that_never_answers_costs_timeout_and_counts_lost():
    with socket.socket() as listener:  # listening, never accepting: the kernel connects us
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        address = listener.getsockname()
        r = loadgen.pingpong(address, "tcp", conns=3, size=64, duration=0.2, timeout=0.2)
        assert (r.requests, r.lost, r.bad) == (0, 3, 0)
        b = loadgen.bulk(address, 64 << 20, timeout=0.3)  # stalls once the buffers fill
        assert (b.requests, b.lost) == (0, 1)


def test_a_server_that_hangs_up_counts_failed():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        stop = threading.Event()

        def hang_up() -> None:
            listener.settimeout(0.05)
            while not stop.is_set():
                try:
                    listener.accept()[0].close()
                except socket.timeout:
                    pass

        thread = threading.Thread(target=hang_up)
        thread.start()
        try:
            r = loadgen.pingpong(listener.getsockname(), "tcp", conns=2, size=64, duration=0.2, timeout=0.2)
        finally:
            stop.set()
            thread.join(5)
    assert r.failed == 2 and r.requests == 0 and not r.ok


def test_udp_loss_is_counted_and_resent():
    """A peer that drops every other datagram: each drop is resent after the
    timeout and the run still gets its answers, none of them bad."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.settimeout(0.05)
        stop = threading.Event()

        def drop_every_other() -> None:
            n = 0
            while not stop.is_set():
                try:
                    data, addr = peer.recvfrom(65536)
                except socket.timeout:
                    continue
                n += 1
                if n % 2 == 0:
                    peer.sendto(data.upper(), addr)

        thread = threading.Thread(target=drop_every_other)
        thread.start()
        try:
            r = loadgen.pingpong(peer.getsockname(), "udp", conns=2, size=64, duration=0.5, timeout=0.02)
        finally:
            stop.set()
            thread.join(5)
    assert r.ok and r.requests > 0 and r.lost > 0


def test_runs_with_the_gil_released(c_tcp):
    counted = []

    def count() -> None:
        n = 0
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            n += 1
        counted.append(n)

    thread = threading.Thread(target=count)
    thread.start()
    loadgen.pingpong(c_tcp.address, "tcp", duration=0.4)
    thread.join(5)
    assert counted[0] > 1000


@pytest.mark.parametrize("kwargs, message", [
    ({"proto": "udp", "size": 8}, "size must be between 16"),
    ({"proto": "udp", "size": 70000}, "size must be between 16 and 65507"),
    ({"conns": 0}, "conns must be between 1"),
    ({"duration": 0}, "duration must be between"),
    ({"proto": "sctp"}, "unknown proto 'sctp'"),
    ({"transform": "reverse"}, "unknown transform 'reverse'"),
])
def test_bad_arguments_are_config_errors(kwargs, message):
    with pytest.raises(pysock.ConfigError, match=message):
        loadgen.pingpong(("127.0.0.1", 9), **kwargs)


def test_nobody_listening_is_an_oserror():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: refused
        with pytest.raises(ConnectionRefusedError):
            loadgen.pingpong(s.getsockname(), "tcp", duration=0.1)
