"""The contract's fault section (docs/contract.md, "Faults on demand"),
checked on every engine of tests/engines.py: each field of pysock.Faults
does what it says, over real sockets, and the same seed gives the same
faults on every engine (the schedule pysock.faults computes is the one C
follows).  Delays are checked as lower bounds, with generous upper slack."""
from __future__ import annotations

import socket
import time

import pytest
from support import LOCALHOST, read_exactly, read_pieces, read_to_end, wait_for

import pysock
from pysock.faults import DGRAM_COST, REORDER_HOLD, Corrupter, UdpShaper, spared

SLACK = 5.0  # seconds: an upper bound only a hang would pass

# A fault shapes one connection's or one socket's replies, in the model's
# own code, which each worker's loop runs unchanged; spinning changes how a
# loop waits, not when a reply is due.
pytestmark = pytest.mark.same_code_as_model("faults are shaped by the model's per-connection (TCP) "
                                            "or per-socket (UDP) code")


def tcp_server(options: dict, faults: pysock.Faults, **more) -> pysock.Server:
    return pysock.Server(LOCALHOST, 0, "tcp", faults=faults, **options, **more).start()


def udp_server(options: dict, faults: pysock.Faults, **more) -> pysock.Server:
    return pysock.Server(LOCALHOST, 0, "udp", faults=faults, **options, **more).start()


def connect(srv: pysock.Server, timeout: float = SLACK) -> socket.socket:
    return socket.create_connection(srv.address, timeout=timeout)


def round_trip(srv: pysock.Server, payload: bytes = b"hello") -> float:
    with connect(srv) as s:
        start = time.monotonic()
        s.sendall(payload)
        assert read_exactly(s, len(payload)) == payload.upper()
        return time.monotonic() - start


# -- TCP -----------------------------------------------------------------------
def test_tcp_latency_holds_each_reply(tcp_options):
    with tcp_server(tcp_options, pysock.Faults(latency=0.1)) as srv:
        assert 0.1 <= round_trip(srv) < SLACK


def test_tcp_jitter_keeps_the_order_of_bytes(tcp_options):
    faults = pysock.Faults(latency=0.03, jitter=0.03, seed=1)
    with tcp_server(tcp_options, faults) as srv, connect(srv) as s:
        sent = b""
        for i in range(20):  # replies whose draws would let a later one overtake
            piece = b"piece %02d;" % i
            s.sendall(piece)
            sent += piece
            time.sleep(0.005)
        s.shutdown(socket.SHUT_WR)
        assert read_to_end(s) == sent.upper()


def test_tcp_bandwidth_paces_replies(tcp_options):
    payload = b"b" * 4000
    with tcp_server(tcp_options, pysock.Faults(bandwidth=20000)) as srv:
        # 20 ms worth (400 bytes) may go at once; the rest at 20000 bytes/s
        assert (4000 - 400) / 20000 <= round_trip(srv, payload) < SLACK


def test_tcp_slices_go_apart(tcp_options):
    payload = b"s" * 50
    with tcp_server(tcp_options, pysock.Faults(slice=10, slice_delay=0.02)) as srv, connect(srv) as s:
        start = time.monotonic()
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        pieces = read_pieces(s)
        data = b"".join(pieces)
        took = time.monotonic() - start
    assert data == payload.upper()
    assert len(pieces) >= 2          # not one send
    assert 4 * 0.02 <= took < SLACK   # five slices, four gaps


def test_tcp_limit_data_sends_exactly_that_then_eof(tcp_options):
    with tcp_server(tcp_options, pysock.Faults(limit_data=100)) as srv, connect(srv) as s:
        s.sendall(bytes(range(97, 123)) * 10)  # 260 bytes
        data = read_to_end(s)
        assert data == (bytes(range(97, 123)) * 10).upper()[:100]
        wait_for(lambda: srv.stats.active == 0)


def test_tcp_reset_after_resets(tcp_options):
    with tcp_server(tcp_options, pysock.Faults(reset_after=10)) as srv, connect(srv) as s:
        s.sendall(b"0123456789abcdefghij")
        got = b""
        with pytest.raises(ConnectionResetError):
            while True:
                piece = s.recv(100)
                assert piece, "a FIN, not a reset"
                got += piece
        assert got == b"0123456789ABCDEFGHIJ"[:len(got)] and len(got) <= 10


