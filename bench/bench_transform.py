"""The transform itself: ps_upper in C (in place, through cffi) against
bytes.upper() (a new bytes object), and what one call across the cffi
boundary costs."""
from __future__ import annotations

import pytest

from pysock._core import ffi, lib

SIZES = {"64B": 64, "4KiB": 4096, "1MiB": 1 << 20}


def _data(n: int) -> bytearray:
    pattern = b"Hello, World! abcdefghijklmnopqrstuvwxyz \xc3\xa9\xff 0123456789\n"
    return bytearray((pattern * (n // len(pattern) + 1))[:n])


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("impl", ["c-ps_upper", "python-bytes.upper"])
def test_upper(benchmark, impl, size):
    n = SIZES[size]
    benchmark.group = f"upper-{size}"
    data = _data(n)
    expected = bytes(data).upper()
    if impl == "c-ps_upper":
        buf = ffi.from_buffer(data)  # no copy: C writes into data
        benchmark(lib.ps_upper, buf, n)
        assert bytes(data) == expected
    else:
        frozen = bytes(data)
        assert benchmark(frozen.upper) == expected


@pytest.mark.benchmark(group="cffi-call")
def test_one_call_into_c(benchmark):
    """ps_upper on zero bytes: nothing but the crossing (argument
    conversion, GIL release and re-acquire)."""
    buf = ffi.new("unsigned char[]", 1)
    benchmark(lib.ps_upper, buf, 0)


@pytest.mark.benchmark(group="cffi-call")
def test_one_python_call_for_comparison(benchmark):
    def nothing(buf, n):
        return None

    benchmark(nothing, None, 0)
