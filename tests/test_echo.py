"""The echo servers through the Python API, with real sockets on 127.0.0.1."""
from __future__ import annotations

import errno
import hashlib
import os
import socket
import struct
import threading
import time

import pytest
from support import UNRESOLVABLE, run_clients, sockets_on, wait_for

import pysock
import pysock.client
from pysock.client import Connection

ALL_BYTES = bytes(range(256))


def test_tcp_round_trip(tcp_server):
    assert pysock.request(b"hello, world", tcp_server.address, "tcp") == b"HELLO, WORLD"


def test_udp_round_trip(udp_server):
    assert pysock.request(b"hello, world", udp_server.address, "udp") == b"HELLO, WORLD"


@pytest.mark.parametrize("data", [ALL_BYTES, "héllo wörld ß".encode(), b"\xff\xfeabc\x00z{`@"])
def test_tcp_transform_is_bytes_upper(tcp_server, data):
    assert pysock.request(data, tcp_server.address, "tcp") == data.upper()


@pytest.mark.parametrize("data", [ALL_BYTES, "héllo wörld ß".encode(), b"\xff\xfeabc\x00z{`@"])
def test_udp_transform_is_bytes_upper(udp_server, data):
    assert pysock.request(data, udp_server.address, "udp") == data.upper()


def test_udp_zero_length_datagram_gets_zero_length_reply(udp_server):
    with pysock.client.connect(udp_server.address, "udp") as sock:
        sock.send(b"")
        assert sock.recv(100) == b""
        sock.send(b"after")  # and the loop goes on
        assert sock.recv(100) == b"AFTER"


def test_udp_largest_datagram_comes_back_whole(udp_server):
    data = os.urandom(65507)
    assert pysock.request(data, udp_server.address, "udp") == data.upper()


def test_tcp_8mib_stream_with_half_close(tcp_server):
    data = os.urandom(8 << 20)
    reply = pysock.request(data, tcp_server.address, "tcp", timeout=30)  # sends while it reads
    assert len(reply) == len(data)
    assert hashlib.sha256(reply).digest() == hashlib.sha256(data.upper()).digest()


def test_a_large_roundtrip_on_a_kept_connection(tcp_server):
    data = os.urandom(4 << 20)  # more than both sides' socket buffers hold
    with Connection(tcp_server.address, timeout=30) as conn:
        assert conn.roundtrip(data) == data.upper()
        assert conn.roundtrip(b"and then a small one") == b"AND THEN A SMALL ONE"


@pytest.mark.concurrent_clients
def test_fifty_concurrent_clients_while_one_sits_idle(tcp_server):
    idle = pysock.client.connect(tcp_server.address, "tcp")
    barrier = threading.Barrier(50)

    def client(i: int) -> None:
        with Connection(tcp_server.address, timeout=20) as conn:
            barrier.wait(20)  # all 50 connected at once, the idle one too
            for j in range(20):
                msg = f"client {i} message {j} ".encode() * 10
                assert conn.roundtrip(msg) == msg.upper()

    run_clients(50, client)
    assert tcp_server.stats.active >= 1  # the idle one is still open
    idle.sendall(b"still here")
    assert pysock.client.recv_exactly(idle, 10) == b"STILL HERE"
    idle.close()


@pytest.mark.concurrent_clients
def test_a_slow_client_does_not_block_another(tcp_server):
    with Connection(tcp_server.address) as slow, Connection(tcp_server.address) as fast:
        slow.sock.sendall(b"half a messa")  # and never reads
        assert fast.roundtrip(b"quick") == b"QUICK"


def test_tcp_stop_is_prompt_with_clients_connected(tcp_options):
    srv = pysock.Server("127.0.0.1", 0, "tcp", **tcp_options).start()
    loop = tcp_options["model"] == "loop"
    with pysock.client.connect(srv.address) as a, pysock.client.connect(srv.address) as b:
        a.send(b"x")
        assert a.recv(1) == b"X"
        if not loop:  # b is being served too (not still waiting to be accepted)
            b.send(b"y")
            assert b.recv(1) == b"Y"
        srv.stop(timeout=0.2)  # TimeoutError past 200 ms
        assert a.recv(1) == b""  # EOF: the server closed its side
        if loop:
            # The loop never accepted b: it sat in the backlog, which the
            # closing listener resets.
            with pytest.raises(ConnectionResetError):
                b.recv(1)
        else:
            assert b.recv(1) == b""
    assert sockets_on(srv.port, "tcp") == 0  # closed, the listener too


def test_udp_stop_is_prompt_with_clients_connected(udp_options):
    srv = pysock.Server("127.0.0.1", 0, "udp", **udp_options).start()
    with pysock.client.connect(srv.address, "udp") as a, pysock.client.connect(srv.address, "udp"):
        a.send(b"x")
        assert a.recv(1) == b"X"
        srv.stop(timeout=0.2)  # TimeoutError past 200 ms
    assert sockets_on(srv.port, "udp") == 0  # closed