def test_tcp_request_meets_a_reset_as_a_reset(tcp_options):
    """pysock.request half-closes after sending: when the reset has come by
    then, that is a ConnectionResetError too (not ENOTCONN's OSError), so a
    client that retries on resets catches it.  (60,000 bytes: sent whole
    into the socket before the reset comes, often enough, and still sent
    before the reply is read.)"""
    with tcp_server(tcp_options, pysock.Faults(reset_after=100)) as srv:
        for _ in range(20):
            with pytest.raises(ConnectionResetError):
                pysock.request(b"r" * 60000, srv.address, timeout=SLACK)


def test_tcp_stall_receives_and_never_answers(tcp_options):
    with tcp_server(tcp_options, pysock.Faults(stall=True)) as srv, connect(srv, timeout=0.3) as s:
        s.sendall(b"hello")
        with pytest.raises(socket.timeout):
            s.recv(100)
        s.sendall(b"still open")  # received, as the counters show
        wait_for(lambda: srv.stats.bytes_in == 15)
        assert srv.stats.bytes_out == 0 and srv.stats.active == 1


def test_tcp_stall_ends_with_idle_timeout(tcp_options):
    with tcp_server(tcp_options, pysock.Faults(stall=True), idle_timeout=0.2) as srv, connect(srv) as s:
        s.sendall(b"hello")
        assert read_to_end(s) == b""
        assert srv.stats.idle_closed == 1


def test_tcp_stall_leaves_the_clients_close_unanswered(tcp_options):
    """A hung server does not close when its client does: idle_timeout does."""
    with tcp_server(tcp_options, pysock.Faults(stall=True), idle_timeout=0.3) as srv, connect(srv) as s:
        s.sendall(b"hello")
        s.shutdown(socket.SHUT_WR)
        start = time.monotonic()
        assert read_to_end(s) == b""
        assert 0.3 * 0.9 <= time.monotonic() - start < SLACK
        wait_for(lambda: srv.stats.idle_closed == 1)


def test_tcp_close_delay_holds_the_close(tcp_options):
    with tcp_server(tcp_options, pysock.Faults(close_delay=0.2)) as srv, connect(srv) as s:
        s.sendall(b"bye")
        s.shutdown(socket.SHUT_WR)
        assert read_exactly(s, 3) == b"BYE"
        replied = time.monotonic()
        assert s.recv(10) == b""
        assert 0.2 * 0.9 <= time.monotonic() - replied < SLACK  # the clocks differ by a tick


def test_tcp_faults_change_while_serving(tcp_options):
    with pysock.Server(LOCALHOST, 0, "tcp", **tcp_options).start() as srv, connect(srv) as s:
        s.sendall(b"a")
        assert read_exactly(s, 1) == b"A"
        srv.set_faults(pysock.Faults(latency=0.5))
        start = time.monotonic()
        s.sendall(b"b")
        assert read_exactly(s, 1) == b"B"
        assert 0.5 <= time.monotonic() - start < SLACK
        srv.set_faults(None)
        start = time.monotonic()
        s.sendall(b"c")
        assert read_exactly(s, 1) == b"C"
        assert time.monotonic() - start < 0.5  # no longer held
        assert srv.faults is None


def test_tcp_held_replies_count_against_max_unsent(tcp_options):
    """A client whose replies a fault holds cannot make the server read (and
    keep) more than max_unsent: the server stops reading, as for a client
    that never reads."""
    limit = 64 * 1024
    with tcp_server(tcp_options, pysock.Faults(latency=30.0), max_unsent=limit) as srv, connect(srv) as s:
        s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                sent += s.send(b"m" * 65536)
            except BlockingIOError:
                time.sleep(0.01)
        assert sent > 4 * limit  # the kernel's buffers took the rest
        assert srv.stats.bytes_in <= limit + 65536 + 32
        assert srv.stats.bytes_out == 0


def test_tcp_stop_does_not_wait_for_held_replies(tcp_options):
    srv = tcp_server(tcp_options, pysock.Faults(latency=30.0))
    with connect(srv) as s:
        s.sendall(b"held")
        wait_for(lambda: srv.stats.bytes_in == 4)
        start = time.monotonic()
        srv.stop()
        assert time.monotonic() - start < SLACK
        assert read_to_end(s) == b""


