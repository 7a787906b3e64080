"""pysock.aio, the asyncio client, from async tests as pytest-asyncio runs
them: the same replies as pysock.client, and the test's loop free while
servers and proxies serve from their own threads."""
from __future__ import annotations

import asyncio
import time

import pytest
from support import LOCALHOST

import pysock
import pysock.aio
from pysock.errors import ReplyError


@pytest.mark.asyncio
@pytest.mark.parametrize("proto", ["tcp", "udp"])
async def test_request_as_the_blocking_one(pysock_server, proto):
    srv = pysock_server(proto)
    assert await pysock.aio.request(b"hello", srv.address, proto) == b"HELLO"


@pytest.mark.asyncio
async def test_a_connection_for_many_round_trips_over_tcp_and_unix(pysock_tcp_echo, tmp_path):
    async with await pysock.aio.connect(pysock_tcp_echo.address) as conn:
        for word in (b"one", b"two", b"x" * 100_000):
            assert await conn.roundtrip(word) == word.upper()
    with pysock.Server(path=str(tmp_path / "s")) as srv:
        async with await pysock.aio.connect(srv.address) as conn:
            assert await conn.roundtrip(b"unix") == b"UNIX"


@pytest.mark.asyncio
async def test_the_loop_runs_while_a_proxy_delays(pysock_tcp_echo, pysock_proxy):
    """Two requests through a 0.2 s latency take 0.2 s together, not 0.4:
    the awaits overlap on the test's one loop."""
    proxy = pysock_proxy(pysock_tcp_echo.url, faults=pysock.Faults(latency=0.2))
    start = time.monotonic()
    replies = await asyncio.gather(*(pysock.aio.request(b"r%d" % i, proxy.address) for i in range(2)))
    assert replies == [b"R0", b"R1"]
    assert 0.2 <= time.monotonic() - start < 0.39


@pytest.mark.asyncio
async def test_no_reply_is_a_reply_error_with_what_came(pysock_server):
    srv = pysock_server("tcp", faults=pysock.Faults(limit_data=2))
    assert await pysock.aio.request(b"abcd", srv.address) == b"AB"
    stalled = pysock_server("udp", faults=pysock.Faults(stall=True))
    with pytest.raises(ReplyError, match="no reply"):
        await pysock.aio.request(b"x", stalled.address, "udp", timeout=0.2)
    async with await pysock.aio.connect(srv.address) as conn:
        with pytest.raises(ReplyError, match="closed after 2 of 4 bytes"):
            await conn.roundtrip(b"abcd")


def test_async_code_runs_without_a_plugin_too():
    async def main() -> bytes:
        with pysock.Server(LOCALHOST, 0) as srv:
            return await pysock.aio.request(b"plain", srv.address)

    assert asyncio.run(main()) == b"PLAIN"
