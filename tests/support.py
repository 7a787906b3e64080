"""What the tests share, imported by name (``from support import ...``):
the CLI as a subprocess, waits with a bound, clients in threads, and what
this machine has.  Fixtures and the test tiers live in conftest.py."""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCALHOST = "127.0.0.1"
# A name that cannot resolve and never reaches a DNS server: a 64-byte label
# is too long for a DNS query, so the resolver fails before sending anything.
# (A plain "no-such-host.invalid" would send a query to the machine's
# nameserver; tests send traffic to this machine only.)
UNRESOLVABLE = "x" * 64 + ".invalid"

# CI sets PYSOCK_CI=1: there every optional peer a test needs must be present
# (a kernel that serves io_uring, pahole, strace), and a missing one fails
# its tests instead of skipping them.
IN_CI = os.environ.get("PYSOCK_CI") == "1"

LOOP_IS_SEQUENTIAL = ("the one-at-a-time loop model cannot serve two clients at once "
                      "(test_loop_model_serves_clients_one_after_another covers what it does instead)")


def skip_unless_ci(reason: str) -> None:
    """Skip, saying why; in CI, fail: there the peer must be present."""
    if IN_CI:
        pytest.fail(f"{reason}, and CI must have it")
    pytest.skip(reason)


def skip_without(feature: str) -> None:
    """Skip where this build of pysock lacks a fast path (test_fast_paths
    checks that a Linux build has them all)."""
    from pysock.config import c_features

    if feature not in c_features():
        pytest.skip(f"this build of pysock has no {feature}")


def cli_env() -> dict:
    """The environment for a pysock subprocess: the pysock these tests import
    first (this checkout's, or an installed one when the tests run from an
    unpacked sdist)."""
    import pysock

    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(pysock.__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args: str, input: bytes = b"", timeout: float = 20) -> subprocess.CompletedProcess:
    """Run ``python -m pysock ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "pysock", *args], input=input,
                          capture_output=True, timeout=timeout, env=cli_env())


class CliServer:
    """``python -m pysock ARGS`` running in the background, its ready lines read.

    With ``stdin=True`` the test types into it: write(), then expect() what
    it prints (chat join, talk)."""

    def __init__(self, *args: str, lines: int = 1, timeout: float = 20, stdin: bool = False,
                 python_code: str = "", env: dict | None = None, preexec_fn=None) -> None:
        """python_code: run ``python -c CODE ARGS`` instead of ``python -m pysock ARGS``;
        env: variables added to the environment; preexec_fn: run in the child."""
        head = ["-c", python_code] if python_code else ["-m", "pysock"]
        self.proc = subprocess.Popen([sys.executable, *head, *args],
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**cli_env(), **(env or {})}, preexec_fn=preexec_fn)
        self.urls = [self.readline(timeout) for _ in range(lines)]

    def readline(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"no line within {timeout} s after {line!r}; stderr: {self.kill()!r}")
            byte = os.read(self.proc.stdout.fileno(), 1)  # unbuffered: select() sees the rest
            if not byte:
                raise AssertionError(f"exited {self.proc.wait(5)}; stderr: {self.kill()!r}")
            line += byte
        return line.decode(errors="replace").strip()

    def write(self, text: str) -> None:
        """Type text on the process's stdin."""
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        """EOF on the process's stdin."""
        self.proc.stdin.close()
        self.proc.stdin = None  # communicate() must not flush it again

    def expect(self, wanted: str, timeout: float = 10) -> list[str]:
        """Read lines until one equals wanted; return the lines read before it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(deadline - time.monotonic(), 0.01))
            if line == wanted:
                return seen
            seen.append(line)

    def rest(self, timeout: float = 10) -> tuple[int, str]:
        """Wait for the exit, stdin left as it is: (exit code, the rest of stdout)."""
        deadline = time.monotonic() + timeout
        out = b""
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"still running after {timeout} s; stdout {out!r}; stderr: {self.kill()!r}")
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return self.proc.wait(max(deadline - time.monotonic(), 0.1)), out.decode(errors="replace")
            out += chunk

    def path(self, index: int = 0) -> str:
        """The PATH of the index-th unix://PATH ready line."""
        paths = [url[len("unix://"):] for url in self.urls if url.startswith("unix://")]
        return paths[index]

    def address(self, scheme: str) -> tuple[str, int]:
        """(host, port) of the ready line starting with scheme://."""
        from pysock.urls import parse_url

        for url in self.urls:
            if url.startswith(scheme + "://"):
                return parse_url(url)[1]
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
        finally:
            if self.proc.stdin:
                self.proc.stdin.close()

    def __enter__(self) -> CliServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.kill()


