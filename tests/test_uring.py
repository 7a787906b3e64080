"""The uring model where the kernel refuses io_uring, and what the build says.

Everything a server promises is checked on the uring model by the
conformance suite (tests/engines.py: c-uring, c-uring-workers, c-uring-spin);
here is only what is particular to it: a kernel that refuses io_uring (a
container's seccomp filter, sysctl kernel.io_uring_disabled) gets one line
saying why, and the default model still serves.  The refusal is real: a
seccomp filter, installed in the child process, makes io_uring_setup fail
with EPERM, exactly as Docker's default profile does."""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
import subprocess
import sys

import pytest
from support import LOCALHOST, CliServer, cli_env

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.machine() not in ("x86_64", "aarch64"),
                                reason="the seccomp filter below knows io_uring_setup's number on "
                                       "Linux x86-64 and arm64 only")

NR_IO_URING_SETUP = 425  # the same on x86-64 and arm64 (the unified syscall table)


def refuse_io_uring() -> None:
    """In a child before exec: a seccomp filter under which io_uring_setup
    fails with EPERM and every other call is allowed."""
    def insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("HBBI", code, jt, jf, k)

    ld_nr, jeq, ret = 0x20, 0x15, 0x06            # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_RET|K
    program = (insn(ld_nr, 0)                     # seccomp_data.nr
               + insn(jeq, NR_IO_URING_SETUP, 0, 1)
               + insn(ret, 0x00050000 | errno.EPERM)  # SECCOMP_RET_ERRNO
               + insn(ret, 0x7FFF0000))           # SECCOMP_RET_ALLOW
    code = ctypes.create_string_buffer(program)

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(4, ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:          # PR_SET_NO_NEW_PRIVS
        os._exit(97)
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        os._exit(98)


def run_refused(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, timeout=30, env=cli_env(),
                          preexec_fn=refuse_io_uring)


def test_this_linux_build_has_uring():
    from pysock.config import c_features

    if "PYSOCK_PORTABLE" in os.environ.get("PYSOCK_CFLAGS", ""):
        assert "uring" not in c_features()
    else:
        assert "uring" in c_features()


def test_a_refused_io_uring_is_one_line_and_the_cli_exits_2():
    done = run_refused("-m", "pysock", "serve", "0", "--tcp", "--model", "uring")
    assert done.returncode == 2
    assert done.stdout == b""
    err = done.stderr.decode()
    assert err.count("\n") == 1, err
    assert "model 'uring' cannot run: the kernel refuses io_uring here" in err
    assert "seccomp" in err and "use model='epoll'" in err
    done = run_refused("-m", "pysock", "serve", "0", "--udp", "--model", "uring")
    assert done.returncode == 2 and "use model='loop'" in done.stderr.decode()


def test_a_refused_io_uring_leaves_the_default_model_serving():
    with CliServer("serve", "0", "--tcp", "-b", LOCALHOST, preexec_fn=refuse_io_uring) as srv:
        import pysock

        assert pysock.request(b"still here", srv.address("tcp")) == b"STILL HERE"


def test_a_refused_io_uring_in_the_api():
    code = ("import pysock\n"
            "from pysock.config import available_models, uring_refused\n"
            "print(uring_refused())\n"
            "print(available_models('c', 'tcp'), available_models('c', 'udp'))\n"
            "try:\n"
            "    pysock.Server(model='uring')\n"
            "except pysock.ConfigError as exc:\n"
            "    print('ConfigError:', exc)\n"
            "with pysock.Server() as srv:\n"
            "    print(srv.config.model, pysock.request(b'x', srv.address))\n")
    done = run_refused("-c", code)
    assert done.returncode == 0, done.stderr.decode()
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("the kernel refuses io_uring here")
    assert lines[1] == "('epoll', 'threads') ('loop',)"
    assert lines[2].startswith("ConfigError: model 'uring' cannot run: the kernel refuses io_uring here")
    assert lines[3] == "epoll b'X'"
