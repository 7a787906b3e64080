"""Faults a server must survive: each ends with the server serving the next
client.  Faults that would take the test process down with them (a low
descriptor limit, SIGPIPE at its default action, a shim in front of libc)
run the server as a `pysock serve` subprocess."""
from __future__ import annotations

import contextlib
import errno
import gc
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from support import ROOT, CliServer, cli_args, wait_for

import pysock
import pysock.client

CC = shutil.which("cc") or shutil.which("gcc")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def echoes(address, data: bytes = b"ping", timeout: float = 0.5) -> bool:
    try:
        return pysock.request(data, address, "tcp", timeout=timeout) == data.upper()
    except OSError:
        return False


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))


SAME_ACCEPT = pytest.mark.same_code_as_model("every worker accepts through the model's own code "
                                              "(loop.c's ps__accept), and its back-off is a timer of that loop")


@pytest.mark.concurrent_clients
@SAME_ACCEPT
def test_out_of_descriptors_no_busy_loop_and_service_resumes(tcp_options):
    with CliServer("serve", "0", "--tcp", *cli_args(tcp_options), preexec_fn=low_fd_limit) as cli:
        address = cli.address("tcp")
        held = []
        starved = None
        for _ in range(60):  # more than 40 descriptors can hold
            sock = socket.create_connection(address, timeout=5)
            sock.sendall(b"x")
            sock.settimeout(0.5)
            try:
                if sock.recv(1) == b"X":
                    held.append(sock)
                    continue
            except socket.timeout:
                pass
            starved = sock  # accepted by the kernel, not by the starved server
            break
        assert starved is not None, "the server never ran out of descriptors"
        before = cpu_seconds(cli.proc.pid)
        time.sleep(0.5)
        spent = cpu_seconds(cli.proc.pid) - before
        assert spent < 0.25, f"the starved server used {spent:.2f} s of CPU in 0.5 s: a busy loop"
        for sock in held:
            sock.close()
        starved.settimeout(5)
        assert starved.recv(1) == b"X"  # served by itself once descriptors were free
        starved.close()
        assert echoes(address)


SIGPIPE_DEFAULT = ("import signal, sys; signal.signal(signal.SIGPIPE, signal.SIG_DFL); "
                   "from pysock.cli import main; sys.exit(main(sys.argv[1:]))")


@pytest.mark.same_code_as_model("every send is the model's own, with MSG_NOSIGNAL, in each worker alike")
def test_sigpipe_at_its_default_action_does_not_kill_the_server(tcp_options):
    with CliServer("serve", "0", "--tcp", *cli_args(tcp_options), python_code=SIGPIPE_DEFAULT) as cli:
        address = cli.address("tcp")
        for _ in range(5):  # clients that vanish while their echo is being written
            sock = socket.create_connection(address, timeout=5)
            sock.sendall(b"x" * (1 << 20))
            sock.shutdown(socket.SHUT_WR)  # the server goes to CLOSE_WAIT ...
            time.sleep(0.05)
            sock.close()  # ... and the RST for its unread echo makes the next send EPIPE
        time.sleep(0.2)
        assert cli.proc.poll() is None, "the server died (SIGPIPE?)"
        assert echoes(address)


@pytest.fixture(scope="module")
def inject_so(tmp_path_factory):
    if CC is None:
        pytest.skip("no C compiler to build the fault-injection shim")
    out = tmp_path_factory.mktemp("inject") / "inject.so"
    subprocess.run([CC, "-shared", "-fPIC", "-o", str(out), str(ROOT / "tests/faults/inject.c"), "-ldl"],
                   check=True, timeout=60)
    return out


def serve_with_faults(inject_so, proto: str, options: dict, **faults: str) -> CliServer:
    # After whatever is preloaded already (a sanitizer runtime must come first).
    preload = f"{os.environ.get('LD_PRELOAD', '')} {inject_so}".strip()
    return CliServer("serve", "0", f"--{proto}", *cli_args(options), env={"LD_PRELOAD": preload, **faults})


@SAME_ACCEPT
def test_per_connection_accept_errors_are_survived(inject_so, tcp_options):
    codes = [errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENOBUFS]
    with serve_with_faults(inject_so, "tcp", tcp_options, PYSOCK_FAULT_ACCEPT4=" ".join(map(str, codes))) as cli:
        address = cli.address("tcp")
        assert pysock.request(b"after accept errors", address, "tcp") == b"AFTER ACCEPT ERRORS"
        assert echoes(address)
        assert cli.proc.poll() is None


def test_icmp_error_on_the_udp_socket_is_survived(inject_so, udp_options):
    # Linux reports an ICMP port unreachable on an unconnected UDP socket only
    # with IP_RECVERR; the shim makes recvfrom fail as it then would.
    refused = str(errno.ECONNREFUSED)
    failures = f"{refused} {refused} {errno.ENOMEM}"
    with serve_with_faults(inject_so, "udp", udp_options, PYSOCK_FAULT_RECV=failures) as cli:
        address = cli.address("udp")
        assert pysock.request(b"after icmp", address, "udp") == b"AFTER ICMP"
        assert cli.proc.poll() is None


