"""The open-loop load generator and pysock load: it keeps its schedule
whatever the server does, measures latency from when each request was due
(so a stall shows), counts what is lost, and reaches past one source
address's ports.  Each check uses a server whose delay is known (a latency
fault, a freeze); the bounds are lower bounds with the slack a loaded
machine needs, never a speed."""
from __future__ import annotations

import json
import os
import re
import resource
import select
import signal
import threading
import time

import pytest
from support import CliServer, run_cli, wait_for

import pysock
from pysock import Faults
from pysock.bench import loadgen

FIELDS = ["offered_rps", "achieved_rps", "sent", "received", "errors", "lost",
          "p50_us", "p90_us", "p99_us", "p999_us", "max_us"]


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_the_rate_holds_when_every_reply_is_late(proto):
    """200/s over 2 connections against a server that holds each reply
    50 ms: about 200/s, each at about 50 ms (TCP: about 5 in flight on each
    connection, their replies read in order)."""
    with pysock.Server(port=0, proto=proto, faults=Faults(latency=0.05)) as srv:
        r = loadgen.openloop(srv.address, proto, rate=200, conns=2, duration=2.0)
    assert r.offered_rps == 200
    assert r.due == 400 and r.sent == 400 and r.received == 400
    assert (r.bad, r.failed, r.lost) == (0, 0, 0)
    assert 180 <= r.achieved_rps <= 200  # the last 50 ms of replies come after the end
    assert 50_000 <= r.p50_us < 50_000 + 250_000
    assert r.p50_us <= r.p90_us <= r.p99_us <= r.p999_us <= r.max_us * 1.02


def test_a_closed_loop_under_the_same_delay_falls_to_its_round_trips():
    """The contrast: two connections, one request each in flight, 50 ms a
    round trip, at most 40/s: what the open loop does not do."""
    with pysock.Server(port=0, faults=Faults(latency=0.05)) as srv:
        r = loadgen.pingpong(srv.address, "tcp", conns=2, duration=1.0)
    assert r.offered_rps is None and r.requests <= 40


def test_a_frozen_server_shows_in_p90_p99_and_max():
    """The server stopped (SIGSTOP) for 0.4 s in a 3 s run at 2,000/s: the
    800 requests due during the freeze wait up to 0.4 s each, which puts
    them in the top 13 %: p90, p99 and max all show the freeze."""
    with CliServer("serve", "0", "--tcp") as server:
        address = server.address("tcp")
        done = threading.Event()

        def freeze() -> None:
            if done.wait(1.0):
                return
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(0.4)
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)

        thread = threading.Thread(target=freeze)
        thread.start()
        try:
            r = loadgen.openloop(address, "tcp", rate=2000, conns=4, duration=3.0, timeout=2.0)
        finally:
            done.set()
            thread.join(5)
    assert (r.bad, r.failed, r.lost) == (0, 0, 0) and r.received == r.sent == 6000
    assert r.max_us >= 390_000        # the first request due in the freeze waited it all
    assert r.p99_us >= 300_000        # the 60 slowest: due in its first 0.1 s
    assert r.p90_us >= 50_000         # the 600 slowest: due in its first 0.35 s


def test_udp_loss_is_counted():
    with pysock.Server(port=0, proto="udp", faults=Faults(drop=0.3, seed=7)) as srv:
        r = loadgen.openloop(srv.address, "udp", rate=1000, conns=2, duration=1.0, timeout=0.2)
        srv.set_faults(Faults(drop=1.0))
        dropped_all = loadgen.openloop(srv.address, "udp", rate=500, conns=1, duration=0.2, timeout=0.1)
    assert r.sent == 1000 and r.received + r.lost == r.sent and r.bad == 0
    assert 200 <= r.lost <= 400  # 30 % of 1,000, give or take the schedule's draws
    assert dropped_all.received == 0 and dropped_all.lost == dropped_all.sent == 100


def test_wrong_replies_are_errors_in_the_open_loop_too():
    with pysock.Server(port=0, transform="echo") as srv:
        r = loadgen.openloop(srv.address, "tcp", rate=500, conns=2, duration=0.2)
        assert r.bad == r.sent > 0 and r.received == 0
        assert loadgen.openloop(srv.address, "tcp", rate=500, duration=0.2, transform="echo").received == 100


def test_a_server_that_goes_away_loses_what_was_in_flight():
    with CliServer("serve", "0", "--tcp", "--fault", "latency=10") as server:
        address = server.address("tcp")
        timer = threading.Timer(0.5, server.kill)
        timer.start()
        try:
            r = loadgen.openloop(address, "tcp", rate=100, conns=2, duration=1.0, timeout=0.5)
        finally:
            timer.cancel()
    assert r.received == 0 and r.failed == 2 and r.lost == r.due == 100


