"""The client side: one request, or a connection kept open for many."""
from __future__ import annotations

import errno
import socket
import threading
import time
from typing import Callable

from pysock.engines.base import UDP_MAX
from pysock.errors import ConfigError, ReplyError
from pysock.urls import Address, format_url

DEFAULT_TIMEOUT = 5.0


def address_family(address: Address) -> int:
    """AF_UNIX for a path, AF_INET6 for an IPv6 address, else AF_INET."""
    if isinstance(address, str):
        return socket.AF_UNIX
    host = address[0]
    try:
        socket.inet_pton(socket.AF_INET6, host)
        return socket.AF_INET6
    except OSError:
        return socket.AF_INET


def socktype(proto: str) -> int:
    if proto == "tcp":
        return socket.SOCK_STREAM
    if proto == "udp":
        return socket.SOCK_DGRAM
    raise ConfigError(f"unknown proto {proto!r}: choose one of tcp, udp")


def url(address: Address, proto: str) -> str:
    """How pysock names an address: tcp://HOST:PORT, udp://[::1]:PORT, unix://PATH."""
    return format_url(proto, address)


def connect(address: Address, proto: str = "tcp", timeout: float | None = DEFAULT_TIMEOUT) -> socket.socket:
    """A socket connected to address (for UDP: replies from elsewhere are ignored).

    address is (host, port), or a filesystem path for AF_UNIX, where proto
    "tcp" means a stream socket and "udp" a datagram one."""
    family = address_family(address)
    sock = socket.socket(family, socktype(proto))
    try:
        sock.settimeout(timeout)
        if family == socket.AF_UNIX and proto == "udp":
            # A datagram server can only answer a sender with an address.  Linux
            # autobinds an abstract one for an empty path: no file to clean up.
            sock.bind("")
        sock.connect(address if isinstance(address, str) else tuple(address[:2]))
    except BaseException:
        sock.close()
        raise
    return sock


def recv_until_eof(sock: socket.socket, deadline: float | None = None) -> bytes:
    """Everything the peer sends until it closes its side; with a deadline
    (time.monotonic()), a ReplyError holding what came if it has not by then."""
    chunks: list[bytes] = []
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ReplyError("the reply did not end in time", b"".join(chunks))
            sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            raise ReplyError("the reply did not end in time", b"".join(chunks)) from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """n bytes, however the stream splits them; ReplyError if it ends first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 16))
        if not chunk:
            raise ReplyError(f"the server closed the connection after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


# Up to this much goes out before the reply is read.  Past it, the request is
# sent from a second thread while this one reads: the server echoes as it
# reads, and an echo nobody reads would fill both sides' buffers and stall.
SEND_FIRST_MAX = 64 << 10


def shut_write(sock: socket.socket) -> None:
    """Half-close.  A peer that has reset the connection already makes
    shutdown() fail with ENOTCONN: that is the reset, and says so."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise
        raise ConnectionResetError(errno.ECONNRESET, "the peer reset the connection") from None


def send_while(sock: socket.socket, data: bytes, receive: Callable[[], bytes], half_close: bool = False) -> bytes:
    """Send data (then half-close, if asked) and return what receive() reads."""
    if len(data) <= SEND_FIRST_MAX:
        sock.sendall(data)
        if half_close:
            shut_write(sock)
        return receive()
    failed: list[OSError] = []

    def send() -> None:
        try:
            sock.sendall(data)
            if half_close:
                shut_write(sock)
        except OSError as exc:
            failed.append(exc)

    sender = threading.Thread(target=send, name="pysock request sender", daemon=True)
    sender.start()
    try:
        reply = receive()
    finally:
        sender.join(sock.gettimeout())
        if sender.is_alive():  # the reply ended early, or never came: the send must not block on
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the peer has gone already
            sender.join()
    if failed:
        raise failed[0]
    return reply


def request(data: bytes, address: Address, proto: str = "tcp", timeout: float | None = DEFAULT_TIMEOUT) -> bytes:
    """Send data, return the server's whole reply.

    TCP: send everything, half-close, read until the server closes.  UDP: one
    datagram out, one back (data is at most 65507 bytes).  timeout bounds
    the whole request: past it, ReplyError (its ``partial``: what came)."""
    if proto == "udp" and len(data) > UDP_MAX:
        raise ConfigError(f"a UDP datagram holds at most {UDP_MAX} bytes, not {len(data)}")
    deadline = None if timeout is None else time.monotonic() + timeout
    with connect(address, proto, timeout) as sock:
        try:
            if proto == "udp":
                sock.send(data)
                return sock.recv(1 << 16)
            return send_while(sock, data, lambda: recv_until_eof(sock, deadline), half_close=True)
        except socket.timeout:
            raise ReplyError(f"no reply from {url(address, proto)} within {timeout} s") from None
        except ReplyError as exc:
            what = "no reply" if not exc.partial else f"the reply did not end ({len(exc.partial)} bytes came)"
            raise ReplyError(f"{what} from {url(address, proto)} within {timeout} s", exc.partial) from None


class LineReader:
    """Lines from a stream socket, however the stream splits them."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def readline(self, deadline: float | None = None) -> bytes:
        """The next line with its newline; at EOF what is left (maybe b"").
        With a deadline (time.monotonic()), a ReplyError holding what came
        of the line if it has not ended by then."""
        while True:
            end = self.buf.find(b"\n")
            if end >= 0:
                line = bytes(self.buf[: end + 1])
                del self.buf[: end + 1]
                return line
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ReplyError("the reply did not end in time", bytes(self.buf))
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                raise ReplyError("the reply did not end in time", bytes(self.buf)) from None
            if not chunk:
                line = bytes(self.buf)
                self.buf.clear()
                return line
            self.buf += chunk


class Connection:
    """A TCP connection for many round trips (the reply to n bytes is n bytes)."""

    def __init__(self, address: Address, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.sock = connect(address, "tcp", timeout)

    def roundtrip(self, data: bytes) -> bytes:
        return send_while(self.sock, data, lambda: recv_exactly(self.sock, len(data)))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
