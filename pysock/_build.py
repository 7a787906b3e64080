"""The cffi builder: compiles csrc/ into pysock._pysock (out-of-line API mode).

setup.py hands ``ffibuilder`` to cffi; nothing else in the package imports
this file at run time.  The declarations come from csrc/pysock.h, so they
are written once.  PYSOCK_CFLAGS and PYSOCK_LDFLAGS add flags (for example
a sanitizer build: PYSOCK_CFLAGS="-fsanitize=address,undefined").
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
SOURCES = ["addr.c", "server.c", "loop.c", "tcp.c", "epoll.c", "uring.c", "ring.c", "udp.c", "fault.c", "transform.c",
           "buf.c", "layout.c", "loadgen.c", "openloop.c", "evloop.c", "proxy.c", "dproxy.c",
           "refecho.c"]
# -O3: GCC vectorises ps_upper's loop there, not at -O2 (measured: 0.09 ms per
# MiB against 1.5 ms).
CFLAGS = ["-std=c99", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-O3"]

# The system structs Python reads.  Members cffi must know are named; the
# "..." lets the compiler supply their real layout and any other members.
SYSTEM_CDEF = """
struct in_addr { uint32_t s_addr; };
struct in6_addr { ...; };
struct sockaddr_in { unsigned short sin_family; uint16_t sin_port; struct in_addr sin_addr; ...; };
struct sockaddr_in6 { unsigned short sin6_family; uint16_t sin6_port; struct in6_addr sin6_addr; ...; };
struct hostent { char *h_name; char **h_aliases; int h_addrtype; int h_length; char **h_addr_list; ...; };
typedef int... socklen_t;
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr { void *msg_name; socklen_t msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
                void *msg_control; size_t msg_controllen; int msg_flags; ...; };
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; ...; };
struct sockaddr_storage { unsigned short ss_family; ...; };
#define AF_INET ...
#define AF_INET6 ...
#define AF_UNIX ...
#define SOCK_STREAM ...
#define SOCK_DGRAM ...
"""

_INT_DEFINE = re.compile(r"^#define\s+PS_\w+\s+-?\d+\s*$")


def header_cdef(text: str) -> str:
    """The header as cffi reads it: preprocessor lines dropped, except the
    integer constants."""
    lines = []
    for line in text.splitlines():
        if line.startswith("#") and not _INT_DEFINE.match(line):
            continue
        lines.append(line)
    return "\n".join(lines)


def extra_flags(name: str) -> list[str]:
    return shlex.split(os.environ.get(name, ""))


# The public headers, each read once by the compiler and once here.
HEADERS = ["pysock.h", "loadgen.h"]

ffibuilder = FFI()
ffibuilder.cdef(SYSTEM_CDEF + "\n".join(header_cdef((CSRC / h).read_text()) for h in HEADERS))
ffibuilder.set_source(
    "pysock._pysock",
    "".join(f'#include "{h}"\n' for h in HEADERS),
    sources=[str((CSRC / name).relative_to(ROOT)) for name in SOURCES],
    include_dirs=[str(CSRC.relative_to(ROOT))],
    extra_compile_args=CFLAGS + extra_flags("PYSOCK_CFLAGS"),
    libraries=["m"],  # fault.c: corrupt's draws (log1p)
    extra_link_args=["-pthread"] + extra_flags("PYSOCK_LDFLAGS"),
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
