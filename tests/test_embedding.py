"""What an embedder may do to a server, on every engine, without a crash, a
hang, a leak or a lie (docs/contract.md, "The connection log" and
"Lifecycle"): a log that raises, blocks or stops its own server; a server
dropped unstarted, one whose constructor fails after binding, one that
outlives a fork()."""
from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import time
import warnings

import pytest
from support import LOCALHOST, wait_for

import pysock
from pysock.errors import ReflectionWarning

SLACK = 5.0  # seconds: an upper bound only a hang would pass


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def port_is_free(proto: str, port: int) -> bool:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


# -- the log --------------------------------------------------------------------
def test_a_log_that_stops_its_server(tcp_options):
    """stop() from inside the log: the server stops, and every later call
    (stop again, set_faults, the with block's exit) is safe."""
    stopped = threading.Event()
    holder: list[pysock.Server] = []

    def log(line: str) -> None:
        if line.endswith(" open") and not stopped.is_set():
            holder[0].stop(timeout=2.0)
            stopped.set()

    with pysock.Server(LOCALHOST, 0, "tcp", log=log, **tcp_options) as srv:
        holder.append(srv)
        try:
            pysock.request(b"x", srv.address, timeout=SLACK)
        except OSError:
            pass  # the stop may close this very connection
        assert stopped.wait(SLACK)
        srv.stop()
        with pytest.raises(RuntimeError, match="stopped"):
            srv.set_faults(pysock.Faults(latency=0.1))
    assert srv.wait(0)


def test_a_log_that_raises_is_reported_and_the_next_lines_still_come(tcp_options, monkeypatch):
    reported: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: reported.append(args.exc_value))
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        raise ValueError("a log that fails")

    with pysock.Server(LOCALHOST, 0, "tcp", log=log, **tcp_options) as srv:
        for i in range(3):
            assert pysock.request(b"go %d" % i, srv.address) == b"GO %d" % i
        wait_for(lambda: len([line for line in lines if "closed" in line]) == 3)
    assert len(reported) == len(lines) == 6  # open and close of each connection
    assert all(isinstance(exc, ValueError) for exc in reported)


def test_a_log_that_blocks_neither_slows_the_server_nor_its_stop(tcp_options):
    """The log is called from a thread of its own: while it blocks, clients
    are served; stop() keeps its timeout, and no line reaches the log
    after stop() has returned (the one it blocks in excepted)."""
    release = threading.Event()
    calls: list[float] = []

    def log(line: str) -> None:
        calls.append(time.monotonic())
        release.wait(SLACK)

    srv = pysock.Server(LOCALHOST, 0, "tcp", log=log, **tcp_options).start()
    try:
        for i in range(10):  # the first line blocks; every client is served meanwhile
            assert pysock.request(b"on %d" % i, srv.address, timeout=SLACK) == b"ON %d" % i
        start = time.monotonic()
        srv.stop(timeout=0.5)
        returned = time.monotonic()
        assert returned - start < 0.5 + 1.0  # its timeout, and slack for a loaded machine
    finally:
        release.set()
    time.sleep(0.2)  # what the log thread would deliver now, it delivers
    assert len([t for t in calls if t > returned]) == 0
    assert len(calls) == 1  # the rest were dropped at the stop


# -- ownership ------------------------------------------------------------------
@pytest.mark.parametrize("log", [None, print], ids=["no-log", "log"])
def test_a_server_dropped_unstarted_frees_its_port_descriptors_and_threads(tcp_options, log):
    """With no cycle between a server and its engine, dropping the last
    reference frees everything at once (CPython's reference counts; PyPy
    frees at its next collection, which the test runs there)."""
    srv = pysock.Server(LOCALHOST, 0, "tcp", **tcp_options)  # what a process keeps after one server
    srv.stop()
    gc.collect()  # on PyPy, earlier tests' garbage would close its descriptors below
    fds, threads = open_fds(), os_threads()
    srv = pysock.Server(LOCALHOST, 0, "tcp", log=log, **tcp_options)
    port = srv.port
    del srv
    if sys.implementation.name != "cpython":
        gc.collect()
    assert port_is_free("tcp", port)
    wait_for(lambda: os_threads() <= threads)  # a thread's exit may lag its join by a moment
    assert open_fds() == fds


def test_a_constructor_that_fails_after_binding_frees_the_port(udp_options):
    """Warnings as errors (common in pytest configurations) make the
    reflection warning raise after the socket is bound: the port is free
    again at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]
    fds = open_fds()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReflectionWarning)
        with pytest.raises(ReflectionWarning):
            pysock.Server("0.0.0.0", port, "udp", **udp_options)
    assert port_is_free("udp", port)  # no collection needed
    assert open_fds() == fds


def child_stops_its_copy(srv: pysock.Server) -> int:
    """fork(); the child stops (and drops) its copy of srv, then leaves
    without any cleanup of Python's; the child's exit code.  A child stuck
    for 5 s (on a lock another thread held at the fork) dies by SIGALRM."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: the child only stops
        pid = os.fork()
    if pid == 0:
        try:
            signal.alarm(5)  # its default action ends the process, stuck or not
            srv.stop()
            del srv
            gc.collect()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
def test_a_child_after_fork_leaves_the_parents_server_serving(tcp_options):
    with pysock.Server(LOCALHOST, 0, "tcp", **tcp_options) as srv:
        assert pysock.request(b"before", srv.address) == b"BEFORE"
        assert child_stops_its_copy(srv) == 0
        for i in range(3):
            assert pysock.request(b"after %d" % i, srv.address) == b"AFTER %d" % i


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() here")
@pytest.mark.same_code_as_model("a child's stop() is the Server's and its engine's disown(), "
                                "which workers and spinning do not change")
def test_a_child_stops_its_copy_whatever_lock_a_thread_held_at_the_fork(tcp_options):
    """fork() copies only the thread that calls it: a lock another thread
    held then (reading the counters, logging) stays held in the child for
    good.  A child's stop() takes none (PyPy's default tier once hung here)."""
    with pysock.Server(LOCALHOST, 0, "tcp", **tcp_options) as srv:
        assert pysock.request(b"before", srv.address) == b"BEFORE"
        reading = threading.Event()
        done = threading.Event()

        def read_stats() -> None:
            while not done.is_set():
                _ = srv.stats  # the server's lock, and a twin's counters' lock
                reading.set()

        reader = threading.Thread(target=read_stats)
        reader.start()
        try:
            assert reading.wait(5)
            codes = [child_stops_its_copy(srv) for _ in range(20)]
        finally:
            done.set()
            reader.join(5)
        assert codes == [0] * 20
        assert pysock.request(b"after", srv.address) == b"AFTER"
