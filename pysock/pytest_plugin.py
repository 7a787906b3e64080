"""pytest fixtures for an echo backend in your own tests (registered through
the ``pytest11`` entry point, so installing pysock is all it takes).

    def test_my_client(pysock_tcp_echo):
        assert my_client.call(pysock_tcp_echo.address, b"hi") == b"HI"

    @pytest.mark.pysock(transform="echo", idle_timeout=1.0)
    def test_with_options(pysock_udp_echo): ...

    @pytest.mark.pysock(faults=pysock.Faults(latency=0.2))
    def test_slow_server(pysock_tcp_echo): ...

    def test_many(pysock_server):
        a = pysock_server("tcp", transform="echo")
        b = pysock_server("udp")

    @pytest.mark.pysock_proxy(faults=pysock.Faults(latency=0.1))
    def test_my_client_behind_faults(pysock_proxy, my_database):
        proxy = pysock_proxy(my_database.url)    # or (host, port)
        my_client.connect(proxy.address)
        proxy.set_faults(pysock.Faults(reset_after_time=0.5))

Every server binds 127.0.0.1 port 0 itself (no pre-picked port that could
race), is serving before the test starts, runs in a daemon thread and is
stopped after the test.  This module imports nothing of pysock's C core
until a fixture is used."""
from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from pysock.engines.lifecycle import Lifecycle
    from pysock.proxy.proxy import Proxy
    from pysock.server import Server

STOP_TIMEOUT = 0.2  # seconds; a stuck stop fails the test instead of hanging the run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pysock(**options): options for the pysock_tcp_echo / pysock_udp_echo servers "
        "(transform, backend, model, max_conns, idle_timeout, faults=pysock.Faults(...), ...)",
    )
    config.addinivalue_line(
        "markers",
        "pysock_proxy(**options): options for the proxies pysock_proxy makes "
        "(backend, faults=pysock.Faults(...), faults_up=..., idle_timeout, ...)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failed test that used a server with faults shows their seed, so the
    same faults can be replayed (Faults(..., seed=N))."""
    outcome = yield
    report = outcome.get_result()
    servers = getattr(item, "_pysock_servers", None)
    if report.failed and servers:
        lines = [f"{srv.url}: {srv.faults!r}" for srv in servers if srv.faults is not None]
        lines += [f"{srv.url} faults_up: {srv.faults_up!r}" for srv in servers
                  if isinstance(srv, _proxy_class()) and srv.faults_up is not None]
        if lines:
            report.sections.append(("pysock faults", "\n".join(lines)))


@pytest.fixture
def pysock_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """A factory: ``pysock_server(proto="tcp", **options)`` returns a started
    pysock.Server on 127.0.0.1 and a free port; all are stopped afterwards."""
    from pysock.server import Server

    def make(proto: str = "tcp", host: str = "127.0.0.1", **options: Any) -> Server:
        return Server(host, 0, proto, **options)

    yield from _started(request, make)


def _started(request: pytest.FixtureRequest, make: Callable[..., Lifecycle]) -> Iterator[Callable[..., Any]]:
    """A factory fixture's body: what make() returns is kept for the report,
    started, and stopped after the test (all of them, whatever fails)."""
    servers = _servers_of(request)
    made: list[Lifecycle] = []

    def start(*args: Any, **options: Any) -> Lifecycle:
        srv = make(*args, **options)
        servers.append(srv)
        made.append(srv)
        return srv.start()

    try:
        yield start
    finally:
        stop_all(made)


def _proxy_class() -> type[Proxy]:
    from pysock.proxy.proxy import Proxy

    return Proxy


def _servers_of(request: pytest.FixtureRequest) -> list[Lifecycle]:
    """The test's servers and proxies, in one list the report reads."""
    if not hasattr(request.node, "_pysock_servers"):
        request.node._pysock_servers = []
    servers: list[Lifecycle] = request.node._pysock_servers
    return servers


@pytest.fixture
def pysock_proxy(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """A factory: ``pysock_proxy(upstream, **options)`` returns a started
    pysock.Proxy on 127.0.0.1 and a free port, in front of upstream (a URL
    as serve prints it, or (host, port)); a pysock_proxy marker gives the
    default options.  All are stopped afterwards; a failed test reports
    their faults' seeds."""
    from pysock.proxy.proxy import Proxy

    marker = request.node.get_closest_marker("pysock_proxy")
    defaults = dict(marker.kwargs) if marker else {}

    def make(upstream: str | tuple[str, int], **options: Any) -> Proxy:
        return Proxy(upstream, **{**defaults, **options})

    yield from _started(request, make)


def stop_all(servers: list[Lifecycle]) -> None:
    """Stop every server, then raise the first failure any stop() had: one
    that fails must not leave the others serving into later tests."""
    failures: list[Exception] = []
    for srv in servers:
        try:
            srv.stop(timeout=STOP_TIMEOUT)
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


def _marker_options(request: pytest.FixtureRequest, proto: str) -> dict[str, Any]:
    """The pysock marker's server options for a proto fixture.  Its faults
    go to each server for the fields that server's protocol takes (a test
    with both fixtures may set drop for UDP and slice for TCP)."""
    from pysock.errors import ConfigError
    from pysock.faults import Faults

    marker = request.node.get_closest_marker("pysock")
    options = dict(marker.kwargs) if marker else {}
    if "proto" in options:
        raise ConfigError(f"@pytest.mark.pysock(proto=...): the fixture says the protocol ({proto} for "
                          f"pysock_{proto}_echo); use pysock_server(proto, ...) to choose it")
    if isinstance(options.get("faults"), Faults):
        options["faults"] = options["faults"].only_for(proto)
    return options


@pytest.fixture
def pysock_tcp_echo(pysock_server: Callable[..., Server], request: pytest.FixtureRequest) -> Server:
    """A running TCP echo server (uppercase unless a pysock marker says otherwise)."""
    return pysock_server("tcp", **_marker_options(request, "tcp"))


@pytest.fixture
def pysock_udp_echo(pysock_server: Callable[..., Server], request: pytest.FixtureRequest) -> Server:
    """A running UDP echo server (uppercase unless a pysock marker says otherwise)."""
    return pysock_server("udp", **_marker_options(request, "udp"))
