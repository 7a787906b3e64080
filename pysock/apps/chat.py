"""The tutorials' UDP chat room (seed 002), its bugs fixed.

A newcomer's first datagram is its name: it is welcomed and everyone
already there reads ``<name> joined``.  Each later datagram goes to every
other member as ``name: text``; ``q`` leaves, and the others read
``<name> left``.  Every datagram the room sends is one line ending in
``\n``.  At most ``max_members`` (256) are in the room (a newcomer over it is
told the room is full), and a member silent for ``member_timeout`` (10
minutes) is dropped.  The server works on bytes: names and text that are
not UTF-8, empty or oversize datagrams, and strangers saying ``q`` are
handled, never fatal.  ``join`` shows what others send with control
characters made visible (``\x1b``, ``\n``), never raw."""
from __future__ import annotations

import selectors
import socket
import threading
import time
import unicodedata
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from pysock.apps.interactive import bound_socket, converse, say, write_out
from pysock.client import address_family, url
from pysock.config import is_loopback
from pysock.errors import ConfigError, ReflectionWarning, ReplyError

UDP_MAX = 65507   # the largest datagram over IPv4: longer relays are cut to it
NAME_MAX = 32     # characters of a name; the rest is dropped
QUIT = b"q"
MAX_MEMBERS = 256          # a newcomer over this is told the room is full
MEMBER_TIMEOUT = 600.0     # seconds a member may stay silent before it is dropped

Address = tuple[Any, ...]  # what recvfrom gives: (host, port), IPv6 (host, port, flow, scope)
Send = tuple[bytes, Address]  # (datagram, address)


def clean_name(data: bytes) -> str:
    """A printable one-line name from whatever a newcomer sent ("" if none)."""
    text = data.decode("utf-8", errors="replace")
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return name[:NAME_MAX]


def line(text: bytes) -> bytes:
    """One datagram the room sends: text and its newline, within UDP_MAX."""
    return text[: UDP_MAX - 1] + b"\n"


@dataclass
class Outcome:
    """What one datagram (or one expiry) makes the room do: datagrams to
    send, and a line for the server's log."""

    sends: list[Send] = field(default_factory=list)
    log: str | None = None