# -- UDP -----------------------------------------------------------------------
def exchange(srv: pysock.Server, payloads: list[bytes], wait: float = 0.3, gap: float = 0.002,
             first: float = 0.0) -> list[bytes]:
    """Send each payload, then collect replies until none comes for wait s
    (for the first reply, wait + first s: a delay the test asked for)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, srv.address)
            time.sleep(gap)
        replies = []
        s.settimeout(wait + first)
        try:
            while True:
                replies.append(s.recv(65536))
                s.settimeout(wait)
        except socket.timeout:
            return replies


def test_tcp_corrupt_flips_the_schedules_bits(tcp_options):
    """corrupt follows the byte stream, not the reads: the same seed flips
    the same bits on every engine, whatever sizes the reads came in."""
    faults = pysock.Faults(corrupt=0.01, seed=5)
    payload = b"x" * 20000
    want = Corrupter(5).apply(0.01, payload.upper())
    assert 100 < sum(a != b for a, b in zip(want, payload.upper())) < 400
    with tcp_server(tcp_options, faults) as srv, connect(srv) as s:
        s.sendall(payload)
        assert read_exactly(s, len(payload)) == want


def test_tcp_close_after_time_closes_an_idle_connection(tcp_options):
    with tcp_server(tcp_options, pysock.Faults(close_after_time=0.1)) as srv:
        start = time.monotonic()  # before the connect: the server's clock starts as it accepts
        s = connect(srv)
        s.sendall(b"still answered")
        assert read_exactly(s, 14) == b"STILL ANSWERED"
        assert s.recv(10) == b""
        assert 0.1 <= time.monotonic() - start < SLACK
        s.close()
        wait_for(lambda: srv.stats.active == 0)


def test_tcp_reset_after_time_resets(tcp_options):
    with tcp_server(tcp_options, pysock.Faults(reset_after_time=0.1)) as srv:
        start = time.monotonic()
        with connect(srv) as s, pytest.raises(ConnectionResetError):
            assert s.recv(10) == b"", "a FIN, not a reset"
        assert 0.1 <= time.monotonic() - start < SLACK


TOXIC = pysock.Faults(latency=0.1, toxicity=0.5, seed=3)


def test_tcp_toxicity_hits_the_schedules_connections(tcp_options):
    """Each connection is hit or spared by its number's draw: the same ones
    on every engine (connections numbered from 1 in the order accepted)."""
    hit = [not spared(TOXIC, 3, n) for n in range(1, 5)]
    assert any(hit) and not all(hit)
    with tcp_server(tcp_options, TOXIC) as srv:
        assert [round_trip(srv) >= 0.1 for _ in hit] == hit


PAYLOADS = [b"d%02d" % i for i in range(24)]


def expected(faults: pysock.Faults, payloads: list[bytes], gap: float = 0.002) -> list[bytes]:
    """What the shared schedule (pysock.faults) sends back to one sender."""
    shaper = UdpShaper(1 << 20)
    for i, p in enumerate(payloads):
        shaper.push(faults, p.upper(), "peer", i * gap)
    out = []
    while shaper.due() is not None:
        out.append(shaper.pop(float("inf"))[0])
    return out


def test_udp_latency_holds_each_reply(udp_options):
    with udp_server(udp_options, pysock.Faults(latency=0.1)) as srv, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(SLACK)
        start = time.monotonic()
        s.sendto(b"late", srv.address)
        assert s.recv(100) == b"LATE"
        assert 0.1 <= time.monotonic() - start < SLACK


def test_udp_drop_all_answers_nothing(udp_options):
    with udp_server(udp_options, pysock.Faults(drop=1.0)) as srv:
        assert exchange(srv, PAYLOADS[:5]) == []
        assert srv.stats.datagrams == 5


def test_udp_seeded_drops_are_the_schedules_in_every_run(udp_options):
    faults = pysock.Faults(drop=0.5, seed=7)
    want = expected(faults, PAYLOADS)
    assert 0 < len(want) < len(PAYLOADS)
    for _ in range(2):
        with udp_server(udp_options, faults) as srv:
            assert exchange(srv, PAYLOADS) == want


def test_udp_duplicate_sends_twice(udp_options):
    with udp_server(udp_options, pysock.Faults(duplicate=1.0)) as srv:
        assert exchange(srv, PAYLOADS[:4]) == [p.upper() for p in PAYLOADS[:4] for _ in range(2)]


def test_udp_seeded_reorder_is_the_schedules(udp_options):
    faults = pysock.Faults(reorder=0.3, seed=7)
    want = expected(faults, PAYLOADS)
    assert want != [p.upper() for p in PAYLOADS] and sorted(want) == sorted(p.upper() for p in PAYLOADS)
    with udp_server(udp_options, faults) as srv:
        assert exchange(srv, PAYLOADS, wait=REORDER_HOLD + 0.3) == want


def test_udp_reorder_one_swaps_every_pair(udp_options):
    """A reply held back goes right after its sender's next one, which is
    never held itself: reorder=1.0 swaps each pair (it used to hold every
    reply in turn, and only delayed them)."""
    with udp_server(udp_options, pysock.Faults(reorder=1.0, seed=1)) as srv:
        got = exchange(srv, PAYLOADS[:8], wait=REORDER_HOLD + 0.3)
    assert got == [PAYLOADS[i ^ 1].upper() for i in range(8)]


def overtaken(replies: list[bytes]) -> int:
    """How many replies a later-sent one overtook."""
    order = [int(r[1:]) for r in replies]
    return sum(1 for at, i in enumerate(order) if any(j > i for j in order[:at]))


def test_more_reorder_reorders_more():
    """The shared schedule (every engine follows it): 300 datagrams, seed 11."""
    counts = []
    for p in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0):
        counts.append(overtaken(expected(pysock.Faults(reorder=p, seed=11), [b"d%03d" % i for i in range(300)])))
    assert counts == sorted(counts) and counts[0] > 0, counts
    assert counts[-1] == 150, counts  # 1.0: every other reply overtaken


def test_udp_bandwidth_paces_each_sender(udp_options):
    with udp_server(udp_options, pysock.Faults(bandwidth=5000)) as srv, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(SLACK)
        start = time.monotonic()
        for i in range(10):
            s.sendto(b"%03d" % i + b"x" * 97, srv.address)
        replies = [s.recv(200) for _ in range(10)]
        took = time.monotonic() - start
    assert [r[:3] for r in replies] == [b"%03d" % i for i in range(10)]
    assert (1000 - 100) / 5000 <= took < SLACK


def test_udp_stall_answers_nothing(udp_options):
    with udp_server(udp_options, pysock.Faults(stall=True)) as srv:
        assert exchange(srv, PAYLOADS[:3]) == []
        assert srv.stats.bytes_in == 9 and srv.stats.bytes_out == 0


def test_udp_held_replies_are_bounded_by_max_unsent(udp_options):
    """Delayed replies wait in memory: past max_unsent bytes, a reply is
    dropped (and counted in errors) rather than kept."""
    with udp_server(udp_options, pysock.Faults(latency=0.6), max_unsent=10_000) as srv:
        replies = exchange(srv, [b"%02d" % i + b"q" * 998 for i in range(30)], gap=0.001, first=0.6)
        fit = 10_000 // (1000 + DGRAM_COST)  # each counts its record too: 7
        assert len(replies) == fit
        assert srv.stats.errors == 30 - fit


def test_udp_corrupt_flips_the_schedules_bits(udp_options):
    faults = pysock.Faults(corrupt=0.02, seed=9)
    payloads = [b"p%03d" % i * 25 for i in range(8)]   # 100 bytes each
    flips = Corrupter(9)
    want = [flips.apply(0.02, p.upper()) for p in payloads]
    assert want != [p.upper() for p in payloads]
    with udp_server(udp_options, faults) as srv:
        assert exchange(srv, payloads) == want


def test_udp_toxicity_hits_the_schedules_senders(udp_options):
    """Senders are numbered from 1 as a socket first hears them."""
    faults = pysock.Faults(drop=1.0, toxicity=0.5, seed=3)
    hit = [not spared(faults, 3, n) for n in range(1, 5)]
    assert any(hit) and not all(hit)
    with udp_server(udp_options, faults) as srv:
        assert [exchange(srv, [b"x"], wait=0.1) == [] for _ in hit] == hit
