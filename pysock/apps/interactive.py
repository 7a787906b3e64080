"""What the interactive commands (chat, talk) share: a socket bound the way
pysock binds, and one loop that waits on stdin and a socket at once, so a
user reads what arrives while typing."""
from __future__ import annotations

import os
import selectors
import socket
import sys
from typing import Callable

from pysock.client import address_family
from pysock.urls import format_url

LINE_MAX = 65536  # a longer line without a newline is passed on in pieces


def bound_socket(host: str, port: int, socktype: int) -> socket.socket:
    """A socket bound to (host, port): IPv6 for an IPv6 address, else IPv4.
    PORT 0 picks a free port; getsockname() has the real one."""
    family = address_family((host, port))
    sock = socket.socket(family, socktype)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno is None:
            raise
        proto = "udp" if socktype == socket.SOCK_DGRAM else "tcp"
        raise OSError(exc.errno, f"cannot listen on {format_url(proto, (host, port))}: {exc.strerror}") from None
    except BaseException:
        sock.close()
        raise
    return sock


def say(text: str) -> None:
    """A line on stdout, at once (the other end of a pipe waits for it)."""
    print(text, flush=True)


def write_out(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


class Lines:
    """Bytes in, whole lines out, however they were split; bounded."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        """The complete lines (with their newline) that data finishes."""
        self.buf += data
        lines: list[bytes] = []
        while True:
            end = self.buf.find(b"\n", 0, LINE_MAX)
            if end < 0 and len(self.buf) < LINE_MAX:
                return lines
            cut = end + 1 if end >= 0 else LINE_MAX
            lines.append(bytes(self.buf[:cut]))
            del self.buf[:cut]

    def rest(self) -> bytes:
        """What is left after the last newline (at EOF)."""
        rest = bytes(self.buf)
        self.buf.clear()
        return rest


def converse(sock: socket.socket, on_line: Callable[[bytes], bool],
             on_readable: Callable[[], bool], stdin_fd: int | None = None) -> str:
    """Until one side ends, pass each line typed on stdin (with its newline,
    if it had one) to on_line and call on_readable when sock has data; either
    returns False to end.  Returns why it ended: "eof" (stdin ended),
    "input" (on_line said so) or "socket" (on_readable said so)."""
    fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    lines = Lines()
    # poll(), not epoll: stdin may be a regular file, which epoll refuses.
    with selectors.PollSelector() as sel:
        sel.register(fd, selectors.EVENT_READ, "stdin")
        sel.register(sock, selectors.EVENT_READ, "socket")
        while True:
            for key, _ in sel.select():
                if key.data == "socket":
                    if not on_readable():
                        return "socket"
                    continue
                chunk = os.read(fd, LINE_MAX)
                for line in lines.push(chunk) + ([lines.rest()] if not chunk else []):
                    if line and not on_line(line):
                        return "input"
                if not chunk:
                    return "eof"
