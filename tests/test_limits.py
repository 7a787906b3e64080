"""Limits a server keeps for every client's sake: connections, idle time,
clients that never read their echo."""
from __future__ import annotations

import socket
import threading
import warnings

import pytest
from support import run_cli, wait_for

import pysock
import pysock.client
from pysock.server import ReflectionWarning

PER_CONNECTION = pytest.mark.same_code_as_model("a connection's timers are the model's per-connection code, "
                                                 "which each worker runs unchanged")


def closed_by_server(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.concurrent_clients
def test_max_conns_closes_the_next_one_and_keeps_the_rest(tcp_options):
    with pysock.Server("127.0.0.1", 0, "tcp", max_conns=2, **tcp_options) as srv:
        a = pysock.Connection(srv.address)
        b = pysock.Connection(srv.address)
        assert a.roundtrip(b"a") == b"A" and b.roundtrip(b"b") == b"B"
        with pysock.client.connect(srv.address) as extra:
            assert closed_by_server(extra)
        assert srv.stats.rejected == 1
        assert a.roundtrip(b"still") == b"STILL" and b.roundtrip(b"fine") == b"FINE"
        a.close()
        wait_for(lambda: srv.stats.active == 1)
        assert pysock.request(b"room again", srv.address) == b"ROOM AGAIN"
        b.close()


@PER_CONNECTION
@pytest.mark.concurrent_clients
def test_idle_connection_is_closed_and_a_busy_one_is_not(tcp_options):
    with pysock.Server("127.0.0.1", 0, "tcp", idle_timeout=0.3, **tcp_options) as srv:
        with pysock.client.connect(srv.address) as idle, pysock.Connection(srv.address) as busy:
            for _ in range(8):  # talks more often than the idle timeout
                assert busy.roundtrip(b"tick") == b"TICK"
                threading.Event().wait(0.1)
            assert closed_by_server(idle)
            assert srv.stats.idle_closed == 1
            assert busy.roundtrip(b"alive") == b"ALIVE"


@PER_CONNECTION
@pytest.mark.concurrent_clients
def test_a_client_that_never_reads_is_cut_off_and_others_never_notice(tcp_options):
    with pysock.Server("127.0.0.1", 0, "tcp", send_timeout=0.5, max_unsent=64 << 10, **tcp_options) as srv:
        hog = pysock.client.connect(srv.address, timeout=10)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stopped = threading.Event()

        def flood() -> None:
            chunk = b"x" * (64 << 10)
            try:
                for _ in range(4096):  # 256 MiB at most; the cut-off ends it far sooner
                    hog.sendall(chunk)
            except OSError:
                pass
            stopped.set()

        threading.Thread(target=flood, daemon=True).start()
        with pysock.Connection(srv.address) as other:
            for _ in range(20):
                assert other.roundtrip(b"unaffected") == b"UNAFFECTED"
        wait_for(lambda: srv.stats.slow_closed == 1, timeout=10, state=lambda: (srv.stats, stopped.is_set()))
        assert stopped.wait(10), "the flooding client was never cut off"
        hog.close()
        assert pysock.request(b"next", srv.address) == b"NEXT"


def test_udp_on_a_non_loopback_address_warns_about_reflection():
    with pytest.warns(ReflectionWarning, match="reflect"):
        pysock.Server("0.0.0.0", 0, "udp").stop()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pysock.Server("127.0.0.1", 0, "udp").stop()  # loopback: no warning
        pysock.Server("0.0.0.0", 0, "tcp").stop()    # TCP cannot be spoofed into reflecting


def test_limits_from_the_cli(tmp_path):
    from support import CliServer

    with CliServer("serve", "0", "--tcp", "--max-conns", "1", "--idle-timeout", "0.3") as cli:
        address = cli.address("tcp")
        with pysock.client.connect(address) as first:
            first.sendall(b"x")
            assert first.recv(1) == b"X"
            with pysock.client.connect(address) as second:
                assert closed_by_server(second)  # over --max-conns
            assert closed_by_server(first)   # past --idle-timeout


@pytest.mark.parametrize("option, value", [("--max-conns", "many"), ("--idle-timeout", "soon"),
                                           ("--max-conns", "0"), ("--idle-timeout", "-1")])
def test_bad_limit_is_a_usage_error(option, value):
    result = run_cli("serve", "0", option, value)
    assert result.returncode == 2


def test_bad_limit_from_the_api():
    with pytest.raises(pysock.ConfigError, match="max_conns"):
        pysock.Server(max_conns=0)
    with pytest.raises(pysock.ConfigError, match="idle_timeout"):
        pysock.Server(idle_timeout=-1)
