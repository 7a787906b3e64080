"""The proxy's contract (docs/proxy.md), checked on every proxy engine:
bytes exact both ways, half-close in each direction, a refused or reset
upstream, limits, faults in both directions, stop in bounded time.  The
upstream is a real server on 127.0.0.1 (or a unix path in a temp dir)."""
from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest
from memory import SANITIZED, ProxyProcess, flood_until_the_server_stops_reading, never_reading_clients, settled
from support import LOCALHOST, read_exactly, read_to_end, wait_for

import pysock
from pysock.config import model_available
from pysock.errors import ConfigError
from pysock.faults import Corrupter, spared

SLACK = 5.0  # seconds: an upper bound only a hang would pass
MEMORY_CONNS = 24
MEMORY_MAX_UNSENT = 256 << 10
MEMORY_BOUND = MEMORY_MAX_UNSENT + (128 << 10)  # per direction, as an echo server's client

PROXY_ENGINES = [
    pytest.param({"backend": "c"}, id="c-epoll"),
    pytest.param({"backend": "python", "model": "asyncio"}, id="python-asyncio"),
    pytest.param({"backend": "python", "model": "uvloop"}, id="python-uvloop",
                 marks=pytest.mark.skipif(not model_available("uvloop"), reason="uvloop is not installed")),
]
DGRAM_ENGINES = PROXY_ENGINES


@pytest.fixture(params=PROXY_ENGINES)
def engine(request) -> dict:
    return request.param


@pytest.fixture
def echo():
    """The upstream: an echo server that sends back exactly what it gets."""
    with pysock.Server(LOCALHOST, 0, transform="echo") as srv:
        yield srv


def connect(px: pysock.Proxy) -> socket.socket:
    return socket.create_connection(px.address, timeout=SLACK)


def exchange(px: pysock.Proxy, payload: bytes) -> bytes:
    """Send payload, half-close, read to the end: what came back."""
    with connect(px) as s:
        sender = threading.Thread(target=lambda: (s.sendall(payload), s.shutdown(socket.SHUT_WR)))
        sender.start()
        got = read_to_end(s)
        sender.join(SLACK)
    return got


# -- bytes -------------------------------------------------------------------------
def test_bytes_pass_exactly_both_ways(engine, echo):
    payload = os.urandom(3 << 20)
    with pysock.Proxy(echo.url, **engine) as px:
        assert exchange(px, payload) == payload
        wait_for(lambda: px.stats.active == 0)
        stats = px.stats
    assert (stats.accepted, stats.bytes_in, stats.bytes_out, stats.errors) == (1, len(payload), len(payload), 0)


def test_many_clients_at_once_each_get_their_own(engine, echo):
    with pysock.Proxy(echo.url, **engine) as px:
        results: dict[int, bytes] = {}
        payloads = {i: os.urandom(100_000) + bytes([i]) for i in range(16)}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, exchange(px, payloads[i])))
                   for i in payloads]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SLACK * 2)
        assert results == payloads
        assert echo.stats.accepted == 16


def test_a_tuple_upstream_is_tcp(engine, echo):
    with pysock.Proxy(echo.address, **engine) as px:
        assert px.upstream_url == echo.url
        assert exchange(px, b"tuple") == b"tuple"


def test_unix_to_tcp_and_tcp_to_unix(engine, tmp_path):
    with pysock.Server(path=str(tmp_path / "up.sock"), transform="echo") as up, \
            pysock.Proxy(up.url, **engine) as px:
        assert exchange(px, b"to unix") == b"to unix"
    with pysock.Server(LOCALHOST, 0, transform="echo") as up, \
            pysock.Proxy(up.url, path=str(tmp_path / "front.sock"), **engine) as px:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(SLACK)
            s.connect(px.address)
            s.sendall(b"from unix")
            s.shutdown(socket.SHUT_WR)
            assert read_to_end(s) == b"from unix"


