"""The pytest plugin, as a user's test suite sees it (run in a fresh pytest)."""
from __future__ import annotations

import subprocess
import sys

from support import cli_env

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

@pytest.mark.pysock(faults=pysock.Faults(latency=0.1, seed=12345))
def test_faults_from_the_marker(pysock_tcp_echo):
    start = time.monotonic()
    assert pysock.request(b"hi", pysock_tcp_echo.address) == b"HI"
    assert time.monotonic() - start >= 0.1

@pytest.mark.pysock(faults=pysock.Faults(drop=1.0, seed=4242))
def test_failing_under_faults(pysock_udp_echo):
    assert False, "this test fails on purpose, under faults"
'''


def test_fixtures_in_a_users_suite(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(timeout=60)  # the plugin comes from the entry point
    result.assert_outcomes(passed=5, failed=2)
    result.stdout.fnmatch_lines(["*this test fails on purpose*"])
    # the failed test under faults shows their seed, to replay it
    result.stdout.fnmatch_lines(["*pysock faults*", "udp://127.0.0.1:*Faults(*drop=1.0*seed=4242)*"])


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


EDGE_TESTS = '''
import pytest
import pysock

@pytest.mark.pysock(faults=pysock.Faults(drop=1.0, latency=0.05, seed=3))
def test_a_udp_fault_in_the_marker_leaves_the_tcp_fixture_working(pysock_tcp_echo, pysock_udp_echo):
    assert pysock.request(b"tcp", pysock_tcp_echo.address) == b"TCP"  # latency only
    assert pysock_tcp_echo.faults.drop == 0.0 and pysock_udp_echo.faults.drop == 1.0

@pytest.mark.pysock(proto="udp")
def test_proto_in_the_marker_is_a_clear_error(pysock_tcp_echo):
    pass

def test_one_failing_stop_does_not_leave_the_others_serving(pysock_server, request):
    a, b = pysock_server("tcp"), pysock_server("tcp")
    def failing_stop(timeout=1.0):
        raise RuntimeError("a stop that fails on purpose")
    a.stop = failing_stop
    request.config.cache.set("pysock/second", b.port)

def test_the_second_server_has_stopped(request):
    import socket
    port = request.config.cache.get("pysock/second", None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free: the second server was stopped
'''


def test_marker_faults_proto_and_a_failing_stop(pytester):
    pytester.makepyfile(test_edges=EDGE_TESTS)
    result = pytester.runpytest_subprocess("-p", "cacheprovider", timeout=60)
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(["*proto=...*the fixture says the protocol (tcp for pysock_tcp_echo)*",
                                 "*a stop that fails on purpose*"])


PROXY_TESTS = '''
import time
import pytest
import pysock


@pytest.mark.pysock_proxy(faults=pysock.Faults(latency=0.1))
def test_proxy_from_the_marker(pysock_tcp_echo, pysock_proxy):
    proxy = pysock_proxy(pysock_tcp_echo.url)
    start = time.monotonic()
    assert pysock.request(b"hi", proxy.address) == b"HI"
    assert time.monotonic() - start >= 0.1


def test_proxy_options_win_over_nothing(pysock_tcp_echo, pysock_proxy):
    proxy = pysock_proxy(pysock_tcp_echo.address, backend="python")
    assert pysock.request(b"x", proxy.address) == b"X"


@pytest.mark.pysock_proxy(faults_up=pysock.Faults(stall=True, seed=777))
def test_failing_behind_a_proxy(pysock_tcp_echo, pysock_proxy):
    pysock_proxy(pysock_tcp_echo.url)
    assert False, "fails on purpose, behind a proxy"
'''


def test_the_proxy_fixture_in_a_users_suite(pytester):
    pytester.makepyfile(test_user=PROXY_TESTS)
    result = pytester.runpytest_subprocess(timeout=60)
    result.assert_outcomes(passed=2, failed=1)
    # the seed of each direction's faults is reported, to replay them
    result.stdout.fnmatch_lines(["*pysock faults*", "tcp://127.0.0.1:* faults_up: Faults(*stall=True*seed=777)*"])
