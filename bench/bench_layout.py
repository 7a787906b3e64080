"""What it costs to fill a struct sockaddr_in and to resolve a name, from
Python, by each route.  Run:

    PYTHONPATH=$PWD python -m pytest bench/bench_layout.py --benchmark-only

docs/structs.md reads the numbers.  Every benchmark checks its result once,
so a fast wrong answer cannot win."""
from __future__ import annotations

import socket
import struct
import sys

import pytest

import pysock
from pysock._core import ffi, lib
from pysock.lessons import layout

HOST = "127.0.0.1"
HOST_B = HOST.encode()
PORT = 12000
MANY = 1000
EXPECTED = pysock.sockaddr_in(HOST, PORT)
EXPECTED_MANY = b"".join(layout.sockaddr_in_many(HOST, PORT, MANY))
SIZE = ffi.sizeof("struct sockaddr_in")


def group(name: str) -> pytest.MarkDecorator:
    """Rounds of at least 100 us, so the timer's own cost is spread over
    many calls; a warm-up first.  Both matter for calls of a few hundred ns."""
    return pytest.mark.benchmark(group=name, min_time=0.0001, warmup=True)


# -- one sockaddr_in --------------------------------------------------------

one = group("sockaddr_in: fill one")


@one
def test_c_call_doing_nothing(benchmark):
    """The floor: a cffi call whose C side only stores one pointer (ps_layouts)."""
    table = ffi.new("const ps_layout **")
    assert benchmark(lib.ps_layouts, table) == 4


@one
def test_c_one_call(benchmark):
    """ps_sockaddr_in into a struct allocated once: one crossing, C does all."""
    sa = ffi.new("struct sockaddr_in *")
    assert benchmark(lib.ps_sockaddr_in, sa, HOST_B, PORT) == 0
    assert ffi.buffer(sa)[:] == EXPECTED


@one
def test_c_wrapper(benchmark):
    """pysock.sockaddr_in: ffi.new, encode, the C call, check, copy to bytes."""
    assert benchmark(pysock.sockaddr_in, HOST, PORT) == EXPECTED


@one
def test_struct_pack(benchmark):
    def fill() -> bytes:
        return struct.pack("=HH4s8x", socket.AF_INET, socket.htons(PORT), socket.inet_aton(HOST))

    assert benchmark(fill) == EXPECTED


@one
def test_ctypes_fields(benchmark):
    def fill() -> layout.SockaddrIn:
        sa = layout.SockaddrIn()
        sa.sin_family = socket.AF_INET
        sa.sin_port = socket.htons(PORT)
        sa.sin_addr.s_addr = int.from_bytes(socket.inet_aton(HOST), sys.byteorder)
        return sa

    assert bytes(benchmark(fill)) == EXPECTED


@one
def test_ffi_new_fields(benchmark):
    def fill():
        sa = ffi.new("struct sockaddr_in *")
        sa.sin_family = socket.AF_INET
        sa.sin_port = socket.htons(PORT)
        sa.sin_addr.s_addr = int.from_bytes(socket.inet_aton(HOST), sys.byteorder)
        return sa

    assert ffi.buffer(benchmark(fill))[:] == EXPECTED


# -- a thousand sockaddr_in (ports 12000..12999) -----------------------------

many = group("sockaddr_in: fill 1,000")


@many
def test_c_loop_in_c(benchmark):
    """ps_sockaddr_in_many: one crossing, the loop in C."""
    array = ffi.new("struct sockaddr_in[]", MANY)
    assert benchmark(lib.ps_sockaddr_in_many, array, MANY, HOST_B, PORT) == MANY
    assert ffi.buffer(array)[:] == EXPECTED_MANY


@many
def test_c_loop_in_python(benchmark):
    """The same C function as test_c_one_call, called 1,000 times from a Python loop."""
    array = ffi.new("struct sockaddr_in[]", MANY)
    slots = [(array + i, PORT + i) for i in range(MANY)]
    fill_one = lib.ps_sockaddr_in

    def fill() -> None:
        for slot, port in slots:
            fill_one(slot, HOST_B, port)

    benchmark(fill)
    assert ffi.buffer(array)[:] == EXPECTED_MANY


@many
def test_struct_pack_into_loop(benchmark):
    """struct.Struct.pack_into, 1,000 times into one buffer (address parsed once, as C does)."""
    packer = struct.Struct("=HH4s8x")
    buf = bytearray(SIZE * MANY)

    def fill() -> None:
        addr = socket.inet_aton(HOST)
        for i in range(MANY):
            packer.pack_into(buf, i * SIZE, socket.AF_INET, socket.htons(PORT + i), addr)

    benchmark(fill)
    assert bytes(buf) == EXPECTED_MANY


# -- resolving "localhost" ----------------------------------------------------

resolve = group("resolve: localhost")
NAME = "localhost"
ADDRESS = socket.gethostbyname(NAME)


@resolve
def test_c_hostent(benchmark):
    """ps_gethostbyname (gethostbyname_r) into a hostent and buffer allocated once."""
    he = ffi.new("struct hostent *")
    buf = ffi.new("char[]", 8192)
    assert benchmark(lib.ps_gethostbyname, NAME.encode(), he, buf, 8192) == 0
    assert socket.inet_ntoa(ffi.buffer(he.h_addr_list[0], 4)[:]) == ADDRESS


@resolve
def test_c_hostent_wrapper(benchmark):
    """pysock.resolve: the C call plus copying every field out into Python."""
    assert benchmark(pysock.resolve, NAME).addresses[0] == ADDRESS


@resolve
def test_socket_gethostbyname(benchmark):
    assert benchmark(socket.gethostbyname, NAME) == ADDRESS


@resolve
def test_socket_getaddrinfo(benchmark):
    infos = benchmark(socket.getaddrinfo, NAME, None, socket.AF_INET, socket.SOCK_STREAM)
    assert infos[0][4][0] == ADDRESS
