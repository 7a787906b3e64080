"""The client side for asyncio: the same calls as pysock.client, awaited,
so that ``async def`` tests (pytest-asyncio, anyio on asyncio) talk to a
server or a proxy without blocking their event loop.

    reply = await pysock.aio.request(b"hi", srv.address)
    async with await pysock.aio.connect(px.address) as conn:
        assert await conn.roundtrip(b"ping") == b"PING"

Servers and proxies started from a fixture serve from a thread of their
own, so they answer while the test's loop awaits."""
from __future__ import annotations

import asyncio
import socket
from typing import Any

from pysock.client import DEFAULT_TIMEOUT, address_family, url
from pysock.engines.base import UDP_MAX
from pysock.errors import ConfigError, ReplyError
from pysock.urls import Address

__all__ = ["AsyncConnection", "connect", "request"]


async def _open(address: Address) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if isinstance(address, str):
        return await asyncio.open_unix_connection(address)
    return await asyncio.open_connection(address[0], address[1])


async def request(data: bytes, address: Address, proto: str = "tcp",
                  timeout: float | None = DEFAULT_TIMEOUT) -> bytes:
    """Send data, return the server's whole reply, as pysock.request does:
    TCP sends everything, half-closes and reads until the server closes;
    UDP sends one datagram and awaits one back.  Past timeout, ReplyError
    (its ``partial``: what came)."""
    if proto == "udp":
        try:
            return await asyncio.wait_for(_datagram(data, address), timeout)
        except asyncio.TimeoutError:
            raise ReplyError(f"no reply from {url(address, proto)} within {timeout} s") from None
    if proto != "tcp":
        raise ConfigError(f"proto must be 'tcp' or 'udp', not {proto!r}")
    got = bytearray()
    try:
        await asyncio.wait_for(_stream(data, address, got), timeout)
    except asyncio.TimeoutError:
        what = "no reply" if not got else f"the reply did not end ({len(got)} bytes came)"
        raise ReplyError(f"{what} from {url(address, proto)} within {timeout} s", bytes(got)) from None
    return bytes(got)


async def _stream(data: bytes, address: Address, got: bytearray) -> None:
    reader, writer = await _open(address)
    try:
        writer.write(data)
        if writer.can_write_eof():
            writer.write_eof()
        while chunk := await reader.read(1 << 16):
            got += chunk
    finally:
        writer.close()


class _OneReply(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.reply.done():
            self.reply.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)


async def _datagram(data: bytes, address: Address) -> bytes:
    if len(data) > UDP_MAX:
        raise ConfigError(f"a UDP datagram holds at most {UDP_MAX} bytes, not {len(data)}")
    if isinstance(address, str):
        raise ConfigError("pysock.aio.request sends datagrams over IP only; use pysock.request for unix")
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _OneReply, remote_addr=(address[0], address[1]), family=address_family(address))
    try:
        transport.sendto(data)
        return await protocol.reply
    finally:
        transport.close()


class AsyncConnection:
    """A TCP (or unix stream) connection for many round trips."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, address: Address,
                 timeout: float | None) -> None:
        self.reader, self.writer = reader, writer
        self.address = address
        self.timeout = timeout

    async def roundtrip(self, data: bytes) -> bytes:
        """Send data; the reply of the same length (ReplyError if the
        connection ends first, or the reply takes longer than timeout)."""
        self.writer.write(data)
        try:
            return await asyncio.wait_for(self.reader.readexactly(len(data)), self.timeout)
        except asyncio.IncompleteReadError as exc:
            raise ReplyError(f"{url(self.address, 'tcp')} closed after {len(exc.partial)} of {len(data)} bytes",
                             exc.partial) from None
        except asyncio.TimeoutError:
            raise ReplyError(f"no whole reply from {url(self.address, 'tcp')} within {self.timeout} s") from None

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass  # reset by the peer: closed either way

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def connect(address: Address, timeout: float | None = DEFAULT_TIMEOUT) -> AsyncConnection:
    """An AsyncConnection to address (host, port) or a unix path."""
    try:
        reader, writer = await asyncio.wait_for(_open(address), timeout)
    except asyncio.TimeoutError:
        raise ReplyError(f"no connection to {url(address, 'tcp')} within {timeout} s") from None
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return AsyncConnection(reader, writer, address, timeout)
