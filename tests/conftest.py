"""The tests' fixtures and tiers.  Helpers are in support.py.

Two tiers:
- the default (``python -m pytest``): every unit test, and every contract
  point on every engine of engines.py;
- the full one (``python -m pytest --full``): the default tier and the
  exhaustive cases marked ``slow`` (every transform of the memory bound,
  1,000 start/stop cycles, long property runs, ...).  CI runs it.
"""
from __future__ import annotations

import faulthandler
import os

import pytest
from engines import is_variant
from support import LOOP_IS_SEQUENTIAL, server_kinds

TEST_TIMEOUT = 120  # seconds; a hung test ends the run with every thread's traceback


def pytest_addoption(parser) -> None:
    parser.addoption("--full", action="store_true",
                     help="run the exhaustive tier too (tests marked slow): what CI runs")


def pytest_report_header(config) -> str:
    if config.getoption("--full"):
        return "pysock tier: full (the default tier and the cases marked slow)"
    return "pysock tier: default (--full adds the exhaustive cases marked slow)"


def pytest_xdist_auto_num_workers(config) -> int:
    """-n auto: two processes per CPU (at most 8).  The tests spend most of
    their time waiting for sockets and timers, not computing."""
    return min(8, 2 * (os.cpu_count() or 1))


def pytest_configure(config) -> None:
    for line in (
        "slow: an exhaustive case, run by --full (CI) and not by the default tier",
        "concurrent_clients: the test needs a server that serves several TCP clients at once "
        "(not the loop model)",
        "same_code_as_model(reason): what the test checks is the model's per-connection code, "
        "which its variants (workers, spinning) run unchanged: on them, the case is slow",
        "twins_are_slow(reason): on the Python twins the case is slow, for the reason given",
    ):
        config.addinivalue_line("markers", line)


def _engine_options(item) -> dict | None:
    params = getattr(item, "callspec", None)
    if params is None:
        return None
    return params.params.get("tcp_options") or params.params.get("udp_options")


@pytest.hookimpl(tryfirst=True)  # before -m selects by the marks added here
def pytest_collection_modifyitems(config, items) -> None:
    """Variants of a model on a same_code_as_model test are slow, and so
    are twins on a twins_are_slow one; without --full (or a -m of the
    user's own) the slow cases are deselected."""
    for item in items:
        options = _engine_options(item)
        if options is None:
            continue
        if is_variant(options) and item.get_closest_marker("same_code_as_model"):
            item.add_marker(pytest.mark.slow)
        if options["backend"] == "python" and item.get_closest_marker("twins_are_slow"):
            item.add_marker(pytest.mark.slow)
    if config.getoption("--full") or config.getoption("markexpr"):
        return
    kept = [item for item in items if item.get_closest_marker("slow") is None]
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("slow")])
        items[:] = kept


@pytest.fixture(autouse=True)
def _bounded_in_time():
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


# -- servers: every behavioural test runs against every engine --------------------
def _options(request) -> dict:
    """The fixture's backend and model; a test marked concurrent_clients is
    skipped, with the reason, for the one-at-a-time loop model."""
    options = request.param
    if options["model"] == "loop" and request.node.get_closest_marker("concurrent_clients"):
        pytest.skip(LOOP_IS_SEQUENTIAL)
    return options


@pytest.fixture(params=server_kinds("tcp"))
def tcp_options(request) -> dict:
    """backend= and model= for a TCP server, one of each kind per test."""
    return _options(request)


@pytest.fixture(params=server_kinds("udp"))
def udp_options(request) -> dict:
    """backend= and model= for a UDP server, one of each kind per test."""
    return _options(request)


@pytest.fixture
def tcp_server(tcp_options):
    import pysock

    with pysock.Server("127.0.0.1", 0, "tcp", **tcp_options) as srv:
        yield srv


@pytest.fixture
def udp_server(udp_options):
    import pysock

    with pysock.Server("127.0.0.1", 0, "udp", **udp_options) as srv:
        yield srv


@pytest.fixture
def many_descriptors():
    """Room for the memory tests' hundreds of connections."""
    import resource

    from memory import MEM_CONNS

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4 * MEM_CONNS + 100:
        pytest.skip(f"needs {4 * MEM_CONNS + 100} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
