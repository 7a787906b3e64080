"""IPv6: the servers on ::1 (a sockaddr_in6 filled in C), and the clients."""
from __future__ import annotations

import pytest
from stamps import Window
from support import CliServer, needs_ipv6, run_cli

import pysock

pytestmark = needs_ipv6


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_api_server_on_ipv6_loopback(proto):
    with pysock.Server("::1", 0, proto) as srv:
        assert srv.address[0] == "::1" and srv.port > 0
        assert srv.url == f"{proto}://[::1]:{srv.port}"
        assert pysock.request(b"over ipv6", srv.address, proto) == b"OVER IPV6"


def test_ipv6_server_does_not_take_ipv4():
    with pysock.Server("::1", 0, "tcp") as v6:
        with pysock.Server("127.0.0.1", v6.port, "tcp") as v4:  # the same port: a socket of its own
            assert pysock.request(b"four", v4.address) == b"FOUR"
            assert pysock.request(b"six", v6.address) == b"SIX"


def test_cli_serve_and_send_over_ipv6():
    window = Window()
    with CliServer("serve", "0", "-b", "::1", "--transform", "stamp", lines=2) as cli:
        port = cli.address("tcp")[1]
        assert cli.urls == [f"tcp://[::1]:{port}", f"udp://[::1]:{port}"]
        tcp = run_cli("send", "::1", str(port), "hi")
        udp = run_cli("send", "-u", "::1", str(port), "hi")
    assert tcp.returncode == udp.returncode == 0
    assert window.check(tcp.stdout) == window.check(udp.stdout) == b"at T :hi\n"