def has_ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 (containers without IPv6 cannot)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine cannot bind ::1 (no IPv6 loopback)")


def one_worker(options: dict) -> dict:
    """options for a unix socket, which has one worker: an engine defined by
    its workers is skipped, saying why."""
    if options.get("workers", 1) > 1:
        pytest.skip("a unix socket has one worker (workers > 1 binds one IP socket per worker)")
    return options


def cli_args(options: dict) -> list[str]:
    """An engine's Server options as `pysock serve` options."""
    args = ["--backend", options["backend"], "--model", options["model"]]
    if "workers" in options:
        args += ["--workers", str(options["workers"])]
    if "spin_us" in options:
        args += ["--spin", str(options["spin_us"])]
    return args


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01, state=None):
    """Poll predicate until it returns a true value; fail after timeout,
    saying what state() returns then (the server's stats, say)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; then: {state()}" if state is not None else ""
            raise AssertionError(f"condition not met within {timeout} s{seen}")
        time.sleep(interval)


def run_clients(n: int, client, timeout: float = 60.0) -> None:
    """Run client(i) for i in range(n), each in a thread of its own, and fail
    with the first errors any of them raised (or if one is still running
    after timeout)."""
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            client(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"clients still running after {timeout} s"
    assert not errors, errors[:3]


def server_kinds(proto: str, which: Callable[[Any], bool] = lambda engine: True) -> list:
    """The Server options of every engine (tests/engines.py) for proto, or
    of those which(engine) picks, as test params.  An engine this machine
    cannot run (an optional package or a build feature missing) is a
    visible skip, not a gap."""
    from engines import ENGINES

    from pysock.config import MODEL_NEEDS, c_features, model_available, uring_refused

    params = []
    for engine in filter(which, ENGINES[proto]):
        marks = []
        if not model_available(engine.model):
            marks.append(pytest.mark.skip(reason=f"model {engine.model!r} needs {MODEL_NEEDS[engine.model]} "
                                                 f"(pip install {MODEL_NEEDS[engine.model]})"))
        if engine.needs is not None and engine.needs not in c_features():
            marks.append(pytest.mark.skip(reason=f"this build of pysock has no {engine.needs}"))
        elif engine.model == "uring" and uring_refused() is not None and not IN_CI:
            marks.append(pytest.mark.skip(reason=f"model 'uring' cannot run here: {uring_refused()}"))
        params.append(pytest.param(engine.options(), id=engine.name, marks=marks))
    return params


def c_model(engine: Any) -> bool:
    """For server_kinds: each of the C backend's models, once (no variants):
    for the tests of workers and spinning, which add their own."""
    return engine.backend == "c" and not engine.variant


def sockets_on(port: int, proto: str, pid: int | None = None) -> int:
    """How many sockets of process pid (this one by default) are bound to
    port (TCP: listening or connected; UDP: bound).  A port another process
    took over after ours closed does not count: tests run side by side."""
    owned = set()
    fds = f"/proc/{pid or os.getpid()}/fd"
    for fd in os.listdir(fds):
        try:
            target = os.readlink(f"{fds}/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            owned.add(target[len("socket:["):-1])
    count = 0
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].rpartition(":")[2], 16) == port and fields[9] in owned:
                        count += 1
        except FileNotFoundError:
            continue  # no IPv6 here
    return count


def read_pieces(sock) -> list:
    """What the peer sends until its EOF, as the pieces recv returned."""
    pieces = []
    while piece := sock.recv(65536):
        pieces.append(piece)
    return pieces


def read_to_end(sock) -> bytes:
    """Everything the peer sends until its EOF."""
    return b"".join(read_pieces(sock))


def read_exactly(sock, n: int) -> bytes:
    """n bytes, however the stream splits them; EOF before is a failure."""
    data = b""
    while len(data) < n:
        piece = sock.recv(n - len(data))
        assert piece, f"EOF after {len(data)} of {n} bytes"
        data += piece
    return data
