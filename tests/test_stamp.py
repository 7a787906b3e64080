"""The timestamp server (seed 003): ``at <ctime()> :<message>`` for each line
over TCP and each datagram over UDP, in C, held to the Python reference."""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import socket
import subprocess
import time

import pytest
import seed_clients
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stamps import STAMP, Window, unstamped
from support import LOCALHOST, CliServer, c_model, run_cli, server_kinds

import pysock
import pysock.client
from pysock import transform
from pysock.client import LineReader, recv_until_eof
from pysock.transform import LINE_MAX, UDP_MAX, Stamp


@pytest.fixture(scope="module", params=server_kinds("tcp", c_model))
def stamp_tcp(request):
    """A stamp server in each C TCP model: the threads, epoll and uring
    loops share the transform interface, and each must keep its promises
    (the conformance suite compares every engine's stamps with these)."""
    with pysock.Server(LOCALHOST, 0, "tcp", transform="stamp", **request.param) as srv:
        yield srv


@pytest.fixture(scope="module")
def stamp_udp():
    with pysock.Server(LOCALHOST, 0, "udp", transform="stamp") as srv:
        yield srv


# -- the Python reference ----------------------------------------------------
def test_prefix_is_ctime_without_its_newline():
    now = time.time()
    assert transform.stamp_prefix(now) == b"at " + time.ctime(now).encode() + b" :"
    assert STAMP.fullmatch(transform.stamp_prefix(now))


def test_reference_answers_each_line_and_keeps_its_newline():
    assert unstamped(Stamp().feed(b"one\ntwo\n")) == b"at T :one\nat T :two\n"


def test_reference_keeps_the_unfinished_line_until_finish():
    s = Stamp()
    assert s.feed(b"hel") == b""
    assert unstamped(s.feed(b"lo\nwor")) == b"at T :hello\n"
    assert unstamped(s.feed(b"ld")) == b""
    assert unstamped(s.finish()) == b"at T :world"  # no \n was sent, none is added
    assert s.finish() == b""


def test_reference_answers_a_long_line_in_pieces():
    line = b"x" * (2 * LINE_MAX + 100) + b"\n"
    reply = unstamped(Stamp().feed(line))
    assert reply == b"at T :" + b"x" * LINE_MAX + b"at T :" + b"x" * LINE_MAX + b"at T :" + b"x" * 100 + b"\n"
    exact = b"y" * (LINE_MAX - 1) + b"\n"  # the limit counts the \n: one reply
    assert unstamped(Stamp().feed(exact)) == b"at T :" + exact


def test_reference_datagram_is_one_message_cut_to_fit():
    assert unstamped(Stamp().datagram(b"a\nb")) == b"at T :a\nb"
    big = Stamp().datagram(b"z" * UDP_MAX)
    assert len(big) == UDP_MAX and big.endswith(b"z" * 100)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000).map(lambda b: b.replace(b"\x00", b"\n")), st.lists(st.integers(0, 3000), max_size=8))
def test_reference_does_not_depend_on_how_reads_split(data, cuts):
    s = Stamp()
    out = b""
    last = 0
    for cut in sorted(cuts) + [len(data)]:
        out += s.feed(data[last:cut])
        last = max(last, cut)
    out += s.finish()
    assert unstamped(out) == unstamped(transform.apply("stamp", data))
    assert STAMP.sub(b"", out) == data  # every byte comes back, in order


# -- the C server over TCP ----------------------------------------------------
def test_tcp_message_is_stamped(stamp_tcp):
    window = Window()
    reply = pysock.request(b"hello world", stamp_tcp.address, "tcp")
    assert window.check(reply) == b"at T :hello world"


def test_tcp_answers_each_line_before_the_client_closes(stamp_tcp):
    window = Window()
    with pysock.client.connect(stamp_tcp.address) as sock:
        lines = LineReader(sock)
        for text in (b"first\n", b"second\n"):
            sock.sendall(text)
            assert window.check(lines.readline()) == b"at T :" + text


def test_tcp_line_split_across_sends_and_final_line_at_half_close(stamp_tcp):
    window = Window()
    with pysock.client.connect(stamp_tcp.address) as sock:
        for part in (b"hel", b"lo\nwor", b"ld"):
            sock.sendall(part)
            time.sleep(0.05)  # separate reads on the server
        sock.shutdown(socket.SHUT_WR)
        reply = recv_until_eof(sock)
    assert window.check(reply) == b"at T :hello\nat T :world"


