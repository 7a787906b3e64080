"""pysock bench as a smoke test of correctness: every server answers every
load right and the command exits 0.  Speed is never asserted here."""
from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from support import run_cli, skip_unless_ci

from pysock import cli
from pysock.bench import measure as bench
from pysock.config import uring_refused

# The default tier's report: C and two twins under a TCP, a UDP and a
# stream load; --full runs every server under every default load.
SOME = ["--servers", "c,c-threads,python-loop,python-asyncio", "--loads", "tcp-32x1k,udp-1x64,tcp-stream",
        "--stream-mib", "8"]


def quick_bench(*args: str) -> dict:
    result = run_cli("bench", "--quick", "--json", *args, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert b"Traceback" not in result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def quick_report() -> dict:
    return quick_bench(*SOME)


def check_every_run_is_right(report: dict) -> int:
    """Every server answered every load it serves without a bad reply; the
    number of runs."""
    runs = 0
    for entry in report["results"]:
        server = next(s for s in bench.SERVERS if s.name == entry["server"])
        load = next(ld for ld in bench.LOADS if ld.name == entry["load"])
        if server.missing() or server.model(load.proto) is None:
            assert entry["status"] == "n/a"
            continue
        assert entry["status"] == "ok", entry
        for run in entry["runs"]:
            assert run["ok"] and run["bad"] == 0 and run["failed"] == 0, (entry["server"], entry["load"], run)
            assert run["requests"] > 0
            runs += 1
    return runs


def test_quick_bench_runs_each_server_it_is_given_without_a_bad_reply(quick_report):
    assert check_every_run_is_right(quick_report) >= 3 * 3  # C, the loop and asyncio under each load
    assert {e["server"] for e in quick_report["results"]} == set(SOME[1].split(","))


@pytest.mark.slow
def test_quick_bench_runs_every_server_under_every_load_without_a_bad_reply():
    assert check_every_run_is_right(quick_bench()) >= len([ld for ld in bench.LOADS if ld.default]) * 3


def test_quick_bench_reports_the_machine_and_ratios_to_c(quick_report):
    assert quick_report["machine"]["nproc"] >= 1 and quick_report["machine"]["python"]
    c_rows = [e for e in quick_report["results"] if e["server"] == "c"]
    assert c_rows and all(e["ratio"] for e in c_rows)
    assert all(v == pytest.approx(1.0) for e in c_rows for v in e["ratio"].values())
    others = [e for e in quick_report["results"] if e["server"] != "c" and e["status"] == "ok"]
    assert others and all("cpu_us_per_req" in e["ratio"] or "cpu_ms_per_mib" in e["ratio"] for e in others)


def test_every_run_counts_the_servers_context_switches(quick_report):
    for entry in quick_report["results"]:
        for run in entry["runs"]:
            key = "ctx_per_mib" if "cpu_ms_per_mib" in run else "ctx_per_req"
            assert run[key] is not None and run[key] >= 0, (entry["server"], entry["load"], run)


def needs_strace() -> None:
    if not bench.strace_available():
        skip_unless_ci("strace is not installed (Debian: apt-get install strace)")


def test_syscalls_adds_a_column_of_calls_per_request():
    needs_strace()
    text = run_cli("bench", "--quick", "--syscalls", "--servers", "c", "--loads", "udp-1x64", timeout=60)
    assert text.returncode == 0 and "sys/req" in text.stdout.decode()


@pytest.mark.slow
def test_syscalls_counts_what_each_server_calls_per_request():
    """The counts, not the times: epoll makes a recv and a send per request;
    uring hands the kernel many per io_uring_enter; a Python thread server
    makes its two and more (the GIL changes hands through futex)."""
    needs_strace()
    servers = "c,c-threads,python-threads" + ("" if uring_refused() else ",c-uring")
    result = run_cli("bench", "--quick", "--syscalls", "--servers", servers, "--loads", "tcp-32x1k", "--json",
                     timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    calls = {e["server"]: e["syscalls"] for e in json.loads(result.stdout)["results"]}
    # A recv and a send per request, and little else: each connection's
    # accept, options and close add to a short traced run.  epoll reads once
    # per readiness; the threads model tries a read before it polls, and on
    # a busy machine (the client slower to answer) that try finds nothing
    # more often: at most one more recvfrom per request.
    assert 1.0 <= calls["c"]["calls"]["recvfrom"] < 1.3, calls["c"]
    assert 1.0 <= calls["c-threads"]["calls"]["recvfrom"] < 2.2, calls["c-threads"]
    for server in ("c", "c-threads"):
        assert 1.0 <= calls[server]["calls"]["sendto"] < 1.3, calls[server]
    assert calls["c"]["per_unit"] < 3.0, calls["c"]  # epoll said each socket was ready
    assert calls["python-threads"]["per_unit"] > 2.0
    if "c-uring" in calls:
        assert calls["c-uring"]["per_unit"] < 0.5
        assert "recvfrom" not in calls["c-uring"]["calls"]


def test_a_server_with_wrong_replies_is_marked_failed_not_averaged():
    wrong = bench.BenchServer("c-echo", "c", tcp="threads", udp="loop", options=("--transform", "echo"))
    plan = bench.Plan(duration=0.1, reps=2, warmup=0.05)
    entry = bench.measure(wrong, bench.LOADS[0], plan, (None, None), lambda text: None)
    assert entry["status"] == "failed"
    assert entry["failed_runs"] == 2 and all(run["bad"] > 0 for run in entry["runs"])
    assert entry["median"] == {}  # nothing averaged in


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_plot_draws_a_png(tmp_path):
    out = tmp_path / "bench.png"
    result = run_cli("bench", "--quick", "--servers", "c,python-loop", "--loads", "udp-1x64,tcp-stream",
                     "--stream-mib", "4", "--plot", str(out), timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"udp-1x64" in result.stdout and b"python-loop" in result.stdout


def test_plot_without_matplotlib_is_one_line_and_exit_1(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code = cli.main(["bench", "--quick", "--plot", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 1 and "needs matplotlib" in err and err.count("\n") == 1


@pytest.mark.parametrize("args", [["--servers", "nginx"], ["--loads", "tcp-1x1"], ["--reps", "0"]])
def test_bench_usage_errors_exit_2(args):
    result = run_cli("bench", *args)
    assert result.returncode == 2 and result.stderr.decode().count("\n") == 1


@pytest.mark.parametrize("args", [["--plot", "/no/such/folder/x.png"], ["--compare", "/no/such/report.json"],
                                  ["--duration", "nan"]])
def test_a_bad_path_or_number_fails_before_anything_is_measured(args):
    result = run_cli("bench", *args, timeout=20)
    err = result.stderr.decode()
    assert result.returncode == 2 and err.count("\n") == 1, err
    assert "[1/" not in err  # no load was started


SMALL = ["--quick", "--servers", "c,python-loop", "--loads", "udp-1x64"]


def test_csv_markdown_and_a_comparison_with_a_saved_run(quick_report, tmp_path):
    saved = tmp_path / "before.json"
    saved.write_text(json.dumps(quick_report))
    result = run_cli("bench", *SMALL, "--format", "csv", "--compare", str(saved), timeout=60)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = result.stdout.decode().splitlines()
    assert out[0].startswith("load,server,status,rps,")
    assert out[1].startswith("udp-1x64,c,ok,") and out[2].startswith("udp-1x64,python-loop,ok,")
    assert "against the saved run" in result.stdout.decode()
    assert any(line.split()[:2] == ["udp-1x64", "c"] and "req/s x" in line for line in out)
    md = run_cli("bench", *SMALL, "--format", "markdown", timeout=60).stdout.decode().splitlines()
    assert md[0].startswith("| load | server | status |") and md[2].startswith("| udp-1x64 | c | ok |")


def test_ctrl_c_prints_what_was_measured_and_exits_130():
    import signal
    import subprocess

    from support import cli_env

    proc = subprocess.Popen([sys.executable, "-m", "pysock", "bench", "--servers", "c", "--loads", "udp-1x64",
                             "--reps", "100", "--duration", "0.2", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    try:
        for line in proc.stderr:  # wait for the first measured run
            if b"run 1/100" in line:
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    report = json.loads(out)
    assert report["interrupted"] is True
    [entry] = report["results"]
    assert entry["server"] == "c" and 1 <= len(entry["runs"]) < 100 and entry["median"]["rps"] > 0


def test_another_interpreter_runs_the_chosen_servers_each_right_after_its_own():
    """--python: the chosen servers again under the other interpreter (here
    this one, by its path), each run right after the same server's own."""
    result = run_cli("bench", "--quick", "--servers", "python-loop,python-threads", "--loads", "tcp-1x64",
                     "--format", "csv", "--python", sys.executable, timeout=90)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    label = f"cpython-{sys.version_info[0]}.{sys.version_info[1]}"
    if sys.implementation.name == "pypy":
        label = f"pypy-{sys.version_info[0]}.{sys.version_info[1]}"
    rows = [line.split(",")[1] for line in result.stdout.decode().splitlines()[1:5]]
    assert rows == ["python-loop", f"python-loop@{label}", "python-threads", f"python-threads@{label}"]


# -- curves ----------------------------------------------------------------------
def quick_curve(kind: str, *args: str) -> dict:
    result = run_cli("bench", "--curve", kind, "--quick", "--servers", "c,python-threads", *args, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    return json.loads(result.stdout) if "--json" in args else {"text": result.stdout.decode()}


@pytest.fixture(scope="module")
def rate_report() -> dict:
    return quick_curve("rate", "--json")


def test_the_rate_curve_steps_past_each_servers_closed_loop_maximum(rate_report):
    from pysock.bench import curves, loadgen

    report = rate_report
    assert report["curve"] == "rate" and not report["interrupted"]
    for server in ("c", "python-threads"):
        points = [p for p in report["points"] if p["server"] == server]
        steps = [p["fraction"] for p in points]
        assert steps == list(curves.QUICK.fractions[:len(steps)]) and steps
        assert len(steps) == len(curves.QUICK.fractions) or points[-1].get("behind")  # stopped past its knee
        for p in points:
            assert set(loadgen.FIELDS) <= set(p), p
            assert p["errors"] == 0 and p["received"] > 0
            assert p["offered_rps"] == pytest.approx(p["fraction"] * p["closed_loop_rps"], rel=0.01)
            assert p["p50_us"] <= p["p99_us"] <= p["p999_us"]


def test_the_conns_curve_reports_memory_and_cpu_per_point():
    from pysock.bench import curves, loadgen

    report = quick_curve("conns", "--json")
    assert report["curve"] == "conns"
    for server in ("c", "python-threads"):
        points = [p for p in report["points"] if p["server"] == server]
        assert [p["conns"] for p in points] == list(curves.QUICK.conns)
        for p in points:
            assert set(loadgen.FIELDS) | {"conns", "cpu_us_per_req", "rss_kib_per_conn"} <= set(p), p
            assert p["errors"] == 0 and p["lost"] == 0 and "stopped" not in p
            assert p["rss_kib_per_conn"] >= 0 and p["cpu_us_per_req"] > 0
    # a thread per connection costs its stack: more per connection than epoll's
    per_conn = {p["server"]: p["rss_kib_per_conn"] for p in report["points"] if p["conns"] == 1000}
    assert per_conn["python-threads"] > per_conn["c"]


CURVE_FORMATS = [("csv", "server,fraction,offered_rps,"), ("markdown", "| server | fraction | offered_rps |")]


@pytest.mark.parametrize("fmt, first", CURVE_FORMATS)
def test_a_curve_in_csv_and_markdown(rate_report, fmt, first):
    from pysock.bench import curves

    text = curves.FORMATS[fmt](rate_report)
    assert text.startswith(first)
    assert len(text.splitlines()) >= 1 + 2 * 3


@pytest.mark.slow
@pytest.mark.parametrize("fmt, first", CURVE_FORMATS)
def test_bench_curve_format_prints_it(fmt, first):
    text = quick_curve("rate", "--format", fmt)["text"]
    assert text.startswith(first)
    assert len(text.splitlines()) >= 1 + 2 * 3


@pytest.mark.parametrize("args, message", [
    (["--loads", "tcp-1x64"], "--loads is for the points, not --curve"),
    (["--servers", "python-loop"], "python-loop cannot make a curve"),
    (["--servers", "nope"], "unknown server 'nope'"),
])
def test_curve_usage_errors(args, message):
    result = run_cli("bench", "--curve", "rate", *args)
    assert result.returncode == 2 and message in result.stderr.decode()


@pytest.mark.slow
def test_proxy_bench_runs_every_proxy_under_both_loads_without_a_bad_reply():
    from pysock.bench import proxies

    if proxies.haproxy_path() is None:
        skip_unless_ci("haproxy is not installed (apt-get install haproxy)")
    result = run_cli("bench", "--proxies", "--quick", "--json", "--stream-mib", "8", timeout=180)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    report = json.loads(result.stdout)
    seen = {(r["proxy"], r["load"]) for r in report["results"]}
    assert seen == {(p, load) for p in proxies.PROXIES for load in proxies.PROXY_LOADS}
    for entry in report["results"]:
        assert entry["ok"] and all(run["bad"] == 0 and run["requests"] > 0 for run in entry["runs"]), entry
        if entry["proxy"] != "haproxy":
            assert set(entry["vs_haproxy"]) >= ({"mb_s"} if entry["load"] == "tcp-stream" else {"rps"})


@pytest.mark.parametrize("args", [["--proxies", "--servers", "c"], ["--proxies", "--format", "csv"]])
def test_proxy_bench_usage_errors_exit_2(args):
    result = run_cli("bench", *args)
    assert result.returncode == 2 and result.stderr.decode().count("\n") == 1
