"""The tutorials' UDP chat room (seed 002), its bugs fixed.

A newcomer's first datagram is its name: it is welcomed and everyone
already there reads ``<name> joined``.  Each later datagram goes to every
other member as ``name: text``; ``q`` leaves, and the others read
``<name> left``.  The server works on bytes: names and text that are not
UTF-8, empty or oversize datagrams, and strangers saying ``q`` are handled,
never fatal."""
from __future__ import annotations

import selectors
import socket
import threading
from typing import Callable, Optional

from pysock.client import address_family, url
from pysock.errors import ConfigError, ReplyError
from pysock.interactive import bound_socket, converse, say, write_out

UDP_MAX = 65507   # the largest datagram over IPv4: longer relays are cut to it
NAME_MAX = 32     # characters of a name; the rest is dropped
QUIT = b"q"

Address = tuple


def clean_name(data: bytes) -> str:
    """A printable one-line name from whatever a newcomer sent ("" if none)."""
    text = data.decode("utf-8", errors="replace")
    name = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return name[:NAME_MAX]


class Room:
    """Who is in the room and what each datagram makes the server send;
    no sockets here.  ``handle`` returns the (datagram, address) pairs to send."""

    def __init__(self) -> None:
        self.members: dict[Address, str] = {}

    def handle(self, data: bytes, sender: Address) -> list[tuple[bytes, Address]]:
        text = data.rstrip(b"\r\n")
        name = self.members.get(sender)
        if name is None:
            return self._join(text, sender)
        if text == QUIT:
            return self._leave(sender)
        if not text:
            return []
        return self._to_others(sender, name.encode() + b": " + text)

    def _join(self, text: bytes, sender: Address) -> list[tuple[bytes, Address]]:
        name = clean_name(text)
        if not name or text == QUIT:
            return []  # a stranger saying nothing, or leaving a room it never entered
        out = self._to_others(sender, f"{name} joined".encode())
        self.members[sender] = name
        out.append((f"welcome {name}: {len(self.members)} in the room".encode(), sender))
        return out

    def _leave(self, sender: Address) -> list[tuple[bytes, Address]]:
        name = self.members.pop(sender)  # the name is read before the member goes
        return self._to_others(sender, f"{name} left".encode())

    def _to_others(self, sender: Address, message: bytes) -> list[tuple[bytes, Address]]:
        message = message[:UDP_MAX]
        return [(message, addr) for addr in self.members if addr != sender]


class ChatServer:
    """The room on a UDP socket, bound when constructed (port 0: a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 log: Optional[Callable[[str], None]] = None) -> None:
        self.sock = bound_socket(host, port, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.address: Address = self.sock.getsockname()[:2]
        self.room = Room()
        self.log = log or (lambda line: None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return url(self.address, "udp")

    def serve_forever(self) -> None:
        """Relay until stop() (or a signal in this thread)."""
        with selectors.PollSelector() as sel:
            sel.register(self.sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data, sender = self.sock.recvfrom(UDP_MAX + 1)
            except OSError:
                # EAGAIN: drained.  ECONNREFUSED: an earlier relay met a closed
                # port; anything still queued wakes the selector again.
                return
            self._dispatch(data, sender[:2])

    def _dispatch(self, data: bytes, sender: Address) -> None:
        before = dict(self.room.members)
        for message, addr in self.room.handle(data, sender):
            try:
                self.sock.sendto(message, addr)
            except OSError:
                pass  # a full buffer or a vanished member: the others still get theirs
        self._log_change(before, sender)

    def _log_change(self, before: dict, sender: Address) -> None:
        who = f"{sender[0]}:{sender[1]}"
        if sender not in before and sender in self.room.members:
            self.log(f"{self.room.members[sender]} joined from {who}")
        elif sender in before and sender not in self.room.members:
            self.log(f"{before[sender]} left")

    def start(self) -> "ChatServer":
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

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


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
            say(sock.recv(UDP_MAX).decode("utf-8", errors="replace"))  # the welcome
        except socket.timeout:
            raise ReplyError(f"no chat room answered at {where} within {timeout} s") from None
        except ConnectionRefusedError:
            raise ReplyError(f"no chat room at {where} (connection refused)") from None
        left = False
        try:
            left = converse(sock, lambda line: _send_line(sock, line), lambda: _print_message(sock)) == "input"
        finally:
            if not left:  # EOF, Ctrl-C, the room gone: leave all the same
                try:
                    sock.send(QUIT)
                except OSError:
                    pass


def _send_line(sock: socket.socket, line: bytes) -> bool:
    text = line.rstrip(b"\r\n")
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
    write_out(data + b"\n")
    return True


def _room_gone() -> bool:
    say("the chat room is gone")
    return False