def test_tcp_many_short_lines_grow_the_reply(stamp_tcp):
    data = b"l\n" * 20000  # every 2 bytes in become 31 out
    window = Window()
    reply = pysock.request(data, stamp_tcp.address, "tcp", timeout=20)
    assert window.check(reply) == b"at T :l\n" * 20000


def test_tcp_long_line_is_answered_in_pieces(stamp_tcp):
    data = os.urandom(3 * LINE_MAX).replace(b"\n", b".") + b"end\n"
    window = Window()
    reply = pysock.request(data, stamp_tcp.address, "tcp", timeout=20)
    assert window.check(reply) == unstamped(transform.apply("stamp", data))
    assert len(STAMP.findall(reply)) == 4


def test_tcp_8mib_of_lines_matches_the_reference(stamp_tcp):
    rng = random.Random(6)
    data = b"".join(b"w" * rng.randrange(0, 300) + b"\n" for _ in range(60000))
    data += os.urandom(1 << 20) + b"tail"  # random bytes: some newlines, some long stretches
    window = Window()
    reply = pysock.request(data, stamp_tcp.address, "tcp", timeout=60)  # sends while it reads
    want = unstamped(transform.apply("stamp", data))
    assert hashlib.sha256(window.check(reply)).digest() == hashlib.sha256(want).digest()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_tcp_matches_the_reference_on_any_bytes(stamp_tcp, data):
    window = Window()
    reply = pysock.request(data, stamp_tcp.address, "tcp")
    assert window.check(reply) == unstamped(transform.apply("stamp", data))


def test_tcp_stats_count_the_larger_reply():
    with pysock.Server(LOCALHOST, 0, "tcp", transform="stamp") as srv:
        reply = pysock.request(b"a\nb\n", srv.address)
        stats = srv.stats
    assert (stats.bytes_in, stats.bytes_out, stats.errors) == (4, len(reply), 0)


# -- the C server over UDP ----------------------------------------------------
def test_udp_datagram_is_one_message(stamp_udp):
    window = Window()
    reply = pysock.request(b"one\ntwo", stamp_udp.address, "udp")
    assert window.check(reply) == b"at T :one\ntwo"


def test_udp_empty_datagram_gets_the_stamp_alone(stamp_udp):
    window = Window()
    assert window.check(pysock.request(b"", stamp_udp.address, "udp")) == b"at T :"


def test_udp_largest_datagram_reply_is_cut_to_fit(stamp_udp):
    data = os.urandom(UDP_MAX)
    window = Window()
    reply = pysock.request(data, stamp_udp.address, "udp")
    assert len(reply) == UDP_MAX
    assert window.check(reply) == unstamped(transform.datagram("stamp", data))
    assert pysock.request(b"next", stamp_udp.address, "udp").endswith(b" :next")


# -- echo: the bytes unchanged -------------------------------------------------
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_echo_transform_returns_the_bytes_unchanged(proto):
    data = bytes(range(256)) * 4
    with pysock.Server(LOCALHOST, 0, proto, transform="echo") as srv:
        assert pysock.request(data, srv.address, proto) == data


# -- the clients against it -------------------------------------------------------
def test_cli_serve_stamp_with_pysock_send():
    window = Window()
    with CliServer("serve", "0", "--transform", "stamp", lines=2) as cli:
        tcp = cli.address("tcp")
        one = run_cli("send", *map(str, tcp), "hello", "there")
        lines = run_cli("send", *map(str, tcp), input=b"first\nsecond\n")
        udp = run_cli("send", "-u", *map(str, cli.address("udp")), input=b"dgram one\ndgram two\n")
    assert one.returncode == lines.returncode == udp.returncode == 0
    assert window.check(one.stdout) == b"at T :hello there\n"
    assert window.check(lines.stdout) == b"at T :first\nat T :second\n"
    assert window.check(udp.stdout) == b"at T :dgram one\nat T :dgram two\n"


def test_tutorial_003_udp_client(stamp_udp):
    # (The tutorial's TCP client sends lines without their newline and waits:
    # a line-based server cannot answer it; `pysock send` is its fixed twin.)
    window = Window()
    printed = seed_clients.udp_client_003(["one", "two", ""], *stamp_udp.address)
    assert [window.check(p.encode()) for p in printed] == [b"at T :one", b"at T :two"]


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed (.ci/run installs it)")
def test_socat_client(stamp_tcp):
    window = Window()
    result = subprocess.run(["socat", "-", f"TCP:{LOCALHOST}:{stamp_tcp.port}"], input=b"via socat\nlast",
                            capture_output=True, timeout=10)
    assert window.check(result.stdout) == b"at T :via socat\nat T :last", result.stderr
