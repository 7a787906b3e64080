"""Property tests: for any bytes, split into sends any way, the echo is
exactly the reference transform of the whole input."""
from __future__ import annotations

import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pysock
import pysock.client
from pysock import transform
from pysock.client import recv_until_eof

FIXTURE_OK = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def split_bytes(draw):
    data = draw(st.binary(max_size=4096))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:])]


@FIXTURE_OK
@given(chunks=split_bytes())
def test_tcp_echo_of_any_split_is_the_transform_of_the_whole(tcp_server, chunks):
    with pysock.client.connect(tcp_server.address) as sock:
        for chunk in chunks:
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        reply = recv_until_eof(sock)
    assert reply == transform.apply(tcp_server.config.transform, b"".join(chunks))


@FIXTURE_OK
@given(data=st.binary(max_size=65507))
def test_udp_echo_of_any_datagram_is_its_transform(udp_server, data):
    assert pysock.request(data, udp_server.address, "udp") == transform.datagram(udp_server.config.transform, data)
