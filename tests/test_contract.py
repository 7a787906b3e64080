"""The contract (docs/contract.md), checked against every engine in
tests/engines.py: the same bytes as the C backend for the same input, the
same counters, memory a client can pin bounded, a lifecycle with no hang,
and configuration refused alike.  The other behavioural tests that take
tcp_options/udp_options run against the same list."""
from __future__ import annotations

import contextlib
import errno
import math
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from engines import ENGINES, REFERENCE
from memory import (
    IDLE_BOUND,
    MEM_CONNS,
    MEM_MAX_UNSENT,
    NEVER_READS_BOUND,
    SANITIZED,
    ServerProcess,
    burst,
    flood_until_the_server_stops_reading,
    never_reading_clients,
    settled,
)
from stamps import STAMP, Window
from support import LOCALHOST, CliServer, needs_ipv6, one_worker, run_cli, server_kinds, wait_for

import pysock
import pysock.client
from pysock.config import MODELS
from pysock.errors import ReflectionWarning
from pysock.transform import BUFSIZE, UDP_MAX

TRANSFORMS = ("upper", "echo", "stamp")
STAMP_LEN = 29  # "at " + ctime's 24 characters + " :"
ALL_BYTES = bytes(range(256))


def test_every_model_of_every_backend_is_an_engine_of_the_suite():
    listed = {(e.backend, proto, e.model) for proto in ENGINES for e in ENGINES[proto]}
    for (backend, proto), models in MODELS.items():
        for model in models:
            assert (backend, proto, model) in listed, f"{backend} {proto} {model} is not in tests/engines.py"


# -- replies: byte for byte what the C backend sends --------------------------
TCP_INPUTS = [
    b"hello",
    ALL_BYTES,
    b"one\ntwo",
    b"a\r\nb\n\n",
    b"\n" * 2183,
    b"x" * 70000 + b"\ntail",     # a line longer than 64 KiB: answered in pieces
]
UDP_INPUTS = [
    b"",                          # an empty datagram: upper/echo answer empty, stamp the stamp
    b"hello",
    ALL_BYTES,
    b"one\ntwo",                  # newlines inside a datagram: one message, one stamp
    b"\n" * 2183,                 # no amplification: at most the stamp's size more
    b"y" * 65479,
    b"z" * UDP_MAX,               # the largest: a stamped reply is cut to UDP_MAX
]
UNIX_DGRAM_INPUTS = UDP_INPUTS + [b"w" * 70000]  # over 64 KiB: cut to BUFSIZE when received


def masked(reply: bytes) -> bytes:
    return STAMP.sub(b"at T :", reply)


