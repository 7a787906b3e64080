"""Addresses as pysock prints and reads them: tcp://HOST:PORT,
udp://[::1]:PORT, unix://PATH (the ready lines of ``pysock serve``).

A unix path is any bytes but NUL: in a URL, the bytes a terminal would act
on or that are not UTF-8, and "%" itself, are written %XX (RFC 3986's
percent-encoding), so a ready line is one printable line and reads back
as the same path."""
from __future__ import annotations

import os
import re
from typing import Union

Address = Union[tuple[str, int], str]  # (host, port), or a unix socket's path


def format_url(proto: str, address: Address) -> str:
    """tcp://HOST:PORT, udp://[::1]:PORT, unix://PATH: what `pysock serve`
    prints and what parse_url reads back."""
    if isinstance(address, str):
        return f"unix://{quote_path(address)}"
    host, port = address[0], address[1]
    shown = f"[{host}]" if ":" in host else host
    return f"{proto}://{shown}:{port}"


def parse_url(text: str) -> tuple[str, Address]:
    """(proto, address) from tcp://HOST:PORT, udp://[::1]:PORT or
    unix://PATH (proto "unix").  ValueError says what is wrong."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in ("tcp", "udp", "unix"):
        raise ValueError(f"not a pysock address: {text!r} (tcp://HOST:PORT, udp://HOST:PORT or unix://PATH)")
    if scheme == "unix":
        if not rest:
            raise ValueError(f"no path in {text!r}")
        return scheme, unquote_path(rest)
    host, colon, port = rest.rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise ValueError(f"no HOST:PORT in {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 address in a URL goes in brackets: {scheme}://[{host}]:{port}")
    if not 0 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535 in {text!r}")
    return scheme, (host, int(port))


def quote_path(path: str) -> str:
    """path as a URL writes it: control bytes, bytes that are not UTF-8
    (os.fsencode's surrogates) and "%" as %XX; the rest as it is."""
    out = []
    for char in path:
        raw = os.fsencode(char)
        control = len(raw) == 1 and (raw[0] < 0x20 or raw[0] == 0x7F)
        if char == "%" or control or "\udc80" <= char <= "\udcff":
            out.append("".join(f"%{byte:02X}" for byte in raw))
        else:
            out.append(char)
    return "".join(out)


_PERCENT = re.compile(rb"%([0-9A-Fa-f]{2})")


def unquote_path(text: str) -> str:
    """The path a URL names: %XX back to its byte."""
    return os.fsdecode(_PERCENT.sub(lambda m: bytes([int(m.group(1), 16)]), os.fsencode(text)))
