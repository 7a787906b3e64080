"""The C library compiles warning-free with the flags the build uses."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from support import ROOT

sys.path.insert(0, str(ROOT / "pysock"))
import _build

CC = shutil.which("cc") or shutil.which("gcc")


@pytest.mark.skipif(CC is None, reason="no C compiler on PATH")
@pytest.mark.parametrize("portable", [[], ["-DPYSOCK_PORTABLE"]], ids=["linux", "portable"])
@pytest.mark.parametrize("source", _build.SOURCES)
def test_c_source_is_warning_free(source, portable):
    """Also as a system without epoll, recvmmsg or SO_REUSEPORT builds it."""
    result = subprocess.run([CC, *_build.CFLAGS, *portable, "-Werror", "-pedantic", "-fsyntax-only",
                             str(_build.CSRC / source)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_header_parses_for_cffi():
    text = _build.header_cdef((_build.CSRC / "pysock.h").read_text())
    assert "#include" not in text
    assert "#define PS_ERESOLVE 20000" in text