# -- half-close ------------------------------------------------------------------------
def silent_upstream(behaviour):
    """A one-connection upstream running behaviour(conn) in a thread."""
    listener = socket.create_server((LOCALHOST, 0))
    listener.settimeout(SLACK)

    def run():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(SLACK)
            behaviour(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, thread


def test_the_clients_half_close_reaches_the_upstream_which_can_still_answer(engine):
    def upstream(conn):
        got = read_to_end(conn)          # ends only with the client's FIN, passed on
        conn.sendall(b"after your FIN: " + got)

    listener, thread = silent_upstream(upstream)
    with listener, pysock.Proxy(listener.getsockname(), **engine) as px, connect(px) as s:
        s.sendall(b"question")
        s.shutdown(socket.SHUT_WR)
        assert read_to_end(s) == b"after your FIN: question"
    thread.join(SLACK)


def test_the_upstreams_half_close_reaches_the_client_which_can_still_send(engine):
    def upstream(conn):
        conn.sendall(b"hello first")
        conn.shutdown(socket.SHUT_WR)
        heard.append(read_to_end(conn))

    heard: list[bytes] = []
    listener, thread = silent_upstream(upstream)
    with listener, pysock.Proxy(listener.getsockname(), **engine) as px, connect(px) as s:
        assert read_to_end(s) == b"hello first"   # the upstream's FIN came through
        s.sendall(b"still talking")
        s.shutdown(socket.SHUT_WR)
        thread.join(SLACK)
    assert heard == [b"still talking"]


# -- a failing upstream ----------------------------------------------------------------
def closed_port() -> tuple[str, int]:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()   # nothing listens there once closed


def test_a_refused_upstream_closes_the_client_at_once_and_the_proxy_serves_on(engine, echo):
    lines: list[str] = []
    with pysock.Proxy(closed_port(), log=lines.append, **engine) as px:
        for _ in range(2):
            with connect(px) as s:
                start = time.monotonic()
                try:
                    assert s.recv(10) == b""
                except ConnectionResetError:
                    pass
                assert time.monotonic() - start < SLACK
        wait_for(lambda: px.stats.errors == 2 and px.stats.active == 0)
    assert sum("closed (upstream)" in line for line in lines) == 2


def test_an_upstream_that_resets_closes_the_client(engine):
    def upstream(conn):
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        conn.close()

    listener, thread = silent_upstream(upstream)
    with listener, pysock.Proxy(listener.getsockname(), **engine) as px, connect(px) as s:
        s.sendall(b"hi")
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
        wait_for(lambda: px.stats.active == 0 and px.stats.errors == 1)
    thread.join(SLACK)


# -- limits ------------------------------------------------------------------------------
def test_max_conns_rejects_the_next_client(engine, echo):
    with pysock.Proxy(echo.url, max_conns=1, **engine) as px, connect(px) as first:
        first.sendall(b"x")
        assert first.recv(1) == b"x"
        with connect(px) as second:
            try:
                assert second.recv(1) == b""
            except ConnectionResetError:
                pass
        assert px.stats.rejected == 1


def test_idle_timeout_closes_a_silent_pair(engine, echo):
    with pysock.Proxy(echo.url, idle_timeout=0.2, **engine) as px:
        start = time.monotonic()  # before the connect: the idle clock starts as the proxy accepts
        with connect(px) as s:
            assert s.recv(1) == b""
        assert 0.2 <= time.monotonic() - start < SLACK
        assert px.stats.idle_closed == 1


def test_send_timeout_cuts_off_a_client_that_leaves_its_bytes_unread(engine, echo):
    with pysock.Proxy(echo.url, send_timeout=0.3, max_unsent=64 << 10, **engine) as px:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(px.address)
        s.setblocking(False)
        try:
            deadline = time.monotonic() + SLACK
            while px.stats.slow_closed == 0:   # send on, read nothing
                assert time.monotonic() < deadline, px.stats
                try:
                    s.send(b"x" * 65536)
                except (BlockingIOError, ConnectionError):
                    time.sleep(0.01)
            wait_for(lambda: px.stats.active == 0)
        finally:
            s.close()

def test_stop_is_bounded_with_clients_connected(engine, echo):
    px = pysock.Proxy(echo.url, **engine).start()
    clients = [connect(px) for _ in range(5)]
    try:
        clients[0].sendall(b"x")
        assert clients[0].recv(1) == b"x"
        start = time.monotonic()
        px.stop(timeout=2)
        assert time.monotonic() - start < 2
        for c in clients:
            try:
                assert c.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        for c in clients:
            c.close()


# -- faults, both ways -----------------------------------------------------------------------
def test_latency_down_delays_what_the_client_receives(engine, echo):
    with pysock.Proxy(echo.url, faults=pysock.Faults(latency=0.1), **engine) as px, connect(px) as s:
        start = time.monotonic()
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        assert 0.1 <= time.monotonic() - start < SLACK


def test_latency_up_delays_what_the_upstream_receives(engine):
    arrived: list[float] = []

    def upstream(conn):
        conn.recv(10)
        arrived.append(time.monotonic())
        conn.sendall(b"ok")

    listener, thread = silent_upstream(upstream)
    with listener, pysock.Proxy(listener.getsockname(), faults_up=pysock.Faults(latency=0.1),
                                **engine) as px, connect(px) as s:
        start = time.monotonic()
        s.sendall(b"ping")
        assert s.recv(10) == b"ok"
        thread.join(SLACK)
        assert 0.1 <= arrived[0] - start < SLACK


def test_limit_data_down_closes_after_that_many_bytes(engine, echo):
    with pysock.Proxy(echo.url, faults=pysock.Faults(limit_data=1000), **engine) as px, connect(px) as s:
        s.sendall(b"a" * 5000)
        got = read_to_end(s)
        assert got == b"a" * 1000


def test_reset_after_up_resets_the_upstream(engine):
    seen: list[object] = []

    def upstream(conn):
        data = b""
        try:
            while piece := conn.recv(100):
                data += piece
            seen.append(("eof", data))
        except ConnectionResetError:
            seen.append(("reset", data))

    listener, thread = silent_upstream(upstream)
    with listener, pysock.Proxy(listener.getsockname(), faults_up=pysock.Faults(reset_after=10),
                                **engine) as px, connect(px) as s:
        s.sendall(b"0123456789abcdef")
        thread.join(SLACK)
        assert seen == [("reset", b"0123456789")]
        wait_for(lambda: px.stats.active == 0)


def test_slice_up_splits_what_the_upstream_receives(engine):
    pieces: list[bytes] = []

    def upstream(conn):
        while piece := conn.recv(100):
            pieces.append(piece)

    listener, thread = silent_upstream(upstream)
    with listener, pysock.Proxy(listener.getsockname(), faults_up=pysock.Faults(slice=3, slice_delay=0.02),
                                **engine) as px, connect(px) as s:
        s.sendall(b"abcdefgh")
        s.shutdown(socket.SHUT_WR)
        thread.join(SLACK)
    assert pieces == [b"abc", b"def", b"gh"]


def test_stall_down_passes_nothing_back(engine, echo):
    with pysock.Proxy(echo.url, faults=pysock.Faults(stall=True), **engine) as px, connect(px) as s:
        s.sendall(b"anyone?")
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(10)
        wait_for(lambda: echo.stats.bytes_out == 7)   # the upstream answered; the proxy held it


def test_close_delay_holds_back_the_passed_on_fin(engine):
    def upstream(conn):
        conn.shutdown(socket.SHUT_WR)
        read_to_end(conn)

    listener, thread = silent_upstream(upstream)
    with listener, pysock.Proxy(listener.getsockname(), faults=pysock.Faults(close_delay=0.1),
                                **engine) as px:
        start = time.monotonic()  # before the connect: the upstream's FIN may reach the proxy at once
        s = connect(px)
        assert read_to_end(s) == b""
        assert 0.1 <= time.monotonic() - start < SLACK
        s.shutdown(socket.SHUT_WR)
        s.close()
    thread.join(SLACK)


def test_set_faults_while_serving_changes_both_directions(engine, echo):
    with pysock.Proxy(echo.url, **engine) as px:
        with connect(px) as s:
            start = time.monotonic()
            s.sendall(b"a")
            assert s.recv(1) == b"a"
            fast = time.monotonic() - start
        px.set_faults(pysock.Faults(latency=0.1), pysock.Faults(latency=0.1))
        assert px.faults is not None and px.faults_up is not None
        with connect(px) as s:
            start = time.monotonic()
            s.sendall(b"b")
            assert s.recv(1) == b"b"
            assert time.monotonic() - start >= 0.2 > fast
        px.set_faults(None)
        assert px.faults is None and px.faults_up is None


@pytest.mark.parametrize("direction", ["faults", "faults_up"])
def test_bandwidth_and_jitter_pace_each_direction_in_order(engine, echo, direction):
    """20,000 bytes at 100,000 bytes/s take 0.2 s less the first 20 ms'
    piece, whichever way they are paced, and jitter never reorders them."""
    shaped = {direction: pysock.Faults(bandwidth=100_000, latency=0.01, jitter=0.01, seed=2)}
    payload = bytes(range(256)) * 78 + b"end"
    with pysock.Proxy(echo.url, **shaped, **engine) as px:
        start = time.monotonic()
        assert exchange(px, payload) == payload
        assert 0.15 <= time.monotonic() - start < SLACK


@pytest.mark.parametrize("dgram_engine", DGRAM_ENGINES)
def test_datagram_duplicate_down_sends_each_answer_twice(dgram_engine):
    with pysock.Server(LOCALHOST, 0, "udp", transform="echo") as up, \
            pysock.Proxy(up.url, faults=pysock.Faults(duplicate=1.0), **dgram_engine) as px, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(SLACK)
        s.sendto(b"twice", px.address)
        assert [s.recvfrom(100)[0] for _ in range(2)] == [b"twice", b"twice"]
        assert up.stats.datagrams == 1

def test_corrupt_flips_the_schedules_bits_each_way(engine):
    got: list[bytes] = []

    def upstream(conn):
        got.append(read_exactly(conn, 20000))
        conn.sendall(b"y" * 20000)

    listener, thread = silent_upstream(upstream)
    with listener, pysock.Proxy(listener.getsockname(), faults=pysock.Faults(corrupt=0.01, seed=4),
                                faults_up=pysock.Faults(corrupt=0.01, seed=5), **engine) as px, connect(px) as s:
        s.sendall(b"x" * 20000)
        assert read_exactly(s, 20000) == Corrupter(4).apply(0.01, b"y" * 20000)
        thread.join(SLACK)
    assert got == [Corrupter(5).apply(0.01, b"x" * 20000)]


def test_close_after_time_closes_the_pair(engine, echo):
    with pysock.Proxy(echo.url, faults=pysock.Faults(close_after_time=0.1), **engine) as px:
        start = time.monotonic()  # before the connect: the proxy's clock starts as it accepts
        s = connect(px)
        s.sendall(b"hi")
        assert s.recv(10) == b"hi"
        assert s.recv(10) == b""
        assert 0.1 <= time.monotonic() - start < SLACK
        s.close()
        wait_for(lambda: px.stats.active == 0)


def test_reset_after_time_up_resets_the_upstream(engine):
    seen: list[str] = []

    def upstream(conn):
        try:
            seen.append("eof" if conn.recv(10) == b"" else "data")
        except ConnectionResetError:
            seen.append("reset")

    listener, thread = silent_upstream(upstream)
    with listener, pysock.Proxy(listener.getsockname(), faults_up=pysock.Faults(reset_after_time=0.1),
                                **engine) as px:
        start = time.monotonic()
        with connect(px):
            thread.join(SLACK)
        assert seen == ["reset"] and time.monotonic() - start >= 0.1


def test_toxicity_hits_the_schedules_pairs(engine, echo):
    faults = pysock.Faults(latency=0.1, toxicity=0.5, seed=3)
    hit = [not spared(faults, 3, n) for n in range(1, 5)]
    with pysock.Proxy(echo.url, faults=faults, **engine) as px:
        delayed = []
        for _ in hit:
            with connect(px) as s:
                start = time.monotonic()
                s.sendall(b"t")
                assert s.recv(1) == b"t"
                delayed.append(time.monotonic() - start >= 0.1)
        assert delayed == hit


# -- datagrams ---------------------------------------------------------------------------
@pytest.mark.parametrize("dgram_engine", DGRAM_ENGINES)
def test_datagrams_go_both_ways_one_upstream_socket_per_sender(dgram_engine):
    with pysock.Server(LOCALHOST, 0, "udp", transform="echo") as up, \
            pysock.Proxy(up.url, **dgram_engine) as px:
        assert px.config.proto == "udp"
        senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
        try:
            for i, s in enumerate(senders):
                s.settimeout(SLACK)
                for k in range(3):
                    s.sendto(b"%d-%d" % (i, k), px.address)
                    assert s.recvfrom(100)[0] == b"%d-%d" % (i, k)
        finally:
            for s in senders:
                s.close()
        assert px.stats.accepted == 3 and px.stats.datagrams == 9


@pytest.mark.parametrize("dgram_engine", DGRAM_ENGINES)
def test_a_silent_sender_is_forgotten_after_idle_timeout(dgram_engine):
    lines: list[str] = []
    with pysock.Server(LOCALHOST, 0, "udp", transform="echo") as up, \
            pysock.Proxy(up.url, idle_timeout=0.2, log=lines.append, **dgram_engine) as px, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(SLACK)
        s.sendto(b"once", px.address)
        assert s.recvfrom(100)[0] == b"once"
        assert px.stats.active == 1
        wait_for(lambda: px.stats.idle_closed == 1 and px.stats.active == 0)
        s.sendto(b"again", px.address)         # a new session, a new socket upstream
        assert s.recvfrom(100)[0] == b"again"
        assert px.stats.accepted == 2
    wait_for(lambda: sum("closed (idle)" in line for line in lines) == 1)

@pytest.mark.parametrize("dgram_engine", DGRAM_ENGINES)
def test_datagram_faults_apply_per_direction(dgram_engine):
    with pysock.Server(LOCALHOST, 0, "udp", transform="echo") as up, \
            pysock.Proxy(up.url, faults_up=pysock.Faults(drop=1.0), **dgram_engine) as px, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(b"lost", px.address)
        with pytest.raises(socket.timeout):
            s.recvfrom(100)
        assert up.stats.datagrams == 0
        px.set_faults(pysock.Faults(latency=0.1))
        start = time.monotonic()
        s.settimeout(SLACK)
        s.sendto(b"late", px.address)
        assert s.recvfrom(100)[0] == b"late"
        assert time.monotonic() - start >= 0.1


# -- options -------------------------------------------------------------------------------
@pytest.mark.parametrize("upstream, message", [
    ("http://x:1", "not a pysock address"),
    (("localhost",), "URL"),
    ("tcp://127.0.0.1:0", "out of range"),
])
def test_a_bad_upstream_is_a_config_error(upstream, message):
    with pytest.raises(ConfigError, match=message):
        pysock.Proxy(upstream)


def test_the_kinds_must_match():
    with pytest.raises(ConfigError, match="forwards datagrams"):
        pysock.Proxy("tcp://127.0.0.1:9", proto="udp")
    with pytest.raises(ConfigError, match="forwards a stream"):
        pysock.Proxy("udp://127.0.0.1:9", proto="tcp")


def test_faults_are_checked_for_their_direction():
    with pytest.raises(ConfigError, match=r"faults_up: .*UDP only"):
        pysock.Proxy("tcp://127.0.0.1:9", faults_up=pysock.Faults(drop=0.5))


def test_an_unknown_option_lists_the_options():
    with pytest.raises(ConfigError, match="faults_up"):
        pysock.Proxy("tcp://127.0.0.1:9", transform="upper")


def test_the_upstream_need_not_be_up_yet(engine):
    port = closed_port()
    with pysock.Proxy(port, **engine) as px:
        with pysock.Server(*port, transform="echo"):
            assert exchange(px, b"late upstream") == b"late upstream"


# -- memory --------------------------------------------------------------------------------
MEMORY_CASES = {
    "none": ({}, {}),
    "latency-down": ({"latency": 3600.0}, {}),
    "bandwidth-up": ({}, {"bandwidth": 20_000}),
}


@SANITIZED
@pytest.mark.slow  # 10-30 s each: both directions' kernel buffers fill before the proxy's do
@pytest.mark.parametrize("case", list(MEMORY_CASES))
def test_a_client_that_never_reads_pins_a_bounded_share_each_way(engine, case, many_descriptors, request):
    """A client that sends and never reads backs both directions up: what
    waits for it (and, once the upstream stops reading, what waits for the
    upstream) is bounded per direction by max_unsent + 128 KiB, as for an
    echo server's client, under faults too."""
    faults, faults_up = MEMORY_CASES[case]
    with pysock.Server(LOCALHOST, 0, transform="echo", max_unsent=64 << 10, send_timeout=0,
                       idle_timeout=0) as up:
        # Warmed up with faults that hold bytes a moment only: a pair whose
        # bytes wait an hour keeps them (and itself) that long, its client's
        # reset unnoticed until then, as an echo server's (docs/proxy.md).
        proxy = ProxyProcess(dict(engine, max_unsent=MEMORY_MAX_UNSENT, send_timeout=0, idle_timeout=0),
                             up.url, dict(faults, latency=0.05) if faults else {}, faults_up)
        conns: list[socket.socket] = []
        try:
            warm = never_reading_clients(proxy.address, 4)
            flood_until_the_server_stops_reading(proxy, warm, b"x" * 65536)
            for c in warm:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
            wait_for(lambda: proxy.stats()["active"] == 0, timeout=20)
            proxy.set_faults(faults, faults_up)
            before = settled(proxy.rss)
            conns = never_reading_clients(proxy.address, MEMORY_CONNS)
            flood_until_the_server_stops_reading(proxy, conns, b"x" * 65536)
            pinned = (settled(proxy.rss) - before) / MEMORY_CONNS
            print(f"{request.node.callspec.id}: {pinned / 1024:.1f} KiB per client that never reads")
            assert pinned <= 2 * MEMORY_BOUND, f"{pinned / 1024:.0f} KiB per client, over 2 x {MEMORY_BOUND >> 10}"
        finally:
            for c in conns:
                c.close()
            proxy.close()