def test_connections_spread_over_source_addresses(tmp_path):
    """Past per_source connections, an IPv4 loopback run binds 127.0.0.2,
    .3, ...: the server logs where each came from."""
    lines: list[str] = []
    with pysock.Server(port=0, log=lines.append) as srv:
        r = loadgen.openloop(srv.address, "tcp", rate=600, conns=300, duration=0.5, per_source=100)
        wait_for(lambda: sum("open" in line for line in lines) >= 300)
    assert r.received == r.sent == 300 and r.failed == 0
    sources = {m.group(1) for m in (re.search(r"from (127\.0\.0\.\d+):", line) for line in lines) if m}
    assert sources == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}


def test_bad_open_loop_arguments_are_config_errors():
    for kwargs, message in [({"rate": 0}, "rate must be between"), ({"rate": float("nan")}, "rate must"),
                            ({"rate": 10, "per_source": 0}, "per_source must be between")]:
        with pytest.raises(pysock.ConfigError, match=message):
            loadgen.openloop(("127.0.0.1", 9), **kwargs)


# -- pysock load -----------------------------------------------------------------
def test_pysock_load_json_has_exactly_the_fields():
    with pysock.Server(port=0, proto="udp") as srv:
        out = run_cli("load", srv.url, "--rate", "400", "--conns", "2", "--duration", "0.5", "--json")
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)
    assert list(figures) == FIELDS
    assert figures["offered_rps"] == 400 and figures["sent"] == 200 and figures["errors"] == 0


def test_pysock_load_closed_loop_prints_a_table():
    with pysock.Server(port=0) as srv:
        out = run_cli("load", srv.url, "--conns", "2", "--duration", "0.3")
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode()
    assert text.startswith("offered     closed loop\n") and "p99.9" in text


def test_pysock_load_over_a_unix_datagram_socket(tmp_path):
    path = str(tmp_path / "echo.sock")
    with pysock.Server(path=path, proto="udp") as srv:
        out = run_cli("load", srv.url, "-u", "--rate", "200", "--duration", "0.3", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["received"] == 60


def test_pysock_load_shows_progress_and_ctrl_c_prints_what_was_measured():
    with pysock.Server(port=0) as srv, \
            CliServer("load", srv.url, "--rate", "100", "--duration", "30", "--json", lines=0) as load:
        ready, _, _ = select.select([load.proc.stderr], [], [], 10)
        progress = load.proc.stderr.readline() if ready else b""  # the first, after about a second
        assert progress.startswith(b"pysock load: 1 s of 30: "), progress
        load.proc.send_signal(signal.SIGINT)
        out, err = load.proc.communicate(timeout=10)
    assert load.proc.returncode == 130, err
    assert b"interrupted after" in err
    figures = json.loads(out)
    assert 50 <= figures["sent"] < 3000 and figures["errors"] == 0


@pytest.mark.parametrize("args, message", [
    (["--rate", "0"], "a rate is over 0"),
    (["--rate", "fast"], "expected requests per second"),
    (["-u"], "-u is for a unix URL"),
    (["--duration", "-1"], "a timeout is a number of seconds over 0"),
])
def test_pysock_load_usage_errors_are_one_line(args, message):
    out = run_cli("load", "tcp://127.0.0.1:9", *args)
    assert out.returncode == 2
    assert out.stderr.decode().count("\n") == 1 and message in out.stderr.decode()


def test_pysock_load_says_when_descriptors_are_too_few():
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100))

    with pysock.Server(port=0) as srv, \
            CliServer("load", srv.url, "--conns", "500", python_code="", lines=0, preexec_fn=low_limit) as load:
        code, err = load.proc.wait(20), load.proc.stderr.read()
    assert code == 1
    assert err.decode().count("\n") == 1 and "may open 100 (RLIMIT_NOFILE's hard limit" in err.decode()


def test_pysock_load_against_nobody_is_one_line():
    out = run_cli("load", "tcp://127.0.0.1:9", "--duration", "0.2")
    assert out.returncode == 1 and out.stderr.decode().count("\n") == 1


@pytest.mark.slow
def test_thirty_thousand_connections_on_the_c_epoll_model():
    """30,000 connections (more than one source address has ports for:
    they come from 127.0.0.1 and .2) to one C epoll server in a process of
    its own, each sending at a small rate: no error, nothing lost.  Each
    process needs 30,000 descriptors: where the hard limit is lower, this
    cannot run here, and says so."""
    conns = 30_000
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < conns + loadgen.SPARE_FDS:
        pytest.skip(f"RLIMIT_NOFILE's hard limit is {hard}: a process here cannot hold {conns} connections")
    loadgen.raise_descriptor_limit(conns)
    with CliServer("serve", "0", "--tcp", "--model", "epoll", "--max-conns", str(conns + 100),
                   timeout=30) as server:
        r = loadgen.openloop(server.address("tcp"), "tcp", rate=6000, conns=conns, duration=10.0, timeout=5.0)
    assert (r.bad, r.failed, r.lost) == (0, 0, 0) and r.received == r.sent == 60_000