def check_signal_to_the_serving_thread(proto: str, options: dict) -> None:
    got = []
    old = signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
    try:
        with pysock.Server("127.0.0.1", 0, proto, **options) as srv:
            for _ in range(3):
                signal.pthread_kill(srv._thread.ident, signal.SIGUSR1)
                time.sleep(0.02)
            wait_for(lambda: got)
            assert srv._thread.is_alive()
            assert pysock.request(b"still serving", srv.address, proto) == b"STILL SERVING"
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_a_signal_delivered_to_the_serving_thread_tcp(tcp_options):
    check_signal_to_the_serving_thread("tcp", tcp_options)


def test_a_signal_delivered_to_the_serving_thread_udp(udp_options):
    check_signal_to_the_serving_thread("udp", udp_options)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


@contextlib.contextmanager
def nothing_left_to_the_collector():
    """Fail if, inside, an object that owns a resource (a socket, a file)
    is finalized without having been closed: every descriptor must be
    closed by explicit code, never by the garbage collector's timing (which
    on PyPy comes at any later moment, in any thread).  Python reports such
    an object with a ResourceWarning from its finalizer."""
    seen: list = []
    old_hook = sys.unraisablehook

    def hook(unraisable) -> None:
        seen.append(unraisable)

    gc.collect()  # what earlier tests left to the collector goes now, not inside
    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            yield
            gc.collect()
        seen += [w for w in caught if issubclass(w.category, ResourceWarning)]
    finally:
        sys.unraisablehook = old_hook
    assert not seen, f"finalized without being closed: {seen[:3]}"


def start_stop_cycles(proto: str, options: dict, n: int) -> None:
    with pysock.Server("127.0.0.1", 0, proto, **options):
        pass  # what a process keeps once it has run one (uvloop's global descriptors)
    with nothing_left_to_the_collector():
        fds, threads, py_threads = open_fds(), os_threads(), threading.active_count()
        for i in range(n):
            with pysock.Server("127.0.0.1", 0, proto, **options) as srv:
                if i % 10 == 0:
                    assert pysock.request(b"cycle", srv.address, proto) == b"CYCLE"
            if i % 100 == 0:
                gc.collect()  # a collection between servers must find nothing of theirs open
        wait_for(lambda: os_threads() <= threads)  # a thread's exit may lag its join by a moment
        assert open_fds() == fds
        assert threading.active_count() == py_threads


# The default tier makes 100 servers per engine; --full 1,000 as well.
CYCLES = [100, pytest.param(1000, marks=pytest.mark.slow)]


@pytest.mark.parametrize("n", CYCLES)
def test_start_stop_cycles_leave_nothing_behind_tcp(tcp_options, n):
    start_stop_cycles("tcp", tcp_options, n)


@pytest.mark.parametrize("n", CYCLES)
def test_start_stop_cycles_leave_nothing_behind_udp(udp_options, n):
    start_stop_cycles("udp", udp_options, n)


@contextlib.contextmanager
def collecting():
    """Forced collections, one after another, in a thread of their own."""
    stop = threading.Event()

    def collect() -> None:
        while not stop.wait(0.005):  # a pause: a collection holds the GIL (PyPy's take long)
            gc.collect()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    try:
        yield
    finally:
        stop.set()
        collector.join(10)


def check_collections_change_nothing(proto: str, options: dict) -> None:
    """Every object C uses is kept alive by explicit code: forced
    collections (PyPy's move and free objects) while a server serves, and
    while the C load generator drives it from another thread, leave every
    reply right."""
    from pysock.bench import loadgen

    with collecting(), pysock.Server("127.0.0.1", 0, proto, **options) as srv:
        answered = 0
        for _ in range(2):
            # Wrong or cut-off replies fail; a slow round (PyPy's collections
            # hold the GIL the twins need) only answers fewer.
            result = loadgen.pingpong(srv.address, proto, conns=4, size=512, duration=0.3, timeout=1.0)
            assert result.bad == 0 and result.failed == 0, result
            answered += result.requests
            for i in range(10):
                assert pysock.request(b"gc %d" % i, srv.address, proto) == b"GC %d" % i
        assert answered > 0


SAME_OBJECTS = pytest.mark.same_code_as_model("the objects C uses are the engine's (CEngine, its buffers), "
                                               "the same whatever the workers or spinning")


TWINS_HAND_C_NOTHING = pytest.mark.twins_are_slow("a twin hands C nothing to keep; only the load generator, "
                                                  "the same for every engine, does")


@SAME_OBJECTS
@TWINS_HAND_C_NOTHING
def test_collections_while_a_tcp_server_serves_change_nothing(tcp_options):
    check_collections_change_nothing("tcp", tcp_options)


@SAME_OBJECTS
@TWINS_HAND_C_NOTHING
def test_collections_while_a_udp_server_serves_change_nothing(udp_options):
    check_collections_change_nothing("udp", udp_options)


def test_graceful_stop_finishes_the_echo_then_eof(tcp_options):
    srv = pysock.Server("127.0.0.1", 0, "tcp", **tcp_options).start()
    sock = pysock.client.connect(srv.address)
    sock.sendall(b"in flight")
    wait_for(lambda: srv.stats.bytes_out == 9)  # echoed, not yet read by the client
    port = srv.port
    srv.stop(timeout=0.2)
    assert pysock.client.recv_until_eof(sock) == b"IN FLIGHT"  # all of it, then EOF
    sock.close()
    with pysock.Server("127.0.0.1", port, "tcp", **tcp_options) as again:  # the port is free at once
        assert echoes(again.address)