class Room:
    """Who is in the room and what each datagram makes the server send; no
    sockets here.  Members are kept in the order they last spoke, so the
    one to expire first is always at the front: a datagram costs O(1) plus
    one send per recipient, whatever the room's size."""

    def __init__(self, max_members: int = MAX_MEMBERS, member_timeout: float = MEMBER_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_members < 1:
            raise ConfigError(f"max_members must be at least 1, not {max_members}")
        if not 0 < member_timeout <= 1_000_000:  # NaN fails this too
            raise ConfigError(f"member_timeout must be a number of seconds over 0, at most 1000000, "
                              f"not {member_timeout}")
        self.max_members = max_members
        self.member_timeout = member_timeout
        self.clock = clock
        self._names: OrderedDict[Address, str] = OrderedDict()
        self._seen: dict[Address, float] = {}

    @property
    def members(self) -> dict[Address, str]:
        return dict(self._names)

    def handle(self, data: bytes, sender: Address) -> Outcome:
        text = data.rstrip(b"\r\n")
        name = self._names.get(sender)
        if name is None:
            return self._join(text, sender)
        self._touch(sender)
        if text == QUIT:
            return self._leave(sender, "left")
        if not text:
            return Outcome()
        return Outcome(self._to_others(sender, name.encode() + b": " + text))

    def next_expiry(self) -> float | None:
        """When the longest-silent member expires (clock time), None if empty."""
        for sender in self._names:
            return self._seen[sender] + self.member_timeout
        return None

    def expire(self) -> list[Outcome]:
        """Drop the members silent for member_timeout; the others are told."""
        now = self.clock()
        gone = []
        while self._names:
            oldest = next(iter(self._names))
            if now - self._seen[oldest] < self.member_timeout:
                break
            gone.append(self._leave(oldest, f"left (silent for {self.member_timeout:g} s)"))
        return gone

    def _touch(self, sender: Address) -> None:
        self._names.move_to_end(sender)
        self._seen[sender] = self.clock()

    def _join(self, text: bytes, sender: Address) -> Outcome:
        name = clean_name(text)
        if not name or text == QUIT:
            return Outcome()  # a stranger saying nothing, or leaving a room it never entered
        if len(self._names) >= self.max_members:
            return Outcome([(line(f"the room is full: {self.max_members} members".encode()), sender)],
                           f"{name} turned away from {_who(sender)}: the room is full")
        sends = self._to_others(sender, f"{name} joined".encode())
        self._names[sender] = name
        self._touch(sender)
        sends.append((line(f"welcome {name}: {len(self._names)} in the room".encode()), sender))
        return Outcome(sends, f"{name} joined from {_who(sender)}")

    def _leave(self, sender: Address, how: str) -> Outcome:
        name = self._names.pop(sender)
        del self._seen[sender]
        return Outcome(self._to_others(sender, f"{name} {how}".encode()), f"{name} {how}")

    def _to_others(self, sender: Address, message: bytes) -> list[Send]:
        message = line(message)
        return [(message, addr) for addr in self._names if addr != sender]


def _who(sender: Address) -> str:
    return f"{sender[0]}:{sender[1]}"


class ChatServer:
    """The room on a UDP socket, bound when constructed (port 0: a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 log: Callable[[str], None] | None = None,
                 max_members: int = MAX_MEMBERS, member_timeout: float = MEMBER_TIMEOUT) -> None:
        self.room = Room(max_members, member_timeout)
        self.sock = bound_socket(host, port, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.address: Address = self.sock.getsockname()[:2]
        if not is_loopback(host):
            warnings.warn(f"the chat room on {self.url} welcomes anyone who can reach it, and any "
                          "spoofed sender: it can be used to reflect traffic at others",
                          ReflectionWarning, stacklevel=2)
        self.log = log or (lambda text: None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return url(self.address, "udp")

    def serve_forever(self) -> None:
        """Relay until stop() (or a signal in this thread)."""
        with selectors.PollSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select(self._until_expiry()):
                    if key.fileobj is self._wake_r:
                        return
                    self._drain()
                for outcome in self.room.expire():
                    self._carry_out(outcome)

    def _until_expiry(self) -> float | None:
        when = self.room.next_expiry()
        return None if when is None else max(0.0, when - self.room.clock())

    def _drain(self) -> None:
        while True:
            try:
                data, sender = self.sock.recvfrom(UDP_MAX + 1)
            except OSError:
                # EAGAIN: drained.  ECONNREFUSED: an earlier relay met a closed
                # port; anything still queued wakes the selector again.
                return
            self._carry_out(self.room.handle(data, sender[:2]))

    def _carry_out(self, outcome: Outcome) -> None:
        for message, addr in outcome.sends:
            try:
                self.sock.sendto(message, addr)
            except OSError:
                pass  # a full buffer or a vanished member: the others still get theirs
        if outcome.log:
            self.log(outcome.log)

    def start(self) -> ChatServer:
        self._thread = threading.Thread(target=self.serve_forever, name=f"chat {self.url}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        for s in (self.sock, self._wake_r, self._wake_w):
            s.close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def visible(data: bytes) -> str:
    """A message as one safe line for a terminal: its own trailing newline
    dropped, every other control character (escape sequences, line breaks,
    tabs) shown as an escape like \\x1b or \\n, never sent raw, so a member can
    neither forge lines nor drive the terminal."""
    text = data.decode("utf-8", errors="replace")
    if text.endswith("\n"):
        text = text[:-1]
    return "".join(ch if ch.isprintable() and unicodedata.category(ch) != "Cf"
                   else ch.encode("unicode_escape").decode("ascii") for ch in text)


def check_name(name: str) -> str:
    cleaned = clean_name(name.encode())
    if not cleaned or cleaned.encode() == QUIT or cleaned != name:
        raise ConfigError(f"a chat name is 1-{NAME_MAX} printable characters, not 'q': not {name!r}")
    return cleaned


def join(name: str, address: Address, timeout: float = 5.0) -> None:
    """Enter the room as name; send each line of stdin, print each message,
    until stdin ends or the line q (then the others read "<name> left")."""
    name = check_name(name)
    where = url(address, "udp")
    with socket.socket(address_family(address), socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)  # only the room's datagrams reach us
        try:
            sock.send(name.encode())
            welcome = sock.recv(UDP_MAX)
        except socket.timeout:
            raise ReplyError(f"no chat room answered at {where} within {timeout} s") from None
        except ConnectionRefusedError:
            raise ReplyError(f"no chat room at {where} (connection refused)") from None
        if not welcome.startswith(b"welcome "):
            raise ReplyError(f"the chat room at {where} turned {name!r} away: {visible(welcome)}")
        say(visible(welcome))
        left = False
        try:
            left = converse(sock, lambda line: _send_line(sock, line), lambda: _print_message(sock)) == "input"
        finally:
            if not left:  # EOF, Ctrl-C, the room gone: leave all the same
                try:
                    sock.send(QUIT)
                except OSError:
                    pass


def _send_line(sock: socket.socket, typed: bytes) -> bool:
    text = typed.rstrip(b"\r\n")
    try:
        if text:
            sock.send(text[:UDP_MAX])
    except ConnectionRefusedError:  # the ICMP answer to an earlier datagram
        return _room_gone()
    return text != QUIT


def _print_message(sock: socket.socket) -> bool:
    try:
        data = sock.recv(UDP_MAX)
    except ConnectionRefusedError:
        return _room_gone()
    write_out(visible(data).encode() + b"\n")
    return True


def _room_gone() -> bool:
    say("the chat room is gone")
    return False