def test_stop_can_be_called_twice_and_from_a_serving_foreground(tcp_options):
    srv = pysock.Server("127.0.0.1", 0, "tcp", **tcp_options)
    threading.Timer(0.1, srv.stop).start()
    srv.serve_forever()  # returns once stopped from the timer thread
    srv.stop()
    srv.stop()


def test_port_is_free_for_a_restart_at_once(tcp_options):
    with pysock.Server("127.0.0.1", 0, "tcp", **tcp_options) as srv:
        port = srv.port
        assert pysock.request(b"a", srv.address) == b"A"
    with pysock.Server("127.0.0.1", port, "tcp", **tcp_options) as again:
        assert pysock.request(b"b", again.address) == b"B"


def test_python_threads_run_while_serving_in_the_foreground(tcp_options):
    """Serving does not hold the GIL (the C loop releases it; the twins wait
    in poll()): a Python thread keeps counting while serve_forever runs in
    this thread."""
    srv = pysock.Server("127.0.0.1", 0, "tcp", **tcp_options)
    counted = []

    def count_then_stop() -> None:
        n = 0
        deadline = time.monotonic() + 0.1
        while time.monotonic() < deadline:
            n += 1
        counted.append(n)
        counted.append(pysock.request(b"gil", srv.address))
        srv.stop()

    threading.Thread(target=count_then_stop).start()
    srv.serve_forever()
    assert counted[0] > 1000
    assert counted[1] == b"GIL"


def test_tcp_counters(tcp_server):
    for i in range(5):
        pysock.request(b"abc" * i, tcp_server.address, "tcp")
    tcp = tcp_server.stats  # each reply ended with the server's close: counted by then
    assert (tcp.accepted, tcp.bytes_in, tcp.bytes_out, tcp.errors) == (5, 30, 30, 0)
    wait_for(lambda: tcp_server.stats.active == 0)  # the server closed every connection


def test_udp_counters(udp_server):
    for i in range(5):
        pysock.request(b"abc" * i, udp_server.address, "udp")
    # A UDP reply can arrive before the server has counted sending it.
    wait_for(lambda: udp_server.stats.bytes_out == 30)
    udp = udp_server.stats
    assert (udp.datagrams, udp.bytes_in, udp.bytes_out, udp.errors) == (5, 30, 30, 0)


def test_server_survives_a_client_that_resets(tcp_server):
    sock = pysock.client.connect(tcp_server.address)
    sock.sendall(os.urandom(1 << 20))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST, mid-echo
    assert pysock.request(b"next", tcp_server.address) == b"NEXT"


def test_udp_server_survives_a_vanished_sender(udp_server):
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gone.sendto(b"x" * 100, udp_server.address)
    gone.close()  # the reply meets a closed port: ICMP unreachable
    time.sleep(0.05)
    assert pysock.request(b"next", udp_server.address, "udp") == b"NEXT"


def test_bad_configuration_fails_before_c():
    with pytest.raises(pysock.ConfigError, match="port 70000 is out of range"):
        pysock.Server(port=70000)
    with pytest.raises(pysock.ConfigError, match="port -1 is out of range"):
        pysock.Server(port=-1)
    with pytest.raises(pysock.ConfigError, match="port must be a whole number"):
        pysock.Server(port="80")
    with pytest.raises(pysock.ConfigError, match="unknown proto 'sctp'"):
        pysock.Server(proto="sctp")
    with pytest.raises(pysock.ConfigError, match="unknown transform"):
        pysock.Server(transform="reverse")


def test_unresolvable_host_is_one_clear_error(tcp_options):
    with pytest.raises(pysock.ResolveError, match=r"x{64}\.invalid"):
        pysock.Server(host=UNRESOLVABLE, **tcp_options)


def test_port_in_use_is_an_oserror_naming_the_address(tcp_server):
    with pytest.raises(OSError, match=f"127.0.0.1:{tcp_server.port}.*in use") as info:
        pysock.Server("127.0.0.1", tcp_server.port, "tcp", backend=tcp_server.config.backend,
                      model=tcp_server.config.model)
    assert info.value.errno == 98  # EADDRINUSE


def test_udp_port_in_use_is_refused_not_shared(udp_server):
    """A second UDP server on a port must fail, not quietly take a share of
    the first one's datagrams."""
    with pytest.raises(OSError) as info:
        pysock.Server("127.0.0.1", udp_server.port, "udp", backend=udp_server.config.backend)
    assert info.value.errno == errno.EADDRINUSE


def test_a_host_name_binds_to_its_address(udp_options):
    with pysock.Server("localhost", 0, "udp", **udp_options) as srv:
        assert srv.host == "127.0.0.1"
        assert pysock.request(b"named", srv.address, "udp") == b"NAMED"
