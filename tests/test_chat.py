"""The UDP chat room (seed 002): the room's rules, the server on real
sockets, and ``pysock chat serve`` / ``join`` as subprocesses."""
from __future__ import annotations

import signal
import socket

import pytest
from support import LOCALHOST, CliServer, needs_ipv6, run_cli

from pysock.apps.chat import NAME_MAX, UDP_MAX, ChatServer, Room, visible
from pysock.errors import ConfigError, ReflectionWarning

A, B, C = ("127.0.0.1", 1001), ("127.0.0.1", 1002), ("127.0.0.1", 1003)


def room_with(*members, **options) -> Room:
    room = Room(**options)
    for name, addr in members:
        room.handle(name.encode(), addr)
    return room


def sends(room: Room, data: bytes, sender) -> list:
    return room.handle(data, sender).sends


# -- the rules --------------------------------------------------------------
def test_newcomer_is_welcomed_and_announced_to_the_others():
    room = room_with(("alice", A))
    out = sends(room, b"bob", B)
    assert (b"bob joined\n", A) in out
    assert [m for m, to in out if to == B] == [b"welcome bob: 2 in the room\n"]
    assert room.members == {A: "alice", B: "bob"}


def test_message_goes_to_every_other_member_with_the_name_as_one_line():
    room = room_with(("alice", A), ("bob", B), ("carol", C))
    assert sorted(sends(room, b"hi all\n", A)) == sorted([(b"alice: hi all\n", B), (b"alice: hi all\n", C)])


def test_q_leaves_and_the_others_are_told():
    room = room_with(("alice", A), ("bob", B), ("carol", C))
    assert sorted(sends(room, b"q", B)) == sorted([(b"bob left\n", A), (b"bob left\n", C)])
    assert B not in room.members
    assert sends(room, b"hello", A) == [(b"alice: hello\n", C)]


@pytest.mark.parametrize("datagram", [b"q", b"q\n", b"", b"\n", b"\x00\x01"])
def test_stranger_saying_q_or_nothing_is_ignored(datagram):
    room = room_with(("alice", A))
    assert sends(room, datagram, B) == []
    assert room.members == {A: "alice"}


def test_empty_message_from_a_member_is_not_relayed():
    room = room_with(("alice", A), ("bob", B))
    assert sends(room, b"", A) == [] and sends(room, b"\r\n", A) == []


def test_invalid_utf8_name_and_text_do_not_break_the_room():
    room = room_with(("alice", A))
    room.handle(b"b\xffo\xfeb", B)
    assert room.members[B] == "b\ufffdo\ufffdb"
    assert sends(room, b"\xff\xfe raw", B) == [("b\ufffdo\ufffdb: ".encode() + b"\xff\xfe raw\n", A)]


def test_oversize_name_and_message_are_cut():
    room = room_with(("alice", A))
    room.handle(b"n" * 1000 + b"\nsecond\tline", B)
    assert room.members[B] == "n" * NAME_MAX
    [(relayed, to)] = sends(room, b"x" * UDP_MAX, A)
    assert to == B and len(relayed) == UDP_MAX and relayed.startswith(b"alice: xxx") and relayed.endswith(b"x\n")


def test_a_newcomer_over_max_members_is_told_the_room_is_full():
    room = room_with(("alice", A), ("bob", B), max_members=2)
    out = room.handle(b"carol", C)
    assert out.sends == [(b"the room is full: 2 members\n", C)]
    assert "carol turned away" in out.log and C not in room.members
    room.handle(b"q", B)
    assert sends(room, b"carol", C)[-1] == (b"welcome carol: 2 in the room\n", C)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_silent_member_expires_and_the_others_are_told():
    clock = Clock()
    room = room_with(("alice", A), ("bob", B), member_timeout=60, clock=clock)
    clock.now += 30
    room.handle(b"still here", A)           # alice speaks: her clock restarts
    assert room.next_expiry() == 1060       # bob's silence ends first
    clock.now += 31
    [gone] = room.expire()
    assert gone.sends == [(b"bob left (silent for 60 s)\n", A)] and room.members == {A: "alice"}
    assert room.expire() == [] and room.next_expiry() == 1090
    clock.now += 30
    assert [o.sends for o in room.expire()] == [[]] and room.members == {}


def test_a_big_room_costs_one_send_per_recipient():
    room = room_with(*[(f"m{i}", ("127.0.0.1", 2000 + i)) for i in range(256)])
    assert len(sends(room, b"hello", ("127.0.0.1", 2000))) == 255
    assert len(room.members) == 256


@pytest.mark.parametrize("bad", [{"max_members": 0}, {"member_timeout": 0}, {"member_timeout": float("nan")},
                                 {"member_timeout": float("inf")}])
def test_bad_room_limits_are_config_errors(bad):
    with pytest.raises(ConfigError):
        Room(**bad)


def test_join_shows_control_characters_visibly():
    assert visible(b"bob: hi\nalice: forged\x1b[31m\tred\n") == "bob: hi\\nalice: forged\\x1b[31m\\tred"
    assert visible("bob: h\u00e9\u202e".encode()) == "bob: h\u00e9\\u202e"  # bidi override: shown, not obeyed


