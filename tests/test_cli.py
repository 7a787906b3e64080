"""The pysock command as a user runs it: a subprocess, real sockets."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from support import UNRESOLVABLE, CliServer, cli_env, has_ipv6_loopback, run_cli, skip_without

import pysock


def test_serve_prints_ready_lines_and_serves_both_protocols():
    with CliServer("serve", "0", lines=2) as cli:
        tcp = cli.address("tcp")
        udp = cli.address("udp")
        assert tcp[0] == "127.0.0.1" and tcp[1] > 0
        assert tcp[1] == udp[1]  # PORT 0: one free port for both
        assert pysock.request(b"via tcp", tcp, "tcp") == b"VIA TCP"
        assert pysock.request(b"via udp", udp, "udp") == b"VIA UDP"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_serve_cleanly_and_frees_the_port(sig):
    with CliServer("serve", "0", "--tcp") as cli:
        host, port = cli.address("tcp")
        idle = socket.create_connection((host, port), timeout=5)  # a client still connected
        code, err = cli.interrupt(sig, timeout=2)
        idle.close()
    assert code in (0, 130)
    assert b"Traceback" not in err
    with pysock.Server(host, port, "tcp"):  # the port is free again
        pass


def test_serve_with_the_fast_paths_and_stop_it_with_ctrl_c():
    skip_without("epoll")
    skip_without("reuseport")
    with CliServer("serve", "0", "--model", "epoll", "--workers", "2", "--spin", "20", lines=2) as cli:
        tcp, udp = cli.address("tcp"), cli.address("udp")
        assert pysock.request(b"epoll", tcp, "tcp") == b"EPOLL"
        assert pysock.request(b"batched", udp, "udp") == b"BATCHED"
        idle = socket.create_connection(tcp, timeout=5)
        code, err = cli.interrupt(signal.SIGINT, timeout=2)
        idle.close()
    assert code == 130
    assert b"Traceback" not in err
    with pysock.Server(tcp[0], tcp[1], "tcp"):  # the port is free again
        pass


def test_port_in_use_is_one_line_and_exit_1(tcp_server):
    result = run_cli("serve", str(tcp_server.port), "--tcp")
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "in use" in err and str(tcp_server.port) in err


@pytest.mark.parametrize("args", [["serve", "70000"], ["serve", "http"], ["serve", "--frobnicate"],
                                  ["serve", "--workers", "two"], ["serve", "--spin", "-5"],
                                  ["send", "127.0.0.1"], ["nosuchcommand"], [],
                                  ["proxy"], ["proxy", "0"], ["proxy", "0", "nowhere"],
                                  ["proxy", "0", "udp://127.0.0.1:9", "--fault", "limit_data=5"],
                                  ["proxy", "0", "127.0.0.1:9", "--fault-up", "drop=0.5"],
                                  ["proxy", "--api", "127.0.0.1:http"], ["proxy", "--unix", "/tmp/x", "1", "2"]])
def test_usage_errors_exit_2_with_one_line(args):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1
    assert b"Traceback" not in result.stderr


def test_unknown_model_is_a_usage_error_naming_the_choices():
    result = run_cli("serve", "0", "--tcp", "--model", "fork")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "'fork'" in err and "epoll" in err


def test_unresolvable_bind_address_exits_1():
    result = run_cli("serve", "0", "-b", UNRESOLVABLE)
    assert result.returncode == 1
    assert UNRESOLVABLE in result.stderr.decode()
    assert result.stderr.decode().count("\n") == 1


def test_send_message_over_tcp(tcp_server):
    tcp = run_cli("send", "127.0.0.1", str(tcp_server.port), "hello", "world")
    assert (tcp.returncode, tcp.stdout) == (0, b"HELLO WORLD\n")


def test_send_message_over_udp(udp_server):
    udp = run_cli("send", "-u", "127.0.0.1", str(udp_server.port), "hello")
    assert (udp.returncode, udp.stdout) == (0, b"HELLO\n")


def _send_lines(flag: list, port: int) -> None:
    result = run_cli("send", *flag, "127.0.0.1", str(port), input=b"first line\nsecond\n")
    assert result.returncode == 0
    assert result.stdout == b"FIRST LINE\nSECOND\n"  # no prompt: stdin is not a terminal


def test_send_reads_lines_from_stdin_without_prompting_tcp(tcp_server):
    _send_lines([], tcp_server.port)


def test_send_reads_lines_from_stdin_without_prompting_udp(udp_server):
    _send_lines(["-u"], udp_server.port)


def test_send_to_nobody_is_one_line_and_exit_1():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        result = run_cli("send", "127.0.0.1", str(port), "hi")
    assert result.returncode == 1
    assert "refused" in result.stderr.decode().lower()


def test_python_dash_m_and_help():
    result = run_cli("--help")
    assert result.returncode == 0
    assert b"serve" in result.stdout and b"send" in result.stdout


def test_send_prompts_like_the_tutorials_on_a_terminal(tcp_server):
    import os
    import pty
    import select

    main, side = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "pysock", "send", "127.0.0.1", str(tcp_server.port)],
                            stdin=side, stdout=side, stderr=subprocess.PIPE, env=cli_env())
    os.close(side)
    seen = b""
    try:
        def read_until(marker: bytes) -> None:
            nonlocal seen
            while marker not in seen:
                ready, _, _ = select.select([main], [], [], 10)
                assert ready, f"no {marker!r} on the terminal; saw {seen!r}"
                seen += os.read(main, 1024)

        read_until(b"Input lowercase sentence:")
        os.write(main, b"from a terminal\n")
        read_until(b"FROM A TERMINAL")
        os.write(main, b"\x04")  # Ctrl-D: end of input
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=5)
        os.close(main)


# -- what a user meets next (one line, the address named, exit codes) ----------
@pytest.mark.parametrize("args", [["send", "-t", "-1", "127.0.0.1", "1", "x"],
                                  ["send", "-t", "nan", "127.0.0.1", "1", "x"],
                                  ["send", "-t", "0", "127.0.0.1", "1", "x"], ["talk", "-t", "-1", "127.0.0.1", "5"],
                                  ["chat", "join", "-t", "-1", "ann", "5"]])
def test_a_bad_timeout_is_a_usage_error(args):
    result = run_cli(*args)
    err = result.stderr.decode()
    assert result.returncode == 2 and err.count("\n") == 1 and "timeout" in err


def test_a_refused_connection_names_the_address():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = s.getsockname()[1]
        result = run_cli("send", "127.0.0.1", str(port), "x")
    err = result.stderr.decode()
    assert result.returncode == 1 and err.count("\n") == 1 and f"tcp://127.0.0.1:{port}" in err


def test_send_passes_arguments_that_are_not_utf8_as_bytes():
    with pysock.Server() as srv:
        host, port = srv.address
        result = subprocess.run([sys.executable, "-m", "pysock", "send", host, str(port), b"caf\xe9 ok"],
                                capture_output=True, timeout=20, env=cli_env())
    assert result.returncode == 0 and result.stdout == b"CAF\xe9 OK\n"


def test_send_fails_when_the_server_closes_without_replying():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        proc = subprocess.Popen([sys.executable, "-m", "pysock", "send", "127.0.0.1", str(port), "hi"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
        conn, _ = listener.accept()
        conn.settimeout(10)
        assert conn.recv(2) == b"hi"
        conn.close()  # no reply: EOF
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and out == b"" and b"without replying" in err


def test_a_closed_stdout_ends_quietly():
    proc = subprocess.Popen([sys.executable, "-m", "pysock", "layout"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env())
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and err == b""


def test_bind_takes_an_address_as_serve_prints_it():
    if not has_ipv6_loopback():
        pytest.skip("this machine cannot bind ::1")
    with CliServer("serve", "0", "--tcp", "-b", "[::1]") as cli:
        assert cli.urls[0].startswith("tcp://[::1]:")
        assert pysock.request(b"six", cli.address("tcp")) == b"SIX"


def test_ready_json_for_scripts(tmp_path):
    import json

    with CliServer("serve", "0", "--ready-json", lines=2) as cli:
        tcp, udp = (json.loads(line) for line in cli.urls)
        assert tcp["proto"] == "tcp" and udp["proto"] == "udp" and tcp["port"] == udp["port"] > 0
        assert tcp["url"] == f"tcp://127.0.0.1:{tcp['port']}" and tcp["pid"] == cli.proc.pid
        assert pysock.request(b"js", ("127.0.0.1", tcp["port"])) == b"JS"
        code, err = cli.interrupt(signal.SIGTERM)
    assert code == 0
    assert err.decode().splitlines() == [f"pysock: served {tcp['url']}: accepted 1, active 0, rejected 0, "
                                         "idle_closed 0, slow_closed 0, datagrams 0, bytes_in 2, bytes_out 2, errors 0",
                                         f"pysock: served {udp['url']}: accepted 0, active 0, rejected 0, "
                                         "idle_closed 0, slow_closed 0, datagrams 0, bytes_in 0, bytes_out 0, errors 0"]


def test_chat_join_and_talk_take_urls():
    with CliServer("chat", "serve", "0") as room:
        member = CliServer("chat", "join", "ann", room.urls[0], stdin=True)
        with member:
            assert member.urls[0].startswith("welcome ann: ")
    with CliServer("talk", "--listen", "0") as listener:
        with CliServer("talk", listener.urls[0], stdin=True) as caller:
            assert caller.urls[0] == f"connected to {listener.urls[0]}"
    result = run_cli("talk", "udp://127.0.0.1:5")
    assert result.returncode == 2 and b"not a tcp:// address" in result.stderr


def test_serve_on_every_ipv6_address_serves_ipv4_too_unless_asked():
    if not has_ipv6_loopback():
        pytest.skip("this machine cannot bind ::1")
    with CliServer("serve", "0", "--tcp", "-b", "::") as cli:
        port = cli.address("tcp")[1]
        assert pysock.request(b"four", ("127.0.0.1", port)) == b"FOUR"
        assert pysock.request(b"six", ("::1", port)) == b"SIX"
    with CliServer("serve", "0", "--tcp", "-b", "::", "--ipv6-only") as cli:
        port = cli.address("tcp")[1]
        with pytest.raises(ConnectionRefusedError):
            pysock.request(b"four", ("127.0.0.1", port))


def stderr_line(proc, timeout: float = 10) -> str:
    """The next line the process writes on stderr, waiting at most timeout."""
    import os
    import select

    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([proc.stderr], [], [], timeout)
        assert ready, f"no line on stderr within {timeout} s after {line!r}"
        byte = os.read(proc.stderr.fileno(), 1)
        assert byte, f"stderr ended after {line!r}"
        line += byte
    return line.decode()


def test_serve_verbose_logs_connections_and_datagrams():
    with CliServer("serve", "0", "-v", lines=2) as cli:
        host, port = cli.address("tcp")
        assert pysock.request(b"hello", (host, port)) == b"HELLO"
        assert pysock.request(b"dgram", (host, port), "udp") == b"DGRAM"
        opened, closed, datagrams = (stderr_line(cli.proc) for _ in range(3))
        code, _ = cli.interrupt(signal.SIGTERM)
    assert opened.startswith(f"pysock: tcp://127.0.0.1:{port} #1 from 127.0.0.1:") and opened.endswith(" open\n")
    assert closed.endswith("closed (eof): 5 bytes in, 5 out\n")
    assert datagrams == f"pysock: udp://127.0.0.1:{port} 1 datagrams, 5 bytes in, 5 out in the last second\n"
    assert code == 0


def serve_unix(tmp_path, name: str) -> tuple[subprocess.Popen, str]:
    """pysock serve --unix PATH (a stream and a datagram socket), started."""
    path = str(tmp_path / name)
    proc = subprocess.Popen([sys.executable, "-m", "pysock", "serve", "--unix", path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    return proc, path


@pytest.mark.parametrize("round", [pytest.param(i, marks=[] if i < 3 else pytest.mark.slow) for i in range(40)])
def test_two_quick_sigterms_end_serve_cleanly(tmp_path, round):
    """As timeout(1) sends them: the second signal must not cut the first's
    cleanup short (both socket files removed, the served lines printed)."""
    proc, path = serve_unix(tmp_path, f"two{round}.sock")
    try:
        assert proc.stdout.readline().startswith(b"unix://") and proc.stdout.readline().startswith(b"unix://")
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err.decode().count("pysock: served unix://") == 2, err
    assert b"Traceback" not in err
    assert not os.path.exists(path) and not os.path.exists(path + ".dgram")


@pytest.mark.parametrize("delay", [pytest.param(d / 1000, marks=[] if d in (0, 60) else pytest.mark.slow)
                                   for d in range(0, 400, 20)])
def test_ctrl_c_at_any_moment_of_the_start_leaves_nothing_behind(tmp_path, delay):
    """Before the handlers are installed, while the servers are being made,
    or once they serve: no traceback, and no socket file left."""
    proc, path = serve_unix(tmp_path, "start.sock")
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not os.path.exists(path) and not os.path.exists(path + ".dgram")
    if b"Traceback" in err and b"pysock/__main__.py" not in err and b"pysock/cli" not in err:
        return  # the signal beat Python's own start (site, runpy), before pysock's entry point ran
    assert proc.returncode in (130, -signal.SIGINT), err  # -SIGINT: before Python took the signal over
    assert b"Traceback" not in err


def test_send_t_bounds_the_whole_command(pysock_server_with):
    """-t is the most the exchange takes, even against a server that sends
    a byte now and then (bandwidth=2): what came is printed, then one line."""
    srv = pysock_server_with(pysock.Faults(bandwidth=2))
    start = time.monotonic()
    result = run_cli("send", "-t", "1", "127.0.0.1", str(srv.port), "hello", timeout=20)
    took = time.monotonic() - start
    assert result.returncode == 1 and 1.0 <= took < 6.0, (took, result)
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "did not end" in err
    assert b"HELLO".startswith(result.stdout.strip()) and result.stdout.strip()


def test_send_prints_a_whole_reply_whose_close_comes_late(pysock_server_with):
    srv = pysock_server_with(pysock.Faults(close_delay=2))
    result = run_cli("send", "-t", "1", "127.0.0.1", str(srv.port), "hello", timeout=20)
    assert result.stdout == b"HELLO\n"  # it came: printed, never "no reply"
    assert result.returncode == 1 and "did not end (5 bytes came)" in result.stderr.decode()


def test_send_reads_while_it_sends_a_long_line(pysock_server_with):
    """A 16 MiB stdin line is sent while its reply is read (neither side's
    buffers fill up and stall the other)."""
    srv = pysock_server_with(None)
    line = b"x" * (16 << 20) + b"\n"
    result = run_cli("send", "-t", "20", "127.0.0.1", str(srv.port), input=line, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == line.upper()


@pytest.fixture
def pysock_server_with(pysock_server):
    """A TCP echo server with the faults given (or none)."""
    return lambda faults: pysock_server("tcp", faults=faults)


def test_a_scoped_ipv6_address_is_a_usage_error():
    result = run_cli("serve", "0", "-b", "::1%lo")
    assert result.returncode == 2 and result.stderr.decode().count("\n") == 1
    assert "scope" in result.stderr.decode()


def test_a_unix_path_of_any_bytes_serves_and_prints_one_clean_line(tmp_path):
    """A path that is not UTF-8 and holds an escape byte: served on both
    backends, its ready and served lines written %XX, and send takes the
    URL back."""
    for backend in ("c", "python"):
        path = os.fsdecode(bytes(tmp_path) + b"/odd\xff\x1b[2J.sock")
        with CliServer("serve", "--tcp", "--unix", path, "--backend", backend, "-v") as cli:
            url = cli.urls[0]
            assert url == f"unix://{tmp_path}/odd%FF%1B[2J.sock"
            result = run_cli("send", url, "hi")
            assert result.stdout == b"HI\n", result.stderr
            code, err = cli.interrupt()
        assert code == 130 and b"\x1b" not in err and b"\xff" not in err
        assert f"served unix://{tmp_path}/odd%FF%1B[2J.sock".encode() in err
        assert not os.path.exists(path)


def test_proxy_forwards_with_faults_each_way_and_stops_with_ctrl_c(tcp_server):
    with CliServer("proxy", "0", tcp_server.url, "--fault", "latency=0.1", "--fault-up", "seed=3",
                   "--fault-up", "corrupt=1") as cli:
        start = time.monotonic()
        # every byte up has one bit flipped: "a" (0x61) arrives as another letter, uppercased back
        reply = pysock.request(b"a" * 50, cli.address("tcp"))
        assert time.monotonic() - start >= 0.1
        assert len(reply) == 50 and reply != b"A" * 50
        code, err = cli.interrupt(signal.SIGINT, timeout=5)
    assert code == 130 and b"Traceback" not in err
    assert b"faults_up: corrupt=1.0, seed=3" in err and b"proxied tcp://127.0.0.1:" in err


def test_proxy_listens_on_a_unix_path_in_front_of_tcp(tcp_server, tmp_path):
    path = str(tmp_path / "front.sock")
    with CliServer("proxy", "--unix", path, tcp_server.url) as cli:
        assert cli.urls == [f"unix://{path}"]
        assert pysock.request(b"through unix", path) == b"THROUGH UNIX"
