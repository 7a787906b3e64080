"""struct sockaddr_in and struct hostent, as the C library fills them."""
from __future__ import annotations

import socket
import struct

import pytest
from support import UNRESOLVABLE

import pysock


@pytest.mark.parametrize("host, port", [("127.0.0.1", 12000), ("0.0.0.0", 0), ("10.1.2.3", 65535)])
def test_sockaddr_in_matches_struct_and_inet_aton(host, port):
    expected = (struct.pack("=H", socket.AF_INET)      # sin_family: host byte order
                + struct.pack("!H", port)               # sin_port: network byte order
                + socket.inet_aton(host)                # sin_addr: network byte order
                + bytes(8))                             # sin_zero
    assert pysock.sockaddr_in(host, port) == expected


def test_sockaddr_in_takes_a_name_through_hostent():
    assert pysock.sockaddr_in("localhost", 80)[4:8] == socket.inet_aton(socket.gethostbyname("localhost"))


def test_sockaddr_in6_fills_family_port_and_address():
    raw = pysock.sockaddr_in6("::1", 12000)
    assert len(raw) == 28
    assert raw[:2] == struct.pack("=H", socket.AF_INET6)
    assert raw[2:4] == struct.pack("!H", 12000)
    assert raw[8:24] == socket.inet_pton(socket.AF_INET6, "::1")


def test_resolve_localhost_matches_gethostbyname_ex():
    name, aliases, addresses = socket.gethostbyname_ex("localhost")
    entry = pysock.resolve("localhost")
    assert (entry.name, entry.aliases, entry.addresses) == (name, aliases, addresses)
    assert (entry.addrtype, entry.length) == (socket.AF_INET, 4)


def test_resolve_unknown_name_is_a_resolve_error():
    with pytest.raises(pysock.ResolveError, match=r"x{64}\.invalid"):
        pysock.resolve(UNRESOLVABLE)


def test_resolve_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: pysock.resolve("localhost"), range(200)))
    assert all(r == results[0] for r in results)
