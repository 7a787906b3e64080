"""The fast paths: backpressure and many connections (every engine: they
began as the epoll model's tests), workers on one port, spinning, batched
UDP (every C model: the c_tcp and c_any fixtures; the twins serve from one
thread and do not spin)."""
from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time

import pytest
from support import LOCALHOST, c_model, run_clients, server_kinds, skip_without, wait_for

import pysock
import pysock.client
from pysock.client import Connection, recv_exactly

PER_CONNECTION = pytest.mark.same_code_as_model("backpressure is the model's per-connection code, "
                                                 "which each worker runs unchanged")
BUF = 65536  # the C loops' receive buffer (PS_BUFSIZE)


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def settled_thread_count() -> int:
    """The thread count once threads left over from earlier tests have ended."""
    return wait_until_still(thread_count, settle=0.2)


def listeners(proto: str, port: int) -> int:
    """Sockets of this network namespace bound to port (TCP: listening)."""
    count = 0
    with open(f"/proc/net/{proto}") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state = fields[1], fields[3]
            if int(local.rpartition(":")[2], 16) == port and (proto == "udp" or state == "0A"):
                count += 1
    return count


def wait_until_still(read, settle: float = 0.3, timeout: float = 20.0) -> int:
    """Poll read() until it has not changed for `settle` seconds; its value."""
    deadline = time.monotonic() + timeout
    last, since = read(), time.monotonic()
    while time.monotonic() - since < settle:
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {timeout} s")
        time.sleep(0.05)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
    return last


