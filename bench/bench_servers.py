"""One round trip per backend and model, on a connection (or a connected UDP
socket) kept open.  The client is Python and the server runs in a process
of its own, so each figure is the whole round trip as a Python client sees
it; `pysock bench` measures the servers alone, with a C client."""
from __future__ import annotations

import socket

import pytest
from servers import ServerProcess

from pysock.client import Connection
from pysock.config import MODELS, available_models

MESSAGE = b"the quick brown fox jumps over the lazy dog " * 1 + b"0123456789abcdefghij"  # 64 bytes


def _kinds(proto: str) -> list:
    return [pytest.param((backend, model), id=f"{backend}-{model}",
                         marks=[] if model in available_models(backend, proto)
                         else [pytest.mark.skip(reason=f"{model} is not installed")])
            for backend in ("c", "python") for model in MODELS[(backend, proto)]]


@pytest.fixture(scope="module", params=_kinds("tcp"))
def tcp_address(request):
    server = ServerProcess("tcp", *request.param)
    yield server.address
    server.close()


@pytest.fixture(scope="module", params=_kinds("udp"))
def udp_address(request):
    server = ServerProcess("udp", *request.param)
    yield server.address
    server.close()


@pytest.mark.benchmark(group="roundtrip-tcp-64B")
def test_tcp_round_trip(benchmark, tcp_address):
    assert len(MESSAGE) == 64
    with Connection(tcp_address) as conn:
        reply = benchmark(conn.roundtrip, MESSAGE)
    assert reply == MESSAGE.upper()


@pytest.mark.benchmark(group="roundtrip-udp-64B")
def test_udp_round_trip(benchmark, udp_address):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(udp_address)

        def roundtrip() -> bytes:
            sock.send(MESSAGE)
            return sock.recv(65536)

        reply = benchmark(roundtrip)
    assert reply == MESSAGE.upper()
