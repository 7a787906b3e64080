"""The tutorials' own clients, and ordinary tools, against pysock's servers."""
from __future__ import annotations

import shutil
import subprocess

import pytest
import seed_clients


def test_tutorial_udp_client(udp_server):
    host, port = udp_server.address
    assert seed_clients.udp_client_000("hello from the tutorial", host, port) == "HELLO FROM THE TUTORIAL"


def test_tutorial_tcp_client(tcp_server):
    host, port = tcp_server.address
    assert seed_clients.tcp_client_000("hello from the tutorial", host, port) == "From server: HELLO FROM THE TUTORIAL"


def test_tutorial_tcp_client_many_lines(tcp_server):
    host, port = tcp_server.address
    assert seed_clients.tcp_client_003(["one", "two", "three", ""], host, port) == ["ONE", "TWO", "THREE"]


def test_tutorial_udp_client_many_lines(udp_server):
    host, port = udp_server.address
    assert seed_clients.udp_client_003(["one", "two", "", "never"], host, port) == ["ONE", "TWO"]


SOCAT = shutil.which("socat")
NC = shutil.which("nc")


@pytest.mark.skipif(SOCAT is None, reason="socat is not installed (.ci/run installs it)")
def test_socat_tcp_client(tcp_server):
    _socat("tcp", tcp_server)


@pytest.mark.skipif(SOCAT is None, reason="socat is not installed (.ci/run installs it)")
@pytest.mark.same_code_as_model("a datagram is answered by the model's own loop in each worker alike")
def test_socat_udp_client(udp_server):
    _socat("udp", udp_server)


def _socat(proto: str, srv) -> None:
    target = f"{proto.upper()}:127.0.0.1:{srv.port}"
    opts = [] if proto == "tcp" else ["-t", "0.5"]  # UDP: wait for the reply after stdin ends
    result = subprocess.run([SOCAT, *opts, "-", target], input=b"hello socat\n", capture_output=True, timeout=10)
    assert result.stdout == b"HELLO SOCAT\n", result.stderr


@pytest.mark.skipif(NC is None, reason="netcat is not installed (.ci/run installs netcat-openbsd)")
def test_netcat_client(tcp_server):
    result = subprocess.run([NC, "-N", "127.0.0.1", str(tcp_server.port)], input=b"hello netcat\n",
                            capture_output=True, timeout=10)
    assert result.stdout == b"HELLO NETCAT\n", result.stderr