class Flooder:
    """A client that reads nothing.  Given `total`, it sends that many bytes
    at once, in a thread of its own (the send blocks once the server stops
    reading)."""

    def __init__(self, address, total: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up soon
        self.sock.settimeout(30)
        self.sock.connect(address)
        self.total = total
        self.thread: threading.Thread | None = None
        if total:
            self.send_in_background(total)

    def send_in_background(self, *parts: int, pause: float = 0.0) -> None:
        """Send parts bytes after bytes, `pause` seconds apart, in a thread."""
        self.thread = threading.Thread(target=self._send, args=(parts, pause), daemon=True)
        self.thread.start()

    def _send(self, parts: tuple[int, ...], pause: float) -> None:
        try:
            for i, size in enumerate(parts):
                if i:
                    time.sleep(pause)
                self.sock.sendall(b"x" * size)
        except OSError:
            pass  # cut off by the server, or shut down by close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked sendall
        except OSError:
            pass
        if self.thread is not None:
            self.thread.join(10)
        self.sock.close()


def true_within(predicate, seconds: float) -> bool:
    """Poll predicate() for up to `seconds`; whether it came true."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


# -- backpressure and limits, every TCP model ------------------------------
@PER_CONNECTION
@pytest.mark.concurrent_clients
def test_a_client_that_never_reads_costs_bounded_memory(tcp_options):
    limit = 64 * 1024
    with pysock.Server(LOCALHOST, 0, "tcp", max_unsent=limit, send_timeout=0, **tcp_options) as srv:
        flood = Flooder(srv.address, 64 << 20)
        try:
            taken = wait_until_still(lambda: srv.stats.bytes_in)
            held = taken - srv.stats.bytes_out  # echo the server keeps in its own memory
            assert held <= limit + BUF, f"{held} bytes of echo held unsent, over {limit + BUF}"
            assert taken < flood.total  # it stopped reading: the rest waits in the client
            with Connection(srv.address) as other:  # everyone else is still served
                assert other.roundtrip(b"meanwhile") == b"MEANWHILE"
            assert srv.stats.slow_closed == 0  # send_timeout=0: never cut off
        finally:
            flood.close()
        assert pysock.request(b"after", srv.address) == b"AFTER"


@PER_CONNECTION
def test_echo_behind_a_reply_stuck_in_flight_costs_bounded_memory(tcp_options):
    """Replies go out whole, one at a time, until one sticks in flight (the
    client reads nothing); then the client sends 63 KiB, and 64 KiB more once
    that has been read.  The reply in flight counts against max_unsent like
    the echo behind it.  (C uring sends such a reply straight from the buffer
    it was read into; it once left that out of the count, and held up to
    64 KiB more.)"""
    limit, chunk = 64 * 1024, 60000
    with pysock.Server(LOCALHOST, 0, "tcp", max_unsent=limit, send_timeout=0, **tcp_options) as srv:
        flood = Flooder(srv.address)
        try:
            for _ in range(1000):  # the client's window closes after a few MB
                before = srv.stats.bytes_out
                flood.sock.sendall(b"x" * chunk)
                if not true_within(lambda before=before: srv.stats.bytes_out - before == chunk, 0.2):
                    break  # this reply is stuck in flight
            else:
                pytest.fail("every reply went out whole: the client's window never closed")
            flood.send_in_background(63 << 10, 64 << 10, 1 << 20, pause=0.2)
            taken = wait_until_still(lambda: srv.stats.bytes_in, settle=0.5)
            held = taken - srv.stats.bytes_out
            assert held <= limit + BUF, f"{held} bytes of echo held unsent, over {limit + BUF}"
        finally:
            flood.close()


@PER_CONNECTION
@pytest.mark.concurrent_clients
def test_a_client_that_never_reads_is_cut_off_after_send_timeout(tcp_options):
    with pysock.Server(LOCALHOST, 0, "tcp", max_unsent=64 * 1024, send_timeout=0.3, **tcp_options) as srv:
        flood = Flooder(srv.address, 64 << 20)
        try:
            with Connection(srv.address) as other:
                assert other.roundtrip(b"meanwhile") == b"MEANWHILE"
            wait_for(lambda: srv.stats.slow_closed == 1, timeout=20)
            wait_for(lambda: srv.stats.active == 0)
        finally:
            flood.close()
        assert pysock.request(b"after", srv.address) == b"AFTER"


def test_stop_is_prompt_while_a_client_refuses_its_echo(tcp_options):
    srv = pysock.Server(LOCALHOST, 0, "tcp", max_unsent=64 * 1024, **tcp_options).start()
    flood = Flooder(srv.address, 64 << 20)
    try:
        wait_until_still(lambda: srv.stats.bytes_in)  # the server holds echo it cannot send
        srv.stop(timeout=0.5)  # a short grace for that echo, then the connection closes
    finally:
        flood.close()


@PER_CONNECTION
@pytest.mark.parametrize("max_unsent", [1, 100_000])
def test_stream_with_a_small_unsent_bound_arrives_whole(tcp_options, max_unsent):
    data = os.urandom(4 << 20)
    with pysock.Server(LOCALHOST, 0, "tcp", max_unsent=max_unsent, **tcp_options) as srv:
        assert pysock.request(data, srv.address, timeout=30) == data.upper()
        assert srv.stats.errors == 0


@pytest.mark.concurrent_clients
def test_a_few_hundred_concurrent_connections_each_get_their_echo(tcp_options):
    n = 300
    with pysock.Server(LOCALHOST, 0, "tcp", **tcp_options) as srv:
        socks = [pysock.client.connect(srv.address, timeout=20) for _ in range(n)]
        try:
            for i, s in enumerate(socks):
                s.sendall(b"connection %d" % i)
            for i, s in enumerate(socks):
                assert recv_exactly(s, len(b"connection %d" % i)) == b"CONNECTION %d" % i
            assert srv.stats.active == n
        finally:
            for s in socks:
                s.close()
        wait_for(lambda: srv.stats.active == 0)
        assert srv.stats.accepted == n


# -- workers --------------------------------------------------------------
@pytest.fixture(params=server_kinds("tcp", c_model))
def c_tcp(request) -> dict:
    """Each C TCP model (threads, epoll, uring), for workers and spinning."""
    skip_without("reuseport")
    return request.param


@pytest.fixture(params=[pytest.param(("tcp", p.values[0]), id=f"tcp-{p.id}", marks=p.marks)
                        for p in server_kinds("tcp", c_model)]
                + [pytest.param(("udp", p.values[0]), id=f"udp-{p.id}", marks=p.marks)
                   for p in server_kinds("udp", c_model)])
def c_any(request) -> tuple:
    """(proto, options): each C model of each protocol."""
    skip_without("reuseport")
    return request.param


def test_workers_share_one_port_and_serve_everyone(c_any):
    proto, options = c_any
    before = settled_thread_count()
    srv = pysock.Server(LOCALHOST, 0, proto, workers=3, **options).start()
    try:
        assert srv.port > 0
        assert listeners(proto, srv.port) == 3  # a socket each, on the port worker 0 got
        def client(i: int) -> None:
            for j in range(5):
                msg = b"client %d message %d" % (i, j)
                assert pysock.request(msg, srv.address, proto, timeout=10) == msg.upper()

        run_clients(20, client)
        if proto == "tcp":
            assert srv.stats.accepted == 100
        else:
            assert srv.stats.datagrams == 100
    finally:
        srv.stop(timeout=1.0)
    assert listeners(proto, srv.port) == 0
    wait_for(lambda: thread_count() <= before)  # every worker ended


def test_a_port_held_by_workers_is_in_use_for_anyone_else(c_tcp):
    with pysock.Server(LOCALHOST, 0, "tcp", workers=2, **c_tcp) as srv:
        for workers in (1, 2):
            with pytest.raises(OSError) as info:
                pysock.Server(LOCALHOST, srv.port, "tcp", workers=workers, **c_tcp)
            assert info.value.errno == errno.EADDRINUSE


def test_workers_on_a_fixed_port_restart_at_once(c_tcp):
    with pysock.Server(LOCALHOST, 0, "tcp", workers=2, **c_tcp) as srv:
        port = srv.port
        assert pysock.request(b"one", srv.address) == b"ONE"
    with pysock.Server(LOCALHOST, port, "tcp", workers=2, **c_tcp) as again:
        assert listeners("tcp", port) == 2
        assert pysock.request(b"two", again.address) == b"TWO"


def test_signals_in_the_serving_thread_do_not_start_workers_twice(c_any):
    """serve_forever returns to Python on every signal (EINTR) and goes back
    into C: the helper threads keep running and are not started again."""
    proto, options = c_any
    srv = pysock.Server(LOCALHOST, 0, proto, workers=3, **options)
    main = threading.get_ident()
    seen: list[int] = []
    counts: list[int] = []
    replies: list[bytes] = []

    def poke() -> None:
        try:
            wait_for(lambda: thread_count() == before + 3)  # this thread + 2 helpers
            for n in range(1, 6):
                signal.pthread_kill(main, signal.SIGUSR1)
                wait_for(lambda n=n: len(seen) >= n)
                # settled: the threads model's thread for the last request
                # may still be ending; helpers started twice would stay
                counts.append(settled_thread_count())
                replies.append(pysock.request(b"still serving", srv.address, proto))
        finally:
            srv.stop()

    old = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    before = settled_thread_count()
    poker = threading.Thread(target=poke)
    poker.start()
    try:
        srv.serve_forever()
    finally:
        poker.join(20)
        signal.signal(signal.SIGUSR1, old)
    assert len(seen) == 5
    assert counts == [before + 3] * 5
    assert replies == [b"STILL SERVING"] * 5
    wait_for(lambda: thread_count() <= before)


# -- spinning ---------------------------------------------------------------
def test_a_spinning_server_answers_and_stops(c_any):
    proto, options = c_any
    srv = pysock.Server(LOCALHOST, 0, proto, spin_us=500, workers=2, **options).start()
    with pysock.client.connect(srv.address, proto) as sock:
        for i in range(50):
            msg = b"ping %d" % i
            sock.send(msg)
            assert recv_exactly(sock, len(msg)) == msg.upper() if proto == "tcp" else sock.recv(100) == msg.upper()
    srv.stop(timeout=0.5)


# -- batched UDP ------------------------------------------------------------
def test_a_burst_of_datagrams_is_answered_each_to_its_sender():
    """More datagrams wait at once than one batch takes; each reply goes to
    the socket that sent its datagram, byte for byte.  192 datagrams of at
    most 100 bytes fit a default receive buffer: none can be dropped."""
    with pysock.Server(LOCALHOST, 0, "udp") as srv:
        senders = [pysock.client.connect(srv.address, "udp") for _ in range(4)]
        sent = {i: [] for i in range(4)}
        try:
            for j in range(48):
                for i, s in enumerate(senders):
                    msg = (b"sender %d datagram %d " % (i, j) * 5)[: (i * 48 + j) % 101]
                    s.send(msg)
                    sent[i].append(msg)
            for i, s in enumerate(senders):
                got = [s.recv(200) for _ in range(48)]
                assert sorted(got) == sorted(m.upper() for m in sent[i])
        finally:
            for s in senders:
                s.close()
        wait_for(lambda: srv.stats.bytes_out == sum(len(m) for ms in sent.values() for m in ms))
        assert srv.stats.datagrams == 192
        assert srv.stats.errors == 0


# -- where the fast paths do not exist ------------------------------------------
def test_features_of_this_build():
    from pysock.config import c_features

    assert c_features() <= {"epoll", "mmsg", "reuseport", "uring"}
    if os.uname().sysname == "Linux" and "PYSOCK_PORTABLE" not in os.environ.get("PYSOCK_CFLAGS", ""):
        assert c_features() == {"epoll", "mmsg", "reuseport", "uring"}


def test_without_epoll_the_model_is_refused_clearly(monkeypatch):
    import pysock.config

    monkeypatch.setattr(pysock.config, "c_features", lambda: frozenset())
    with pytest.raises(pysock.ConfigError, match=r"model 'epoll' needs Linux's epoll.*model='threads'"):
        pysock.Server(LOCALHOST, 0, "tcp", model="epoll")
    with pytest.raises(pysock.ConfigError, match="workers > 1 needs SO_REUSEPORT"):
        pysock.Server(LOCALHOST, 0, "tcp", workers=2)
    with pysock.Server(LOCALHOST, 0, "tcp") as srv:  # the portable model still serves
        assert pysock.request(b"portable", srv.address) == b"PORTABLE"


def test_bad_fast_path_options_fail_before_c(tmp_path):
    with pytest.raises(pysock.ConfigError, match="unknown model for c tcp 'poll'"):
        pysock.Server(model="poll")
    with pytest.raises(pysock.ConfigError, match="workers 0 is out of range"):
        pysock.Server(workers=0)
    with pytest.raises(pysock.ConfigError, match="spin_us -1 is out of range"):
        pysock.Server(spin_us=-1)
    with pytest.raises(pysock.ConfigError, match="workers > 1 needs an IP address"):
        pysock.Server(path=str(tmp_path / "sock"), workers=2)
