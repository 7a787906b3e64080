"""Addresses as C fills them: struct sockaddr_in and struct hostent."""
from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from typing import Any

from pysock._core import check, ffi, lib

# gethostbyname_r wants its scratch buffer from the caller; double it on ERANGE.
_HOSTENT_BUF = 8192
_HOSTENT_BUF_MAX = 1 << 20


@dataclass(frozen=True)
class HostEntry:
    """The fields of a struct hostent, copied out of C."""

    name: str
    aliases: list[str]
    addrtype: int
    length: int
    addresses: list[str]


def _strings(array: Any) -> list[str]:
    """A NULL-terminated char ** as a list of str."""
    out: list[str] = []
    i = 0
    while array[i] != ffi.NULL:
        out.append(ffi.string(array[i]).decode())
        i += 1
    return out


def _addresses(he: Any) -> list[str]:
    out: list[str] = []
    i = 0
    while he.h_addr_list[i] != ffi.NULL:
        raw = ffi.buffer(he.h_addr_list[i], he.h_length)[:]
        out.append(socket.inet_ntop(he.h_addrtype, raw))
        i += 1
    return out


def resolve(name: str) -> HostEntry:
    """Resolve a host name with the thread-safe gethostbyname_r, as C sees it."""
    he = ffi.new("struct hostent *")
    size = _HOSTENT_BUF
    while True:
        buf = ffi.new("char[]", size)
        rc = lib.ps_gethostbyname(name.encode(), he, buf, size)
        if rc != -errno.ERANGE or size >= _HOSTENT_BUF_MAX:
            break
        size *= 2
    if rc < 0:
        check(rc, f"cannot resolve {name!r}")
    return HostEntry(
        name=ffi.string(he.h_name).decode(),
        aliases=_strings(he.h_aliases),
        addrtype=he.h_addrtype,
        length=he.h_length,
        addresses=_addresses(he),
    )


def sockaddr_in(host: str, port: int) -> bytes:
    """The bytes of the struct sockaddr_in that C fills for (host, port)."""
    sa = ffi.new("struct sockaddr_in *")
    rc = lib.ps_sockaddr_in(sa, host.encode(), port)
    if rc < 0:
        check(rc, f"cannot fill sockaddr_in for {host}:{port}")
    return bytes(ffi.buffer(sa))


def sockaddr_in6(host: str, port: int) -> bytes:
    """The bytes of the struct sockaddr_in6 that C fills for (host, port)."""
    sa = ffi.new("struct sockaddr_in6 *")
    rc = lib.ps_sockaddr_in6(sa, host.encode(), port)
    if rc < 0:
        check(rc, f"cannot fill sockaddr_in6 for {host}:{port}")
    return bytes(ffi.buffer(sa))
