"""Two-way talk over TCP (seeds 002 and 004), without their lock-step.

One side listens for a single peer, the other connects.  Each side sends
the lines typed on its stdin and prints the peer's as ``peer: <line>``, both
at once, until either side ends (EOF, the line ``q``, Ctrl-C); the other is
then told ``peer left`` and ends too.  Leaving is a TCP half-close, so a
peer that is killed outright is noticed just the same."""
from __future__ import annotations

import socket

from pysock import client
from pysock.apps.interactive import Lines, bound_socket, converse, say, write_out
from pysock.client import url

QUIT = b"q"
PEER = b"peer: "
LEAVE_GRACE = 1.0  # seconds to wait for the peer's close after ours


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: a free one); accept() the peer on it."""
    sock = bound_socket(host, port, socket.SOCK_STREAM)
    sock.listen(1)
    return sock


def connect(host: str, port: int, timeout: float | None = 5.0) -> socket.socket:
    sock = client.connect((host, port), "tcp", timeout)
    sock.settimeout(None)
    return sock


class Conversation:
    """One side of a talk over a connected socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.incoming = Lines()

    def run(self, stdin_fd: int | None = None) -> None:
        try:
            converse(self.sock, self.send_line, self.receive, stdin_fd)
        finally:
            self.leave()

    def send_line(self, line: bytes) -> bool:
        if line.rstrip(b"\r\n") == QUIT:
            return False
        try:
            self.sock.sendall(line if line.endswith(b"\n") else line + b"\n")
        except OSError:  # EPIPE, ECONNRESET: the peer is gone
            self.peer_left()
            return False
        return True

    def receive(self) -> bool:
        try:
            data = self.sock.recv(1 << 16)
        except OSError:
            data = b""
        if not data:
            self.peer_left()
            return False
        for line in self.incoming.push(data):
            write_out(PEER + line)
        return True

    def peer_left(self) -> None:
        rest = self.incoming.rest()
        if rest:
            write_out(PEER + rest + b"\n")
        say("peer left")

    def leave(self) -> None:
        """Half-close, so the peer reads everything we sent and then EOF;
        wait briefly for its close so that ours is not a reset."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(LEAVE_GRACE)
            while self.sock.recv(1 << 16):
                pass
        except OSError:
            pass
        finally:
            self.sock.close()


def serve_one(host: str, port: int) -> None:
    """``pysock talk --listen``: the ready line, then talk with the first peer."""
    with listen(host, port) as listener:
        say(url(listener.getsockname()[:2], "tcp"))
        sock, peer = listener.accept()
    say(f"peer joined from {url(peer[:2], 'tcp')}")
    Conversation(sock).run()


def call(host: str, port: int, timeout: float = 5.0) -> None:
    """``pysock talk HOST PORT``: connect, then talk."""
    sock = connect(host, port, timeout)
    say(f"connected to {url((host, port), 'tcp')}")
    Conversation(sock).run()
