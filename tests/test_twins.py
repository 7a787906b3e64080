"""What the C servers and their pure-Python twins must share beyond the
round trip: the address families, the transform's contract, and what the
one-at-a-time loop model does instead of serving at once.  (The limits are
test_limits.py's and test_fast_paths.py's, on every engine.)"""
from __future__ import annotations

import os
import signal
import socket
import sys

import pytest
from support import CliServer, needs_ipv6, one_worker, server_kinds

import pysock
import pysock.client


# -- address families -------------------------------------------------------------
def test_tcp_over_a_unix_socket_and_the_path_is_removed(tcp_options, tmp_path):
    path = str(tmp_path / "echo.sock")
    with pysock.Server(proto="tcp", path=path, **one_worker(tcp_options)) as srv:
        assert srv.address == path and srv.url == f"unix://{path}"
        assert pysock.request(b"over unix", path) == b"OVER UNIX"
    assert not os.path.exists(path)


def test_udp_over_a_unix_socket_and_the_path_is_removed(udp_options, tmp_path):
    path = str(tmp_path / "echo.sock")
    with pysock.Server(proto="udp", path=path, **one_worker(udp_options)):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.bind(str(tmp_path / "client.sock"))  # somewhere for the reply to go
            client.settimeout(5)
            client.sendto(b"datagram", path)
            assert client.recv(100) == b"DATAGRAM"
    assert not os.path.exists(path)


@needs_ipv6
def test_tcp_over_ipv6(tcp_options):
    with pysock.Server("::1", 0, "tcp", **tcp_options) as srv:
        assert srv.host == "::1" and srv.url.startswith("tcp://[::1]:")
        assert pysock.request(b"six", srv.address) == b"SIX"


@needs_ipv6
def test_udp_over_ipv6(udp_options):
    with pysock.Server("::1", 0, "udp", **udp_options) as srv:
        assert pysock.request(b"six", srv.address, "udp") == b"SIX"


# -- transforms ----------------------------------------------------------------------
def test_tcp_echo_transform_sends_bytes_back_unchanged(tcp_options):
    data = bytes(range(256))
    with pysock.Server("127.0.0.1", 0, "tcp", transform="echo", **tcp_options) as srv:
        assert pysock.request(data, srv.address) == data


def test_udp_echo_transform_sends_bytes_back_unchanged(udp_options):
    data = bytes(range(256))
    with pysock.Server("127.0.0.1", 0, "udp", transform="echo", **udp_options) as srv:
        assert pysock.request(data, srv.address, "udp") == data


class _Doubler:
    """A transform whose reply is not the length of its input, and which
    owes something at the end: what the twins may not assume away."""

    def read_max(self, room: int) -> int:
        return 65536

    def feed(self, data: bytes) -> bytes:
        return data + data

    def finish(self) -> bytes:
        return b"<end>"

    def datagram(self, data: bytes) -> bytes:
        return b"<" + data + data + b">"


@pytest.fixture
def doubler(monkeypatch):
    from pysock import config, transform

    monkeypatch.setitem(transform.TRANSFORMS, "double", _Doubler)
    monkeypatch.setattr(config, "TRANSFORMS", config.TRANSFORMS + ("double",))
    return "double"


def _python_only(params: list) -> list:
    return [p for p in params if p.values[0]["backend"] == "python"]


@pytest.mark.parametrize("options", _python_only(server_kinds("tcp")))
def test_twin_tcp_sends_what_the_transform_returns(options, doubler):
    with pysock.Server("127.0.0.1", 0, "tcp", transform=doubler, **options) as srv:
        assert pysock.request(b"ab", srv.address) == b"abab<end>"
        with pysock.client.connect(srv.address) as sock:
            sock.sendall(b"xyz")
            assert pysock.client.recv_exactly(sock, 6) == b"xyzxyz"


@pytest.mark.parametrize("options", _python_only(server_kinds("udp")))
def test_twin_udp_answers_each_datagram_by_the_datagram_rule(options, doubler):
    with pysock.Server("127.0.0.1", 0, "udp", transform=doubler, **options) as srv:
        assert pysock.request(b"ab", srv.address, "udp") == b"<abab>"
        assert pysock.request(b"c\nd", srv.address, "udp") == b"<c\ndc\nd>"


# -- the loop model -------------------------------------------------------------------
def test_loop_model_serves_clients_one_after_another():
    with pysock.Server("127.0.0.1", 0, "tcp", backend="python", model="loop") as srv:
        first = pysock.client.connect(srv.address, timeout=5)
        first.sendall(b"first")
        assert first.recv(5) == b"FIRST"
        with pysock.client.connect(srv.address, timeout=0.3) as second:
            second.sendall(b"second")  # connected (the backlog holds it), not served
            with pytest.raises(socket.timeout):
                second.recv(6)
            assert srv.stats.accepted == 1
            first.close()  # the loop goes back to accept()
            second.settimeout(5)
            assert second.recv(6) == b"SECOND"
        assert srv.stats.accepted == 2


# -- configuration --------------------------------------------------------------------
def test_uvloop_model_without_uvloop_is_a_clear_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    with pytest.raises(pysock.ConfigError, match=r"needs uvloop.*pip install uvloop"):
        pysock.Server(backend="python", model="uvloop")


def test_a_model_the_backend_does_not_have_is_a_config_error():
    with pytest.raises(pysock.ConfigError, match="unknown model for python udp 'threads'"):
        pysock.Server(proto="udp", backend="python", model="threads")
    with pytest.raises(pysock.ConfigError, match="unknown backend 'rust'"):
        pysock.Server(backend="rust")


@pytest.mark.parametrize("options", _python_only(server_kinds("tcp")))
def test_cli_serves_the_python_backend(options):
    args = ["serve", "0", "--tcp", "--backend", options["backend"], "--model", options["model"]]
    with CliServer(*args) as cli:
        assert pysock.request(b"from the cli", cli.address("tcp")) == b"FROM THE CLI"
        code, err = cli.interrupt(signal.SIGTERM, timeout=5)
    assert code == 0 and b"Traceback" not in err