class References:
    """The C backend's replies, asked once per (where, transform, input)."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp_dir = tmp_dir
        self.servers: dict = {}
        self.replies: dict = {}

    def reply(self, kind: str, name: str, data: bytes) -> bytes:
        key = (kind, name, data)
        if key not in self.replies:
            self.replies[key] = masked(ask(self._server(kind, name), kind, data))
        return self.replies[key]

    def _server(self, kind: str, name: str):
        if (kind, name) not in self.servers:
            self.servers[(kind, name)] = make_server(kind, dict(REFERENCE, transform=name), self.tmp_dir,
                                                     f"ref-{kind}-{name}").start()
        return self.servers[(kind, name)]

    def close(self) -> None:
        for srv in self.servers.values():
            srv.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    refs = References(str(tmp_path_factory.mktemp("ref")))
    yield refs
    refs.close()


def make_server(kind: str, options: dict, tmp_dir: str, name: str = "srv") -> pysock.Server:
    """kind: tcp, udp, unix-stream, unix-dgram."""
    if kind.startswith("unix"):
        proto = "tcp" if kind == "unix-stream" else "udp"
        return pysock.Server(path=os.path.join(tmp_dir, f"{name}.sock"), proto=proto, **one_worker(options))
    return pysock.Server(LOCALHOST, 0, kind, **options)


def ask(srv: pysock.Server, kind: str, data: bytes) -> bytes:
    if kind in ("tcp", "unix-stream"):
        return pysock.request(data, srv.address, "tcp", timeout=10)
    if kind == "udp":
        return pysock.request(data, srv.address, "udp", timeout=5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:  # may exceed the client's UDP_MAX
        sock.settimeout(5)
        sock.bind("")  # an abstract address the reply can come back to
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 18)
        sock.connect(srv.address)
        sock.send(data)
        return sock.recv(1 << 18)


def check_replies(kind: str, options: dict, name: str, inputs: list, reference, tmp_path) -> None:
    window = Window()
    with make_server(kind, dict(options, transform=name), str(tmp_path)) as srv:
        for data in inputs:
            reply = ask(srv, kind, data)
            assert window.check(reply) == reference.reply(kind, name, data), (kind, name, len(data), data[:20])
            if kind in ("udp", "unix-dgram"):
                extra = STAMP_LEN if name == "stamp" else 0
                assert len(reply) <= min(len(data), BUFSIZE) + extra  # no engine amplifies a datagram


@pytest.mark.parametrize("name", TRANSFORMS)
def test_tcp_replies_are_the_c_backends(tcp_options, name, reference, tmp_path):
    check_replies("tcp", tcp_options, name, TCP_INPUTS, reference, tmp_path)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_udp_replies_are_the_c_backends(udp_options, name, reference, tmp_path):
    check_replies("udp", udp_options, name, UDP_INPUTS, reference, tmp_path)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_unix_stream_replies_are_the_c_backends(tcp_options, name, reference, tmp_path):
    check_replies("unix-stream", tcp_options, name, TCP_INPUTS[:4], reference, tmp_path)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_unix_datagram_replies_are_the_c_backends(udp_options, name, reference, tmp_path):
    check_replies("unix-dgram", udp_options, name, UNIX_DGRAM_INPUTS, reference, tmp_path)


def test_the_reference_cuts_as_the_contract_says(reference):
    """What every engine is held to, spelled out once."""
    assert reference.reply("udp", "stamp", b"") == b"at T :"
    assert reference.reply("udp", "stamp", b"one\ntwo") == b"at T :one\ntwo"
    assert reference.reply("udp", "stamp", b"z" * UDP_MAX) == b"at T :" + b"z" * (UDP_MAX - STAMP_LEN)
    assert reference.reply("udp", "upper", b"") == b""
    assert reference.reply("unix-dgram", "echo", b"w" * 70000) == b"w" * BUFSIZE
    assert reference.reply("tcp", "stamp", b"one\ntwo") == b"at T :one\nat T :two"


def test_a_unix_datagram_from_an_unbound_sender_is_counted_and_serving_goes_on(udp_options, tmp_path):
    path = str(tmp_path / "dgram.sock")
    with pysock.Server(path=path, proto="udp", **one_worker(udp_options)) as srv:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as nameless:
            nameless.sendto(b"no address to answer", path)
        wait_for(lambda: srv.stats.errors == 1 and srv.stats.datagrams == 1)
        assert ask(srv, "unix-dgram", b"next") == b"NEXT"


# -- counters --------------------------------------------------------------------
def test_tcp_counters(tcp_options):
    with pysock.Server(LOCALHOST, 0, "tcp", transform="stamp", **tcp_options) as srv:
        replies = [pysock.request(b"a\nbc", srv.address) for _ in range(3)]
        wait_for(lambda: srv.stats.active == 0)
        stats = srv.stats
    assert (stats.accepted, stats.active, stats.rejected, stats.datagrams) == (3, 0, 0, 0)
    assert stats.bytes_in == 12 and stats.bytes_out == sum(map(len, replies)) == 3 * (4 + 2 * STAMP_LEN)
    assert (stats.idle_closed, stats.slow_closed, stats.errors) == (0, 0, 0)


def test_udp_counters(udp_options):
    with pysock.Server(LOCALHOST, 0, "udp", transform="stamp", **udp_options) as srv:
        for data in (b"", b"one", b"x" * UDP_MAX):
            pysock.request(data, srv.address, "udp")
    stats = srv.stats  # once stopped: a reply can reach us before its send is counted
    assert (stats.datagrams, stats.bytes_in) == (3, 3 + UDP_MAX)
    assert stats.bytes_out == 3 * STAMP_LEN + 3 + UDP_MAX - STAMP_LEN
    assert (stats.accepted, stats.active, stats.errors) == (0, 0, 0)


# -- the connection log (serve -v) ----------------------------------------------------
def logged(lines: list, kind: str) -> list:
    return [line for line in lines if kind in line]


def test_the_log_says_each_connection_opened_and_closed_with_its_bytes(tcp_options):
    lines: list = []
    with pysock.Server(LOCALHOST, 0, "tcp", log=lines.append, **tcp_options) as srv:
        with pysock.client.connect(srv.address) as sock:
            sock.sendall(b"hello")
            assert pysock.client.recv_exactly(sock, 5) == b"HELLO"
        wait_for(lambda: logged(lines, "closed"))
        url = srv.url
    [opened] = logged(lines, " open")
    assert opened.startswith(f"{url} #1 from 127.0.0.1:") and opened.endswith(" open")
    [closed] = logged(lines, "closed")
    assert closed.endswith("closed (eof): 5 bytes in, 5 out") and closed.split()[1] == "#1"


def test_the_log_says_why_a_connection_was_closed(tcp_options):
    lines: list = []
    with pysock.Server(LOCALHOST, 0, "tcp", idle_timeout=0.2, log=lines.append, **tcp_options) as srv:
        with pysock.client.connect(srv.address) as idle:
            assert idle.recv(1) == b""  # the server closed it
        wait_for(lambda: logged(lines, "closed"))
        assert logged(lines, "closed")[0].endswith("closed (idle): 0 bytes in, 0 out")
        lines.clear()
        stays = pysock.client.connect(srv.address)
        wait_for(lambda: logged(lines, " open"))
    stays.close()
    assert logged(lines, "closed")[0].endswith("closed (stop): 0 bytes in, 0 out")


@pytest.mark.concurrent_clients
def test_the_log_says_a_connection_was_rejected(tcp_options):
    lines: list = []
    with pysock.Server(LOCALHOST, 0, "tcp", max_conns=1, log=lines.append, **tcp_options) as srv:
        with pysock.Connection(srv.address) as first:
            assert first.roundtrip(b"a") == b"A"
            with pysock.client.connect(srv.address):  # the second: over max_conns
                wait_for(lambda: logged(lines, "rejected"))
    [rejected] = logged(lines, "rejected")
    assert " #2 from 127.0.0.1:" in rejected and rejected.endswith("rejected: max_conns are open")


def test_without_a_log_nothing_is_said(tcp_options):
    with pysock.Server(LOCALHOST, 0, "tcp", **tcp_options) as srv:  # no log: no pipe, no thread
        assert pysock.request(b"quiet", srv.address) == b"QUIET"


# -- memory a client can pin -------------------------------------------------------
@SANITIZED
@pytest.mark.concurrent_clients
@pytest.mark.same_code_as_model("what a connection holds is the model's per-connection code, "
                                "which each worker runs unchanged and spinning does not touch")
@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n == "stamp" else pytest.mark.slow)
                                  for n in TRANSFORMS])
def test_memory_a_client_can_pin_is_bounded(tcp_options, name, many_descriptors):
    """After a burst, an idle connection holds at most 128 KiB; a client that
    never reads at most max_unsent + 128 KiB (the server's resident memory,
    /proc, in a process of its own; -rP prints the figures).  The default
    tier measures stamp, whose replies are the largest (30 times a line of
    one newline); --full every transform."""
    unit = b"\n" if name == "stamp" else b"x"
    data = unit * 8192  # stamp: 8,192 lines, a reply of 237 KiB
    reply_len = len(data) * (1 + STAMP_LEN) if name == "stamp" else len(data)
    server = ServerProcess(dict(tcp_options, transform=name, max_unsent=MEM_MAX_UNSENT, send_timeout=120,
                                idle_timeout=120))
    conns: list = []
    try:
        assert pysock.request(b"warm", server.address)  # threads and buffers every server has anyway
        before = settled(server.rss)
        conns = [pysock.client.connect(server.address, timeout=30) for _ in range(MEM_CONNS)]
        burst(conns, data, reply_len)
        idle = (settled(server.rss) - before) / MEM_CONNS
        print(f"{name}: {idle / 1024:.1f} KiB per idle connection after a burst")
        assert idle <= IDLE_BOUND, f"{idle / 1024:.0f} KiB per idle connection after a burst"
        for c in conns:
            c.close()
        wait_for(lambda: server.stats()["active"] == 0, timeout=20)
        conns = never_reading_clients(server.address, MEM_CONNS)
        flood_until_the_server_stops_reading(server, conns, unit * 65536)
        pinned = (settled(server.rss) - before) / MEM_CONNS
        print(f"{name}: {pinned / 1024:.1f} KiB per client that never reads")
        assert pinned <= NEVER_READS_BOUND, f"{pinned / 1024:.0f} KiB per client that never reads"
        assert server.stats()["slow_closed"] == 0
    finally:
        for c in conns:
            c.close()
        server.close()


# -- lifecycle ----------------------------------------------------------------------
def test_a_server_serves_once(tcp_options):
    srv = pysock.Server(LOCALHOST, 0, "tcp", **tcp_options)
    srv.start()
    with pytest.raises(RuntimeError, match="already serving"):
        srv.start()
    with pytest.raises(RuntimeError, match="already serving"):
        srv.serve_forever()
    srv.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        srv.start()
    never = pysock.Server(LOCALHOST, 0, "tcp", **tcp_options)
    never.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        never.start()  # at once: no hang


def check_a_stop_is_not_an_error(proto: str, options: dict) -> None:
    """No engine counts its own stop as a failure (the asyncio twins once
    counted an accept() per slot of their batch on the shut listener)."""
    srv = pysock.Server(LOCALHOST, 0, proto, **options).start()
    assert pysock.request(b"one", srv.address, proto) == b"ONE"
    srv.stop()
    assert srv.stats.errors == 0, srv.stats
    idle = pysock.Server(LOCALHOST, 0, proto, **options).start()  # no client at all
    time.sleep(0.05)
    idle.stop()
    assert idle.stats.errors == 0, idle.stats


def test_a_stop_is_not_an_error_tcp(tcp_options):
    check_a_stop_is_not_an_error("tcp", tcp_options)


def test_a_stop_is_not_an_error_udp(udp_options):
    check_a_stop_is_not_an_error("udp", udp_options)


def test_a_stop_that_times_out_refuses_new_clients_and_closes_later(tcp_options):
    srv = pysock.Server(LOCALHOST, 0, "tcp", **tcp_options).start()
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(srv.address)
    stuck.setblocking(False)
    try:
        try:
            for _ in range(400):  # an echo the client never takes: the stop's grace runs out
                stuck.send(b"x" * 65536)
        except (BlockingIOError, OSError):
            pass
        time.sleep(0.2)
        with pytest.raises(TimeoutError):
            srv.stop(timeout=0)
        with pytest.raises((ConnectionRefusedError, ConnectionResetError)):
            with socket.create_connection(srv.address, timeout=2) as late:
                late.sendall(b"late")
                assert late.recv(4) == b""  # reset or refused, never left waiting
                raise ConnectionResetError("closed at once")
        assert srv.wait(5)  # the loop ends by itself, the server closes
        wait_for(lambda: srv._closed)
        with pysock.Server(LOCALHOST, srv.port, "tcp") as again:  # the port is free
            assert pysock.request(b"x", again.address) == b"X"
    finally:
        stuck.close()


def test_a_failing_loop_is_reported_by_stop(tcp_options, udp_options):
    for proto, options in (("tcp", tcp_options), ("udp", udp_options)):
        srv = pysock.Server(LOCALHOST, 0, proto, **options)

        def fail() -> None:
            raise OSError(errno.EBADF, "injected")

        srv._engine.serve = fail
        srv.start()
        assert srv.wait(5)
        with pytest.raises(pysock.ServerError, match=r"stopped serving.*injected") as info:
            srv.stop()
        assert isinstance(info.value.__cause__, OSError)
        srv.stop()  # reported once; stopping again is a no-op


FAILING_SERVE = ("import sys, errno, pysock.server as s; make = s.make_engine\n"
                 "def failing(cfg, on_event=None):\n"
                 "    engine = make(cfg, on_event)\n"
                 "    def serve(): raise OSError(errno.EBADF, 'injected failure')\n"
                 "    engine.serve = serve\n"
                 "    return engine\n"
                 "s.make_engine = failing\n"
                 "from pysock.cli import main; sys.exit(main(sys.argv[1:]))")


def test_pysock_serve_exits_1_with_one_line_when_a_loop_fails():
    with CliServer("serve", "0", python_code=FAILING_SERVE, lines=2) as cli:
        code, _ = cli.rest(timeout=10)
        err = cli.kill().decode()
    assert code == 1 and "Traceback" not in err
    assert err.count("\n") == 1 and "stopped serving" in err and "injected failure" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_pysock_serve_ends_cleanly_on_sigterm_and_sighup(sig, tmp_path):
    path = str(tmp_path / "s.sock")
    with CliServer("serve", "--unix", path, "--tcp") as cli:
        assert pysock.request(b"hi", path) == b"HI"
        code, err = cli.interrupt(sig)
    assert code == 0 and not os.path.exists(path)
    assert err.decode() == f"pysock: served unix://{path}: accepted 1, active 0, rejected 0, idle_closed 0, " \
                           "slow_closed 0, datagrams 0, bytes_in 2, bytes_out 2, errors 0\n"


# -- IPv6: "::" serves IPv4 too, unless asked not to -----------------------------------
def can_reach(address: tuple, proto: str) -> bool:
    try:
        return pysock.request(b"v", address, proto, timeout=1) == b"V"
    except OSError:
        return False


@needs_ipv6
def test_the_any_address_of_ipv6_serves_both_families_tcp(tcp_options):
    check_dual_stack("tcp", tcp_options)


@needs_ipv6
def test_the_any_address_of_ipv6_serves_both_families_udp(udp_options):
    check_dual_stack("udp", udp_options)


def check_dual_stack(proto: str, options: dict) -> None:
    with pytest.warns(ReflectionWarning) if proto == "udp" else contextlib.nullcontext():
        srv = pysock.Server("::", 0, proto, **options)
    with srv:
        assert srv.config.ipv6_only is False
        assert can_reach(("127.0.0.1", srv.port), proto) and can_reach(("::1", srv.port), proto)
    with pytest.warns(ReflectionWarning) if proto == "udp" else contextlib.nullcontext():
        only = pysock.Server("::", 0, proto, ipv6_only=True, **options)
    with only:
        assert can_reach(("::1", only.port), proto)
        heard = only.stats.bytes_in
        # The IPv4 port is free for anyone (another test's server may hold it
        # and answer): what matters is that this server hears nothing.
        can_reach(("127.0.0.1", only.port), proto)
        assert only.stats.bytes_in == heard


@needs_ipv6
def test_a_specific_ipv6_address_serves_ipv6_alone():
    with pysock.Server("::1", 0, "tcp") as srv:
        assert srv.config.ipv6_only is True
    with pytest.raises(pysock.ConfigError, match="ipv6_only is for an IPv6 address"):
        pysock.Server("127.0.0.1", 0, "tcp", ipv6_only=True)


# -- AF_UNIX paths -------------------------------------------------------------------
def test_a_relative_path_is_made_absolute(tcp_options, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    srv = pysock.Server(path="rel.sock", proto="tcp", **one_worker(tcp_options)).start()
    assert srv.address == str(tmp_path / "rel.sock")
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    (other / "rel.sock").write_text("not ours")
    srv.stop()
    assert not (tmp_path / "rel.sock").exists() and (other / "rel.sock").read_text() == "not ours"


@pytest.mark.parametrize("replacement", ["file", "server"])
def test_stop_leaves_a_path_that_is_no_longer_ours(tcp_options, tmp_path, replacement):
    path = str(tmp_path / "taken.sock")
    srv = pysock.Server(path=path, proto="tcp", **one_worker(tcp_options)).start()
    os.unlink(path)
    if replacement == "file":
        with open(path, "w") as f:
            f.write("someone else's")
        srv.stop()
        assert Path(path).read_text() == "someone else's"
        return
    with pysock.Server(path=path, proto="tcp") as usurper:
        srv.stop()
        assert os.path.exists(path) and pysock.request(b"still", path) == b"STILL"
        usurper.stop()
    assert not os.path.exists(path)


def contend(path: str, start: threading.Barrier, results: list) -> None:
    """Wait for the others, then try to serve at path."""
    start.wait(5)
    try:
        results.append(pysock.Server(path=path, proto="tcp").start())
    except OSError as exc:
        results.append(exc)


def test_a_race_for_a_path_ends_with_exactly_one_owner(tmp_path):
    path = str(tmp_path / "race.sock")
    for _ in range(20):
        start = threading.Barrier(4)
        results: list = []

        threads = [threading.Thread(target=contend, args=(path, start, results)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        owners = [r for r in results if isinstance(r, pysock.Server)]
        losers = [r for r in results if not isinstance(r, pysock.Server)]
        assert len(owners) == 1 and len(losers) == 3, results
        assert all(exc.errno == errno.EADDRINUSE for exc in losers), losers
        assert pysock.request(b"one", path) == b"ONE"
        owners[0].stop()
        assert not os.path.exists(path)


# -- configuration, refused alike by both backends ---------------------------------
BAD_DURATIONS = [math.nan, math.inf, -math.inf, -1, 1e10, 3e6]


@pytest.mark.parametrize("backend", ["c", "python"])
@pytest.mark.parametrize("option", ["idle_timeout", "send_timeout"])
@pytest.mark.parametrize("value", BAD_DURATIONS, ids=str)
def test_bad_durations_are_config_errors_naming_the_range(backend, option, value):
    with pytest.raises(pysock.ConfigError, match=f"{option} must be a number of seconds from 0 to 1000000"):
        pysock.Server(backend=backend, **{option: value})


@pytest.mark.parametrize("option,value", [("max_unsent", 1 << 41), ("max_conns", 0), ("workers", 0),
                                          ("spin_us", -1), ("backlog", 1 << 17), ("port", 65536)])
def test_bad_sizes_are_config_errors_naming_the_range(option, value):
    for backend in ("c", "python"):
        with pytest.raises(pysock.ConfigError, match=f"{option} {value} is out of range"):
            pysock.Server(backend=backend, **{option: value})


def test_an_unknown_keyword_lists_the_known_ones():
    with pytest.raises(pysock.ConfigError, match=r"unknown server option 'idle'.*idle_timeout") as info:
        pysock.Server(idle=1)
    for option in ("log", "faults", "max_unsent", "path"):
        assert option in str(info.value), option


@pytest.mark.parametrize("log", [5, "stderr"])
def test_a_log_that_is_not_callable_is_refused(log):
    with pytest.raises(pysock.ConfigError, match="log must be callable"):
        pysock.Server(LOCALHOST, 0, log=log)


@pytest.mark.parametrize("host", ["0x0", "127.1", "2130706433", "x" * 300, "a..b", "h\u00e9", "-x", " "])
def test_both_backends_refuse_the_same_hosts(host):
    for backend in ("c", "python"):
        with pytest.raises(pysock.ConfigError, match="host"):
            pysock.Server(host, 0, "tcp", backend=backend)


@pytest.mark.parametrize("args", [["--idle-timeout", "nan"], ["--idle-timeout", "inf"],
                                  ["--idle-timeout", "1e10"], ["--send-timeout", "3e6"], ["-b", "0x0"]])
@pytest.mark.parametrize("backend", ["c", "python"])
def test_bad_numbers_and_hosts_on_the_cli_are_one_line_and_exit_2(args, backend):
    result = run_cli("serve", "0", "--tcp", "--backend", backend, *args)
    err = result.stderr.decode()
    assert result.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err


def test_engine_params_cover_the_list():
    assert [p.id for p in server_kinds("tcp")] == [e.name for e in ENGINES["tcp"]]
