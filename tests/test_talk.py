"""Two-way talk (seeds 002, 004): both sides as subprocesses, full duplex,
and every way of ending tells the other side."""
from __future__ import annotations

import signal
import socket

import pytest
from support import LOCALHOST, CliServer, needs_ipv6, run_cli


def pair(*listen_args: str, host: str = LOCALHOST):
    """A listening side and a side connected to it, both waiting for input."""
    listener = CliServer("talk", "--listen", "0", *listen_args, stdin=True)
    port = listener.address("tcp")[1]
    caller = CliServer("talk", host, str(port), stdin=True)
    shown = f"[{host}]" if ":" in host else host
    assert caller.urls == [f"connected to tcp://{shown}:{port}"]
    assert listener.readline(10).startswith(f"peer joined from tcp://{shown}:")
    return listener, caller


def test_both_sides_talk_at_once_then_eof_ends_it():
    listener, caller = pair()
    with listener, caller:
        listener.write("hello from the listener\n")
        caller.write("hello from the caller\n")  # no waiting for a turn
        caller.expect("peer: hello from the listener")
        listener.expect("peer: hello from the caller")
        caller.write("one\ntwo\n")
        listener.expect("peer: one")
        listener.expect("peer: two")
        listener.write("a last line without newline")
        listener.close_stdin()
        caller.expect("peer: a last line without newline")
        assert caller.rest() == (0, "peer left\n")
        assert listener.rest() == (0, "")


def test_q_ends_it_and_is_not_sent():
    listener, caller = pair()
    with listener, caller:
        caller.write("q\n")
        assert listener.rest() == (0, "peer left\n")
        assert caller.rest() == (0, "")


@pytest.mark.parametrize("side", ["listener", "caller"])
def test_ctrl_c_on_either_side_tells_the_other(side):
    listener, caller = pair()
    with listener, caller:
        quitter, other = (listener, caller) if side == "listener" else (caller, listener)
        code, err = quitter.interrupt(signal.SIGINT)
        assert code == 130 and b"Traceback" not in err
        assert other.rest() == (0, "peer left\n")


def test_a_killed_peer_is_noticed():
    listener, caller = pair()
    with listener, caller:
        caller.proc.kill()
        caller.proc.wait(5)
        assert listener.rest() == (0, "peer left\n")


def test_listener_talks_to_a_plain_socket():
    with CliServer("talk", "--listen", "0", stdin=True) as listener:
        with socket.create_connection(listener.address("tcp"), timeout=5) as peer:
            listener.readline(10)  # peer joined from ...
            peer.sendall(b"raw bytes \xff\n")
            listener.expect("peer: raw bytes \ufffd")
            listener.write("back\n")
            assert peer.recv(100) == b"back\n"
        assert listener.rest() == (0, "peer left\n")


def test_talk_to_nobody_is_one_line_and_exit_1():
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))  # bound, not listening: refused
        result = run_cli("talk", LOCALHOST, str(s.getsockname()[1]))
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1 and "refused" in result.stderr.decode().lower()


@pytest.mark.parametrize("args", [["127.0.0.1"], [], ["--listen", "0", "127.0.0.1", "5"], ["127.0.0.1", "x"]])
def test_usage_errors_exit_2(args):
    result = run_cli("talk", *args)
    assert result.returncode == 2 and result.stderr.decode().count("\n") == 1


@needs_ipv6
def test_talk_over_ipv6():
    listener, caller = pair("-b", "::1", host="::1")
    with listener, caller:
        assert listener.urls[0].startswith("tcp://[::1]:")
        caller.write("over six\n")
        listener.expect("peer: over six")
        caller.close_stdin()
        assert listener.rest() == (0, "peer left\n")
