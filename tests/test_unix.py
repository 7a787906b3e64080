"""AF_UNIX servers: stream and datagram sockets on a path in a tmp dir."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess

import pytest
from stamps import Window, unstamped
from support import CliServer, run_cli

import pysock
from pysock import transform

TRANSFORMS = ["upper", "echo", "stamp"]


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "echo.sock")


def expected(name: str, proto: str, data: bytes) -> bytes:
    ref = transform.datagram(name, data) if proto == "udp" else transform.apply(name, data)
    return unstamped(ref)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
@pytest.mark.parametrize("name", TRANSFORMS)
def test_every_transform_over_stream_and_datagram(sock_path, proto, name):
    data = b"hello unix\nsecond line"
    window = Window()
    with pysock.Server(path=sock_path, proto=proto, transform=name) as srv:
        assert srv.address == sock_path and srv.url == f"unix://{sock_path}"
        reply = pysock.request(data, srv.address, proto)
    assert window.check(reply) == expected(name, proto, data)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_path_is_removed_on_stop(sock_path, proto):
    srv = pysock.Server(family="unix", path=sock_path, proto=proto).start()
    assert os.path.exists(sock_path)
    srv.stop()
    assert not os.path.exists(sock_path)


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_stale_socket_file_is_replaced(sock_path, proto):
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)  # a socket file nobody serves on: a server that died
    dead.close()
    assert os.path.exists(sock_path)
    with pysock.Server(path=sock_path, proto=proto) as srv:
        assert pysock.request(b"fresh", srv.address, proto) == b"FRESH"


@pytest.mark.parametrize("live", ["tcp", "udp"])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_path_of_a_live_server_is_refused(sock_path, live, proto):
    with pysock.Server(path=sock_path, proto=live) as first:
        with pytest.raises(OSError, match="live server") as info:
            pysock.Server(path=sock_path, proto=proto)
        assert info.value.errno == 98  # EADDRINUSE
        assert pysock.request(b"still mine", first.address, live) == b"STILL MINE"


def test_a_file_that_is_not_a_socket_is_refused_and_kept(sock_path):
    with open(sock_path, "w") as f:
        f.write("precious")
    with pytest.raises(FileExistsError, match="not a socket"):
        pysock.Server(path=sock_path)
    with open(sock_path) as f:
        assert f.read() == "precious"


def test_too_long_a_path_is_a_config_error(tmp_path):
    with pytest.raises(pysock.ConfigError, match="at most 107"):
        pysock.Server(path=str(tmp_path / ("x" * 120)))


def test_datagram_client_leaves_no_file_behind(sock_path, tmp_path):
    with pysock.Server(path=sock_path, proto="udp") as srv:
        for i in range(3):
            assert pysock.request(b"x%d" % i, srv.address, "udp") == b"X%d" % i
        assert os.listdir(tmp_path) == ["echo.sock"]  # the client's own address is abstract


def test_cli_serve_unix_both_and_send(sock_path):
    window = Window()
    with CliServer("serve", "--unix", sock_path, "--transform", "stamp", lines=2) as cli:
        assert cli.urls == [f"unix://{sock_path}", f"unix://{sock_path}.dgram"]
        stream = run_cli("send", "--unix", sock_path, input=b"one\ntwo\n")
        dgram = run_cli("send", "-u", "--unix", sock_path + ".dgram", "a", "datagram")
        code, err = cli.interrupt(signal.SIGTERM)
    assert stream.returncode == dgram.returncode == 0
    assert window.check(stream.stdout) == b"at T :one\nat T :two\n"
    assert window.check(dgram.stdout) == b"at T :a datagram\n"
    assert code == 0 and b"Traceback" not in err
    assert not os.path.exists(sock_path) and not os.path.exists(sock_path + ".dgram")


@pytest.mark.parametrize("flag", ["--tcp", "--udp"])
def test_cli_serve_unix_one_kind_at_path(sock_path, flag):
    proto_flag = ["-u"] if flag == "--udp" else []
    with CliServer("serve", "--unix", sock_path, flag) as cli:
        assert cli.urls == [f"unix://{sock_path}"]
        result = run_cli("send", *proto_flag, "--unix", cli.path(), "hi")
    assert (result.returncode, result.stdout) == (0, b"HI\n")


def test_cli_live_path_is_one_line_and_exit_1(sock_path):
    with pysock.Server(path=sock_path):
        result = run_cli("serve", "--unix", sock_path, "--tcp")
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "live server" in err and sock_path in err


@pytest.mark.parametrize("extra", [["5000"], ["-b", "::1"]])
def test_cli_unix_with_a_port_or_address_is_a_usage_error(sock_path, extra):
    result = run_cli("serve", *extra, "--unix", sock_path)
    assert result.returncode == 2 and result.stderr.decode().count("\n") == 1
    assert not os.path.exists(sock_path)


def test_send_to_a_missing_path_is_one_line_and_exit_1(tmp_path):
    result = run_cli("send", "--unix", str(tmp_path / "nobody.sock"), "hi")
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1 and b"Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed (.ci/run installs it)")
def test_socat_client_over_a_unix_stream(sock_path):
    with pysock.Server(path=sock_path, proto="tcp"):
        result = subprocess.run(["socat", "-", f"UNIX-CONNECT:{sock_path}"], input=b"via socat\n",
                                capture_output=True, timeout=10)
    assert result.stdout == b"VIA SOCAT\n", result.stderr
