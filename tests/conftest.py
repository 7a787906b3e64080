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


TCP_MODELS = ("threads", "epoll")


def skip_without(feature: str) -> None:
    """Skip where this build of pysock lacks a fast path (test_fast_paths
    checks that a Linux build has them all)."""
    from pysock.config import c_features

    if feature not in c_features():
        pytest.skip(f"this build of pysock has no {feature}")


@pytest.fixture(params=TCP_MODELS)
def tcp_model(request) -> str:
    """Each C TCP model in turn: every TCP test runs against all of them."""
    if request.param == "epoll":
        skip_without("epoll")
    return request.param


@pytest.fixture(params=[("tcp", "threads"), ("tcp", "epoll"), ("udp", None)],
                ids=["tcp-threads", "tcp-epoll", "udp"])
def proto_model(request) -> tuple:
    """(proto, model): each TCP model, and UDP (which has one loop)."""
    proto, model = request.param
    if model == "epoll":
        skip_without("epoll")
    return proto, model


@pytest.fixture
def reuseport() -> None:
    """For tests with workers > 1."""
    skip_without("reuseport")


@pytest.fixture
def tcp_server(tcp_model):
    import pysock

    with pysock.Server(LOCALHOST, 0, "tcp", model=tcp_model) as srv:
        yield srv


@pytest.fixture
def udp_server():
    import pysock

    with pysock.Server(LOCALHOST, 0, "udp") as srv:
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
