"""A recvmmsg batch of 64 struct mmsghdr, filled and read back from Python
with ctypes, with cffi, and in C: what the UDP loop does to its batch before
and after every recvmmsg (csrc/udp.c), by each route.  Run:

    python -m pytest bench/bench_mmsghdr.py --benchmark-only

docs/structs.md reads the numbers.  Each route fills its own arrays; every
benchmark checks once that what it filled is what C fills, so a fast wrong
answer cannot win."""
from __future__ import annotations

import ctypes

import pytest

from pysock._core import ffi, lib
from pysock.lessons import layout

N = 64          # messages per batch
SLOT = 2048     # bytes per message's buffer
NAME_LEN = ffi.sizeof("struct sockaddr_storage")

batch = pytest.mark.benchmark(group="mmsghdr: fill 64 and read back", min_time=0.0001, warmup=True)


def shape(get) -> list[tuple]:
    """Each message as offsets from its batch's buffers, so that batches at
    different addresses compare: (name offset, namelen, iov offset,
    iovlen, buffer offset, iov_len, msg_len).  get(i) gives the raw values."""
    return [get(i) for i in range(N)]


# -- C: one call ---------------------------------------------------------------

class CBatch:
    def __init__(self) -> None:
        self.msgs = ffi.new("struct mmsghdr[]", N)
        self.iov = ffi.new("struct iovec[]", N)
        self.names = ffi.new("struct sockaddr_storage[]", N)
        self.bufs = ffi.new("unsigned char[]", N * SLOT)

    def run(self) -> int:
        return lib.ps_mmsg_batch(self.msgs, self.iov, self.names, self.bufs, SLOT, N)

    def shape(self) -> list[tuple]:
        base_name = int(ffi.cast("uintptr_t", self.names))
        base_iov = int(ffi.cast("uintptr_t", self.iov))
        base_buf = int(ffi.cast("uintptr_t", self.bufs))

        def get(i: int) -> tuple:
            h = self.msgs[i].msg_hdr
            return (int(ffi.cast("uintptr_t", h.msg_name)) - base_name, h.msg_namelen,
                    int(ffi.cast("uintptr_t", h.msg_iov)) - base_iov, h.msg_iovlen,
                    int(ffi.cast("uintptr_t", self.iov[i].iov_base)) - base_buf, self.iov[i].iov_len,
                    self.msgs[i].msg_len)
        return shape(get)


# -- cffi: the same loop in Python, on cffi's structs -------------------------

class CffiBatch(CBatch):
    def run(self) -> int:
        msgs, iov, names = self.msgs, self.iov, self.names
        for i in range(N):
            v = iov[i]
            v.iov_base = self.bufs + i * SLOT
            v.iov_len = SLOT
            h = msgs[i].msg_hdr
            h.msg_name = names + i
            h.msg_namelen = NAME_LEN
            h.msg_iov = iov + i
            h.msg_iovlen = 1
        return sum(msgs[i].msg_len for i in range(N))


# -- ctypes: the same loop in Python, on layout.py's hand-written twins -----------

class CtypesBatch:
    def __init__(self) -> None:
        self.msgs = (layout.Mmsghdr * N)()
        self.iov = (layout.Iovec * N)()
        self.names = (layout.SockaddrStorage * N)()
        self.bufs = ctypes.create_string_buffer(N * SLOT)

    def run(self) -> int:
        msgs, iov = self.msgs, self.iov
        base_buf = ctypes.addressof(self.bufs)
        base_name = ctypes.addressof(self.names)
        iov_ptr = ctypes.cast(iov, ctypes.POINTER(layout.Iovec))
        for i in range(N):
            v = iov[i]
            v.iov_base = base_buf + i * SLOT
            v.iov_len = SLOT
            h = msgs[i].msg_hdr
            h.msg_name = base_name + i * NAME_LEN
            h.msg_namelen = NAME_LEN
            h.msg_iov = ctypes.cast(ctypes.byref(iov_ptr.contents, i * ctypes.sizeof(layout.Iovec)),
                                    ctypes.POINTER(layout.Iovec))
            h.msg_iovlen = 1
        return sum(msgs[i].msg_len for i in range(N))

    def shape(self) -> list[tuple]:
        base_name = ctypes.addressof(self.names)
        base_iov = ctypes.addressof(self.iov)
        base_buf = ctypes.addressof(self.bufs)

        def get(i: int) -> tuple:
            h = self.msgs[i].msg_hdr
            return (h.msg_name - base_name, h.msg_namelen,
                    ctypes.cast(h.msg_iov, ctypes.c_void_p).value - base_iov, h.msg_iovlen,
                    self.iov[i].iov_base - base_buf, self.iov[i].iov_len, self.msgs[i].msg_len)
        return shape(get)


def reference() -> list[tuple]:
    c = CBatch()
    c.run()
    return c.shape()


@batch
def test_c_one_call(benchmark):
    """ps_mmsg_batch: one crossing, both loops in C."""
    b = CBatch()
    assert benchmark(b.run) == 0
    assert b.shape() == reference()


@batch
def test_cffi_loop_in_python(benchmark):
    b = CffiBatch()
    assert benchmark(b.run) == 0
    assert b.shape() == reference()


@batch
def test_ctypes_loop_in_python(benchmark):
    b = CtypesBatch()
    assert benchmark(b.run) == 0
    assert b.shape() == reference()
