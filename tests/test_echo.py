"""The echo servers through the Python API, with real sockets on 127.0.0.1."""
from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time

import pytest

import pysock
from conftest import UNRESOLVABLE
from pysock.client import Connection, recv_until_eof
from conftest import wait_for

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
    with pysock.client.connect(tcp_server.address, "tcp", timeout=30) as sock:
        def send_then_half_close() -> None:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send_then_half_close)
        sender.start()
        reply = recv_until_eof(sock)
        sender.join(30)
    assert len(reply) == len(data)
    assert hashlib.sha256(reply).digest() == hashlib.sha256(data.upper()).digest()


def test_fifty_concurrent_clients_while_one_sits_idle(tcp_server):
    idle = pysock.client.connect(tcp_server.address, "tcp")
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def client(i: int) -> None:
        try:
            with Connection(tcp_server.address, timeout=20) as conn:
                barrier.wait(20)  # all 50 connected at once, the idle one too
                for j in range(20):
                    msg = f"client {i} message {j} ".encode() * 10
                    assert conn.roundtrip(msg) == msg.upper()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert tcp_server.stats.active >= 1  # the idle one is still open
    idle.sendall(b"still here")
    assert pysock.client.recv_exactly(idle, 10) == b"STILL HERE"
    idle.close()


def test_a_slow_client_does_not_block_another(tcp_server):
    with Connection(tcp_server.address) as slow, Connection(tcp_server.address) as fast:
        slow.sock.sendall(b"half a messa")  # and never reads
        assert fast.roundtrip(b"quick") == b"QUICK"


def test_stop_is_prompt_with_clients_connected(proto_model):
    proto, model = proto_model
    srv = pysock.Server("127.0.0.1", 0, proto, model=model).start()
    with pysock.client.connect(srv.address, proto) as a, pysock.client.connect(srv.address, proto) as b:
        a.send(b"x")
        assert a.recv(1) == b"X"
        srv.stop(timeout=0.2)  # TimeoutError past 200 ms
        if proto == "tcp":
            assert a.recv(1) == b""  # EOF: the server closed its side
            assert b.recv(1) == b""
    with pytest.raises(OSError):
        socket.create_connection(srv.address, timeout=1) if proto == "tcp" else pysock.request(b"x", srv.address, "udp", timeout=0.3)


def test_stop_can_be_called_twice_and_from_a_serving_foreground(tcp_model):
    srv = pysock.Server("127.0.0.1", 0, "tcp", model=tcp_model)
    threading.Timer(0.1, srv.stop).start()
    srv.serve_forever()  # returns once stopped from the timer thread
    srv.stop()
    srv.stop()


def test_port_is_free_for_a_restart_at_once(tcp_model):
    with pysock.Server("127.0.0.1", 0, "tcp", model=tcp_model) as srv:
        port = srv.port
        assert pysock.request(b"a", srv.address) == b"A"
    with pysock.Server("127.0.0.1", port, "tcp", model=tcp_model) as again:
        assert pysock.request(b"b", again.address) == b"B"


def test_python_threads_run_while_c_serves(tcp_model):
    """The C loop does not hold the GIL: a Python thread keeps counting while
    serve_forever sits in C in this thread."""
    srv = pysock.Server("127.0.0.1", 0, "tcp", model=tcp_model)
    counted = []

    def count_then_stop() -> None:
        n = 0
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            n += 1
        counted.append(n)
        counted.append(pysock.request(b"gil", srv.address))
        srv.stop()

    threading.Thread(target=count_then_stop).start()
    srv.serve_forever()
    assert counted[0] > 1000
    assert counted[1] == b"GIL"


def test_counters(tcp_server, udp_server):
    for i in range(5):
        pysock.request(b"abc" * i, tcp_server.address, "tcp")
        pysock.request(b"abc" * i, udp_server.address, "udp")
    tcp = tcp_server.stats  # each reply ended with the server's close: counted by then
    assert (tcp.accepted, tcp.bytes_in, tcp.bytes_out, tcp.errors) == (5, 30, 30, 0)
    # A UDP reply can arrive before the server has counted sending it.
    wait_for(lambda: udp_server.stats.bytes_out == 30)
    udp = udp_server.stats
    assert (udp.datagrams, udp.bytes_in, udp.bytes_out, udp.errors) == (5, 30, 30, 0)
    wait_for(lambda: tcp_server.stats.active == 0)  # the server closed every connection


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


def test_unresolvable_host_is_one_clear_error():
    with pytest.raises(pysock.ResolveError, match="x{64}.invalid"):
        pysock.Server(host=UNRESOLVABLE)


def test_port_in_use_is_an_oserror_naming_the_address(tcp_server):
    with pytest.raises(OSError, match=f"127.0.0.1:{tcp_server.port}.*in use") as info:
        pysock.Server("127.0.0.1", tcp_server.port, "tcp")
    assert info.value.errno == 98  # EADDRINUSE


def test_a_host_name_binds_to_its_address():
    with pysock.Server("localhost", 0, "udp") as srv:
        assert srv.host == "127.0.0.1"
        assert pysock.request(b"named", srv.address, "udp") == b"NAMED"