# -- the server on real sockets ----------------------------------------------
def udp_member(server: ChatServer, name: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    sock.connect(server.address)
    sock.send(name)
    assert sock.recv(UDP_MAX).startswith(b"welcome " + name)
    return sock


def test_server_survives_every_odd_datagram():
    with ChatServer(LOCALHOST, 0) as room:
        alice = udp_member(room, b"alice")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            for odd in (b"q", b"", b"\xff\xfe\xfd", b"z" * UDP_MAX):
                stranger.sendto(odd, room.address)
            odd_name = "\ufffd\ufffd\ufffd".encode()
            assert alice.recv(UDP_MAX) == odd_name + b" joined\n"  # q and nothing: ignored
            relayed = alice.recv(UDP_MAX + 1)
            assert relayed.startswith(odd_name + b": zzz") and len(relayed) == UDP_MAX
            stranger.sendto(b"q", room.address)
            assert alice.recv(UDP_MAX) == odd_name + b" left\n"
        gone = udp_member(room, b"gone")
        assert alice.recv(UDP_MAX) == b"gone joined\n"
        gone.close()  # vanished without q: relays to it meet a closed port
        bob = udp_member(room, b"bob")
        assert alice.recv(UDP_MAX) == b"bob joined\n"
        for _ in range(3):
            alice.send(b"ping")
            assert bob.recv(UDP_MAX) == b"alice: ping\n"
        alice.close()
        bob.close()


# -- the CLI: three members, each a subprocess ----------------------------------
def join(port: int, name: str, *host: str) -> CliServer:
    member = CliServer("chat", "join", name, *host, str(port), stdin=True)
    assert member.urls[0].startswith(f"welcome {name}: ")
    return member


def test_three_members_join_talk_and_leave():
    with CliServer("chat", "serve", "0") as server:
        host, port = server.address("udp")
        assert host == "127.0.0.1" and port > 0
        with join(port, "alice") as alice, join(port, "bob") as bob:
            alice.expect("bob joined")
            with join(port, "carol", host) as carol:
                assert carol.urls == ["welcome carol: 3 in the room"]
                alice.expect("carol joined")
                bob.expect("carol joined")
                bob.write("hi all\n")
                alice.expect("bob: hi all")
                carol.expect("bob: hi all")
                carol.write("bye\nq\n")
                for other in (alice, bob):
                    other.expect("carol: bye")
                    other.expect("carol left")
                assert carol.rest() == (0, "")
            alice.close_stdin()  # EOF leaves the room too
            bob.expect("alice left")
            assert alice.rest() == (0, "")
            bob.write("anyone?\n")
            bob.interrupt(signal.SIGINT)  # Ctrl-C: leaves, exit 130
            assert bob.proc.returncode == 130
        server.expect("bob left")
        code, err = server.interrupt(signal.SIGINT)
    assert code == 130 and b"Traceback" not in err


def test_server_logs_joins_and_leaves():
    with CliServer("chat", "serve", "0") as server:
        port = server.address("udp")[1]
        with join(port, "dave") as dave:
            assert server.readline(10).startswith("dave joined from 127.0.0.1:")
            dave.close_stdin()
            assert dave.rest()[0] == 0
            server.expect("dave left")


def test_member_notices_when_the_room_is_gone():
    with CliServer("chat", "serve", "0") as server:
        port = server.address("udp")[1]
        with join(port, "frank") as frank:
            server.interrupt(signal.SIGINT)
            frank.write("hello?\n")  # meets a closed port: ICMP port unreachable
            assert frank.rest() == (0, "the chat room is gone\n")


def test_join_without_a_room_is_one_line_and_exit_1():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOCALHOST, 0))  # bound, never answering
        result = run_cli("chat", "join", "-t", "0.5", "eve", str(s.getsockname()[1]))
    assert result.returncode == 1
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "no chat room answered" in err


@pytest.mark.parametrize("args", [["q", "5000"], ["", "5000"], ["ann", "a", "b", "5000"], ["ann", "notaport"], ["ann"]])
def test_join_usage_errors_exit_2(args):
    result = run_cli("chat", "join", *args)
    assert result.returncode == 2 and result.stderr.decode().count("\n") == 1


@needs_ipv6
def test_chat_over_ipv6():
    with CliServer("chat", "serve", "0", "-b", "::1") as server:
        port = server.address("udp")[1]
        assert server.urls == [f"udp://[::1]:{port}"]
        with join(port, "six", "::1") as six, join(port, "four", "::1") as four:
            six.expect("four joined")
            four.write("hello v6\n")
            six.expect("four: hello v6")


def test_chat_serve_takes_no_echo_server_options():
    """--max-conns and friends belong to the echo server; the chat room
    refuses them rather than ignoring them."""
    result = run_cli("chat", "serve", "0", "--max-conns", "5")
    assert result.returncode == 2


def test_join_prints_a_forged_line_and_escapes_visibly():
    with CliServer("chat", "serve", "0") as server:
        port = server.address("udp")[1]
        with join(port, "alice") as alice:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mallory:
                mallory.settimeout(5)
                mallory.connect((LOCALHOST, port))
                mallory.send(b"mal")
                assert mallory.recv(UDP_MAX) == b"welcome mal: 2 in the room\n"
                alice.expect("mal joined")
                mallory.send(b"hi\nalice: I owe mal 100\x1b[2J")
                alice.expect("mal: hi\\nalice: I owe mal 100\\x1b[2J")


def test_a_full_room_turns_a_newcomer_away_with_one_line():
    with CliServer("chat", "serve", "0", "--max-members", "1") as server:
        port = server.address("udp")[1]
        with join(port, "alice"):
            result = run_cli("chat", "join", "bob", str(port))
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1 and "the room is full: 1 members" in result.stderr.decode()


def test_chat_on_a_non_loopback_address_warns_about_reflection():
    with pytest.warns(ReflectionWarning, match="reflect"):
        room = ChatServer("0.0.0.0", 0)
    room.close()
