"""The plainest server of each kind, for pysock bench to measure pysock's
engines against: what a Python programmer writes in a few lines (and, for
the C side, the plainest C epoll echo, csrc/refecho.c).  Upper transform,
and nothing else: no limits, counters, stop, log or faults.  So the
comparison reads three numbers per kind: the reference (the floor of that
kind), pysock's engine of that kind (the same job with the contract kept),
and C.

    python -m pysock.bench.references KIND PROTO

binds 127.0.0.1 on a free port, prints the ready line (tcp://HOST:PORT or
udp://...) and serves until it is killed.  The kinds:

    loop      UDP: the tutorials' loop (recvfrom, sendto the uppercase)
    threads   TCP: socketserver.ThreadingTCPServer, recv and sendall
    asyncio   TCP and UDP: an asyncio Protocol whose data_received writes
              data.upper() (datagram_received: sendto)
    uvloop    the same protocols on uvloop
    c         TCP and UDP: csrc/refecho.c (epoll; recvfrom/sendto)
"""
from __future__ import annotations

import asyncio
import socket
import socketserver
import sys
from typing import Any

KINDS = {"loop": ("udp",), "threads": ("tcp",), "asyncio": ("tcp", "udp"), "uvloop": ("tcp", "udp"),
         "c": ("tcp", "udp")}


def ready(proto: str, sock: socket.socket) -> None:
    host, port = sock.getsockname()[:2]
    print(f"{proto}://{host}:{port}", flush=True)


def loop_udp() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    ready("udp", s)
    while True:
        data, addr = s.recvfrom(65536)
        s.sendto(data.upper(), addr)


class UpperHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data.upper())


class ThreadingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = socket.SOMAXCONN  # the default 5 drops a burst of 32 connects


def threads_tcp() -> None:
    with ThreadingServer(("127.0.0.1", 0), UpperHandler) as server:
        ready("tcp", server.socket)
        server.serve_forever()


class Upper(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())


class UpperDatagrams(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data.upper(), addr)


async def serve_asyncio(proto: str) -> None:
    loop = asyncio.get_running_loop()
    if proto == "tcp":
        server = await loop.create_server(Upper, "127.0.0.1", 0)
        ready("tcp", server.sockets[0])
    else:
        transport, _ = await loop.create_datagram_endpoint(UpperDatagrams, local_addr=("127.0.0.1", 0))
        ready("udp", transport.get_extra_info("socket"))
    await asyncio.Event().wait()


def c_echo(proto: str) -> None:
    from pysock._core import check, lib

    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    if proto == "tcp":
        s.listen(socket.SOMAXCONN)
        s.setblocking(False)
    ready(proto, s)
    check(lib.ps_ref_serve(s.fileno(), proto == "udp"), "the reference C echo failed")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in KINDS or argv[1] not in KINDS[argv[0]]:
        kinds = ", ".join(f"{kind} ({'/'.join(protos)})" for kind, protos in KINDS.items())
        print(f"usage: python -m pysock.bench.references KIND PROTO; the kinds: {kinds}", file=sys.stderr)
        return 2
    kind, proto = argv
    if kind == "loop":
        loop_udp()
    elif kind == "threads":
        threads_tcp()
    elif kind == "c":
        c_echo(proto)
    elif kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve_asyncio(proto))
    else:
        asyncio.run(serve_asyncio(proto))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
