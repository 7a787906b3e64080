"""The pytest plugin, as a user's test suite sees it (run in a fresh pytest)."""
from __future__ import annotations

import subprocess
import sys


from conftest import cli_env

pytest_plugins = ["pytester"]

USER_TESTS = '''
import socket, time
import pytest
import pysock

def test_tcp(pysock_tcp_echo):
    assert pysock_tcp_echo.host == "127.0.0.1" and pysock_tcp_echo.port > 0
    assert pysock.request(b"hi", pysock_tcp_echo.address) == b"HI"
    assert pysock_tcp_echo.stats.accepted == 1

def test_udp(pysock_udp_echo):
    assert pysock.request(b"hi", pysock_udp_echo.address, "udp") == b"HI"

@pytest.mark.pysock(transform="echo")
def test_marker(pysock_tcp_echo):
    assert pysock.request(b"hi", pysock_tcp_echo.address) == b"hi"

def test_factory(pysock_server):
    a = pysock_server("tcp", transform="echo")
    b = pysock_server("udp")
    assert a.port != 0 and b.port != 0
    assert pysock.request(b"x", a.address) == b"x"
    assert pysock.request(b"x", b.address, "udp") == b"X"

def test_failing_with_a_client_still_connected(pysock_tcp_echo):
    sock = socket.create_connection(pysock_tcp_echo.address)
    sock.sendall(b"unread")
    assert False, "this test fails on purpose"
'''


def test_fixtures_in_a_users_suite(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(timeout=60)  # the plugin comes from the entry point
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*this test fails on purpose*"])


def test_plugin_is_registered_through_the_entry_point():
    from importlib.metadata import entry_points

    found = entry_points()
    # select(): Python 3.10 and later; before, a dict of groups
    group = found.select(group="pytest11") if hasattr(found, "select") else found.get("pytest11", [])
    names = {ep.value for ep in group}
    assert "pysock.pytest_plugin" in names


def test_plugin_import_does_not_load_the_c_core():
    code = "import sys, pysock.pytest_plugin; print('pysock._pysock' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=cli_env())
    assert out.stdout.strip() == "False", out.stderr
