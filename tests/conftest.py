"""Shared helpers for the tests: servers on 127.0.0.1 port 0, the CLI as a
subprocess, and a hard time bound on every test."""
from __future__ import annotations

import faulthandler
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCALHOST = "127.0.0.1"
TEST_TIMEOUT = 120  # seconds; a hung test ends the run with every thread's traceback


@pytest.fixture(autouse=True)
def _bounded_in_time():
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def cli_env() -> dict:
    """The environment for a pysock subprocess: this checkout's package first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, input: bytes = b"", timeout: float = 20) -> subprocess.CompletedProcess:
    """Run ``python -m pysock ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "pysock", *args], input=input,
                          capture_output=True, timeout=timeout, env=cli_env())


class CliServer:
    """``python -m pysock ARGS`` running in the background, its ready lines read."""

    def __init__(self, *args: str, lines: int = 1, timeout: float = 20) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "pysock", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=cli_env())
        self.urls = [self.readline(timeout) for _ in range(lines)]

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no ready line within {timeout} s; stderr: {self.kill()!r}")
            byte = os.read(self.proc.stdout.fileno(), 1)  # unbuffered: select() sees the rest
            if not byte:
                raise AssertionError(f"exited {self.proc.wait(5)}; stderr: {self.kill()!r}")
            line += byte
        return line.decode().strip()

    def address(self, scheme: str) -> tuple[str, int]:
        """(host, port) of the ready line starting with scheme://."""
        for url in self.urls:
            if url.startswith(scheme + "://"):
                hostport = url[len(scheme) + 3:]
                host, _, port = hostport.rpartition(":")
                return host.strip("[]"), int(port)
        raise AssertionError(f"no {scheme}:// line in {self.urls}")

    def interrupt(self, sig: int = signal.SIGINT, timeout: float = 5) -> tuple[int, bytes]:
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def kill(self) -> bytes:
        """End the process (if it still runs); return what it wrote on stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            return self.proc.communicate(timeout=5)[1] or b""
        except ValueError:  # already collected
            return b""

    def __enter__(self) -> "CliServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.kill()


# -- servers: every behavioural test runs against every backend and model ------
LOOP_IS_SEQUENTIAL = ("the one-at-a-time loop model cannot serve two clients at once "
                      "(test_loop_model_serves_clients_one_after_another covers what it does instead)")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "concurrent_clients: the test needs a server that serves "
                                       "several TCP clients at once (not the loop model)")


def server_kinds(proto: str) -> list:
    """(backend, model) for every model of every backend, as test params.  A
    model whose optional package is missing is a visible skip, not a gap."""
    from pysock.config import BACKENDS, MODEL_NEEDS, MODELS, model_available

    params = []
    for backend in BACKENDS:
        for model in MODELS[(backend, proto)]:
            marks = []
            if not model_available(model):
                marks.append(pytest.mark.skip(reason=f"model {model!r} needs {MODEL_NEEDS[model]} "
                                                     f"(pip install {MODEL_NEEDS[model]})"))
            params.append(pytest.param({"backend": backend, "model": model}, id=f"{backend}-{model}", marks=marks))
    return params


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

    with pysock.Server(LOCALHOST, 0, "tcp", **tcp_options) as srv:
        yield srv


@pytest.fixture
def udp_server(udp_options):
    import pysock

    with pysock.Server(LOCALHOST, 0, "udp", **udp_options) as srv:
        yield srv


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01):
    """Poll predicate until it returns a true value; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)
