"""The compiled C library (``ffi``, ``lib``) and the one place its return
codes become Python exceptions."""
from __future__ import annotations

import os

try:
    from pysock._pysock import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "pysock's C extension is not built; install the package with "
        "'pip install -e .' (a C compiler is needed)"
    ) from exc

from pysock.errors import ResolveError

__all__ = ["check", "ffi", "lib"]


def check(rc: int, what: str) -> int:
    """Return rc if it is a success, else raise the exception it encodes.

    OSError(errno, ...) picks the matching subclass itself
    (ConnectionRefusedError, PermissionError, ...)."""
    if rc >= 0:
        return rc
    if -rc > lib.PS_ERESOLVE:
        reason = ffi.string(lib.ps_hstrerror(-rc)).decode()
        raise ResolveError(f"{what}: {reason}")
    raise OSError(-rc, f"{what}: {os.strerror(-rc)}")
