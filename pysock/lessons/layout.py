"""Struct lessons: sockaddr_in, in_addr, hostent and sockaddr_in6 as the C
compiler laid them out, then the structs pysock's servers use on their hot
paths (iovec, msghdr, mmsghdr, sockaddr_storage, sockaddr_un, addrinfo,
epoll_event, io_uring's sqe and cqe), side by side with ctypes and the
struct module.

The C numbers come from csrc/layout.c (sizeof, offsetof and an alignment
probe, compiled into pysock's C library); nothing about the C layout is
written down here.  The ctypes classes and struct formats below are what a
Python programmer writes by hand, and the point is to check them against C.
"""
from __future__ import annotations

import ctypes
import platform
import socket
import struct
import sys
from dataclasses import asdict, dataclass
from typing import Any

from pysock._core import check, ffi, lib

# -- C: the compiler's numbers --------------------------------------------


@dataclass(frozen=True)
class CMember:
    name: str
    ctype: str
    offset: int
    size: int
    align: int


@dataclass(frozen=True)
class Hole:
    """Bytes the compiler left unused: between two members, or at the end."""

    offset: int
    size: int
    after: str


@dataclass(frozen=True)
class CStruct:
    name: str
    header: str
    size: int
    align: int
    members: list[CMember]

    def packed(self) -> list[CMember]:
        """The members the compiler placed off their type's alignment: the
        struct is packed (aligned to less than its members need)."""
        return [m for m in self.members if m.offset % m.align]

    def holes(self) -> list[Hole]:
        """Every gap between members, and the tail padding, if any."""
        out = []
        end = 0
        after = "(start)"
        for m in sorted(self.members, key=lambda m: m.offset):
            if m.offset > end:
                out.append(Hole(end, m.offset - end, after))
            end = max(end, m.offset + m.size)
            after = m.name
        if self.size > end:
            out.append(Hole(end, self.size - end, after))
        return out


def _text(p: Any) -> str:
    return str(ffi.string(p).decode())


def _c_member(m: Any) -> CMember:
    ctype = _text(m.type)
    if m.count != 1:
        ctype = f"{ctype}[{m.count}]"
    return CMember(_text(m.name), ctype, m.offset, m.size, m.align)


def c_layouts() -> list[CStruct]:
    """The structs as compiled into pysock's C library, in lesson order."""
    table = ffi.new("const ps_layout **")
    count = check(lib.ps_layouts(table), "cannot read the struct layouts")
    out = []
    for i in range(count):
        s = table[0][i]
        members = [_c_member(s.members[j]) for j in range(s.nmembers)]
        out.append(CStruct(_text(s.name), _text(s.header), s.size, s.align, members))
    return out


# -- Python: the same structs written by hand ------------------------------


class InAddr(ctypes.Structure):
    _fields_ = [("s_addr", ctypes.c_uint32)]


class SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),
        ("sin_addr", InAddr),
        ("sin_zero", ctypes.c_ubyte * 8),
    ]


class Hostent(ctypes.Structure):
    _fields_ = [
        ("h_name", ctypes.c_char_p),
        ("h_aliases", ctypes.POINTER(ctypes.c_char_p)),
        ("h_addrtype", ctypes.c_int),
        ("h_length", ctypes.c_int),
        ("h_addr_list", ctypes.POINTER(ctypes.POINTER(ctypes.c_char))),
    ]


class In6Addr(ctypes.Union):
    """glibc declares in6_addr as a union with 16- and 32-bit arrays: that,
    not its 16 bytes, is what makes it (and sin6_addr) 4-aligned."""

    _fields_ = [
        ("s6_addr", ctypes.c_ubyte * 16),
        ("s6_addr16", ctypes.c_uint16 * 8),
        ("s6_addr32", ctypes.c_uint32 * 4),
    ]


class SockaddrIn6(ctypes.Structure):
    _fields_ = [
        ("sin6_family", ctypes.c_ushort),
        ("sin6_port", ctypes.c_uint16),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", In6Addr),
        ("sin6_scope_id", ctypes.c_uint32),
    ]


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),      # socklen_t
        ("msg_iov", ctypes.POINTER(Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", Msghdr), ("msg_len", ctypes.c_uint)]


class SockaddrStorage(ctypes.Structure):
    """glibc's: the family, padding, and an unsigned long that makes it
    8-aligned, 128 bytes in all."""

    _fields_ = [
        ("ss_family", ctypes.c_ushort),
        ("__ss_padding", ctypes.c_char * 118),
        ("__ss_align", ctypes.c_ulong),
    ]


class SockaddrUn(ctypes.Structure):
    _fields_ = [("sun_family", ctypes.c_ushort), ("sun_path", ctypes.c_char * 108)]


class Addrinfo(ctypes.Structure):
    _fields_ = [
        ("ai_flags", ctypes.c_int),
        ("ai_family", ctypes.c_int),
        ("ai_socktype", ctypes.c_int),
        ("ai_protocol", ctypes.c_int),
        ("ai_addrlen", ctypes.c_uint32),       # socklen_t
        ("ai_addr", ctypes.c_void_p),          # struct sockaddr *
        ("ai_canonname", ctypes.c_char_p),
        ("ai_next", ctypes.c_void_p),          # struct addrinfo *
    ]


class EpollData(ctypes.Union):
    _fields_ = [("ptr", ctypes.c_void_p), ("fd", ctypes.c_int), ("u32", ctypes.c_uint32),
                ("u64", ctypes.c_uint64)]


# <sys/epoll.h> packs struct epoll_event on x86-64 only (__EPOLL_PACKED), so
# that 32-bit and 64-bit programs hand the kernel the same 12 bytes; the
# Python twins follow the header's own rule.
EPOLL_PACKED = platform.machine() in ("x86_64", "AMD64")


class EpollEvent(ctypes.Structure):
    if EPOLL_PACKED:
        _pack_ = 1
        _layout_ = "ms"  # what _pack_ means (Python 3.14 asks for it to be said)
    _fields_ = [("events", ctypes.c_uint32), ("data", EpollData)]


class IoUringSqe(ctypes.Structure):
    """64 bytes of unions in <linux/io_uring.h>; each slot here carries the
    first of its names (see csrc/layout.c)."""

    _fields_ = [
        ("opcode", ctypes.c_uint8), ("flags", ctypes.c_uint8), ("ioprio", ctypes.c_uint16),
        ("fd", ctypes.c_int32), ("off", ctypes.c_uint64), ("addr", ctypes.c_uint64),
        ("len", ctypes.c_uint32), ("rw_flags", ctypes.c_uint32), ("user_data", ctypes.c_uint64),
        ("buf_index", ctypes.c_uint16), ("personality", ctypes.c_uint16),
        ("splice_fd_in", ctypes.c_int32), ("addr3", ctypes.c_uint64), ("__pad2", ctypes.c_uint64),
    ]


class IoUringCqe(ctypes.Structure):
    _fields_ = [("user_data", ctypes.c_uint64), ("res", ctypes.c_int32), ("flags", ctypes.c_uint32)]


CTYPES: dict[str, type[ctypes.Structure]] = {
    "struct sockaddr_in": SockaddrIn,
    "struct in_addr": InAddr,
    "struct hostent": Hostent,
    "struct sockaddr_in6": SockaddrIn6,
    "struct iovec": Iovec,
    "struct msghdr": Msghdr,
    "struct mmsghdr": Mmsghdr,
    "struct sockaddr_storage": SockaddrStorage,
    "struct sockaddr_un": SockaddrUn,
    "struct addrinfo": Addrinfo,
    "struct epoll_event": EpollEvent,
    "struct io_uring_sqe": IoUringSqe,
    "struct io_uring_cqe": IoUringCqe,
}

# One struct-module code per member, in order; '@' (native sizes and
# alignment) is the mode that can match C.  Addresses are bytes ('4s',
# '16s'), as socket.inet_aton and inet_pton give them.
STRUCT_CODES: dict[str, list[tuple[str, str]]] = {
    "struct sockaddr_in": [("sin_family", "H"), ("sin_port", "H"), ("sin_addr", "4s"), ("sin_zero", "8s")],
    "struct in_addr": [("s_addr", "4s")],
    "struct hostent": [("h_name", "P"), ("h_aliases", "P"), ("h_addrtype", "i"), ("h_length", "i"),
                       ("h_addr_list", "P")],
    "struct sockaddr_in6": [("sin6_family", "H"), ("sin6_port", "H"), ("sin6_flowinfo", "I"),
                            ("sin6_addr", "16s"), ("sin6_scope_id", "I")],
    "struct iovec": [("iov_base", "P"), ("iov_len", "N")],
    "struct msghdr": [("msg_name", "P"), ("msg_namelen", "I"), ("msg_iov", "P"), ("msg_iovlen", "N"),
                      ("msg_control", "P"), ("msg_controllen", "N"), ("msg_flags", "i")],
    "struct mmsghdr": [("msg_hdr", f"{struct.calcsize('@PIPNPNi0P')}s"), ("msg_len", "I")],
    "struct sockaddr_storage": [("ss_family", "H"), ("__ss_padding", "118s"), ("__ss_align", "L")],
    "struct sockaddr_un": [("sun_family", "H"), ("sun_path", "108s")],
    "struct addrinfo": [("ai_flags", "i"), ("ai_family", "i"), ("ai_socktype", "i"), ("ai_protocol", "i"),
                        ("ai_addrlen", "I"), ("ai_addr", "P"), ("ai_canonname", "P"), ("ai_next", "P")],
    "struct epoll_event": [("events", "I"), ("data", "Q")],
    "struct io_uring_sqe": [("opcode", "B"), ("flags", "B"), ("ioprio", "H"), ("fd", "i"), ("off", "Q"),
                            ("addr", "Q"), ("len", "I"), ("rw_flags", "I"), ("user_data", "Q"),
                            ("buf_index", "H"), ("personality", "H"), ("splice_fd_in", "i"),
                            ("addr3", "Q"), ("__pad2", "Q")],
    "struct io_uring_cqe": [("user_data", "Q"), ("res", "i"), ("flags", "I")],
}
# The struct module pads before a member to its alignment ('@'), never after
# the last one: a C struct's tail padding must be asked for, with a 0-count
# code of the struct's alignment ('0P': up to the next 8).
STRUCT_TAIL: dict[str, str] = {"struct msghdr": "0P", "struct mmsghdr": "0P"}
# '@' lays out as this platform's C does; epoll_event is packed on x86-64,
# which only '=' (standard sizes, no alignment) reproduces.
STRUCT_MODE: dict[str, str] = {"struct epoll_event": "=" if EPOLL_PACKED else "@"}


def struct_format(name: str) -> str:
    return STRUCT_MODE.get(name, "@") + "".join(code for _, code in STRUCT_CODES[name]) + STRUCT_TAIL.get(name, "")


def _ctypes_name(t: Any) -> str:
    if issubclass(t, ctypes.Array):
        return f"{_ctypes_name(t._type_)} * {t._length_}"
    if issubclass(t, ctypes._Pointer):
        return f"POINTER({_ctypes_name(t._type_)})"
    return str(t.__name__)


@dataclass(frozen=True)
class PyMember:
    """Where ctypes or the struct module puts a member."""

    spelling: str
    offset: int
    size: int
    align: int | None  # the struct module has no notion of it


def ctypes_members(cls: type[ctypes.Structure]) -> dict[str, PyMember]:
    out = {}
    for entry in cls._fields_:
        fname, ftype = entry[0], entry[1]
        desc = getattr(cls, fname)
        out[fname] = PyMember(_ctypes_name(ftype), desc.offset, desc.size, ctypes.alignment(ftype))
    return out


def struct_members(name: str) -> dict[str, PyMember]:
    """Offsets as struct computes them: the size of the format up to and
    including a member, less the member's own size."""
    out = {}
    mode = STRUCT_MODE.get(name, "@")
    prefix = mode
    for fname, code in STRUCT_CODES[name]:
        prefix += code
        size = struct.calcsize(mode + code)
        out[fname] = PyMember(code, struct.calcsize(prefix) - size, size, None)
    return out


# -- the comparison ---------------------------------------------------------


def _agrees(c: CMember, py: PyMember | None) -> bool:
    if py is None:
        return False
    same = (py.offset, py.size) == (c.offset, c.size)
    return same and (py.align is None or py.align == c.align)


@dataclass(frozen=True)
class Row:
    """One C member beside its ctypes and struct counterparts."""

    c: CMember
    ctypes: PyMember | None
    ctypes_agrees: bool
    struct: PyMember | None
    struct_agrees: bool


@dataclass(frozen=True)
class Comparison:
    c: CStruct
    rows: list[Row]
    ctypes_class: str
    ctypes_size: int
    ctypes_align: int
    ctypes_agrees: bool
    struct_format: str
    struct_size: int
    struct_agrees: bool


def compare(c: CStruct) -> Comparison:
    """c beside the hand-written ctypes class and struct format.  They agree
    when they have the same members at the same offsets with the same sizes
    (and for ctypes the same alignments), and the same total size."""
    cls = CTYPES[c.name]
    by_ctypes = ctypes_members(cls)
    by_struct = struct_members(c.name)
    rows = [Row(m, by_ctypes.get(m.name), _agrees(m, by_ctypes.get(m.name)),
                by_struct.get(m.name), _agrees(m, by_struct.get(m.name))) for m in c.members]
    names = {m.name for m in c.members}
    fmt = struct_format(c.name)
    ctypes_ok = (set(by_ctypes) == names and all(r.ctypes_agrees for r in rows)
                 and (ctypes.sizeof(cls), ctypes.alignment(cls)) == (c.size, c.align))
    struct_ok = (set(by_struct) == names and all(r.struct_agrees for r in rows)
                 and struct.calcsize(fmt) == c.size)
    return Comparison(c, rows, cls.__name__, ctypes.sizeof(cls), ctypes.alignment(cls), ctypes_ok,
                      fmt, struct.calcsize(fmt), struct_ok)


def comparisons() -> list[Comparison]:
    return [compare(c) for c in c_layouts()]


# -- a filled sockaddr_in, byte by byte ---------------------------------------

# Which byte order each member is stored in: the kernel reads the family
# as a plain integer, the port and the address as they travel on the wire.
BYTE_ORDER = {"sin_family": "host", "sin_port": "network", "sin_addr": "network", "sin_zero": "-"}
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 12000


@dataclass(frozen=True)
class Slice:
    """One member's bytes in a filled struct, and what they mean."""

    name: str
    offset: int
    raw: bytes
    order: str
    value: str

    def hex(self) -> str:
        return self.raw.hex(" ")


def _meaning(name: str, raw: bytes) -> str:
    as_host = int.from_bytes(raw, sys.byteorder)
    if name == "sin_family":
        family = "AF_INET" if as_host == socket.AF_INET else "?"
        return f"{as_host} = {family} (read in network order: {int.from_bytes(raw, 'big')})"
    if name == "sin_port":
        return f"{int.from_bytes(raw, 'big')} (read in host order: {as_host})"
    if name == "sin_addr":
        return f"{socket.inet_ntoa(raw)} (read in host order: {as_host:#010x})"
    return "all zero" if not any(raw) else "NOT zero"


@dataclass(frozen=True)
class Example:
    """A sockaddr_in filled in C, cut at C's offsets, and Python's own
    recipe for the same bytes."""

    host: str
    port: int
    raw: bytes
    slices: list[Slice]
    python_recipe: str
    python_agrees: bool


def _python_address(host: str) -> tuple[bytes, str]:
    """host's 4 bytes as Python finds them, without C, and how that is spelled."""
    try:
        socket.inet_pton(socket.AF_INET, host)
        return socket.inet_aton(host), f"socket.inet_aton({host!r})"
    except OSError:
        return (socket.inet_aton(socket.gethostbyname(host)),
                f"socket.inet_aton(socket.gethostbyname({host!r}))")


def python_packed(host: str, port: int) -> tuple[bytes, str]:
    """The sockaddr_in Python builds for (host, port), and the recipe: '='
    packs without padding, htons puts the port in network order, inet_aton
    gives the address in network order already."""
    address, spelled = _python_address(host)
    recipe = f"struct.pack('=HH4s8x', AF_INET, socket.htons({port}), {spelled})"
    return struct.pack("=HH4s8x", socket.AF_INET, socket.htons(port), address), recipe


def filled_sockaddr_in(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> Example:
    """The bytes ps_sockaddr_in fills for (host, port), cut at C's offsets."""
    from pysock.lessons.addr import sockaddr_in

    raw = sockaddr_in(host, port)
    layout = next(c for c in c_layouts() if c.name == "struct sockaddr_in")
    slices = []
    for m in layout.members:
        part = raw[m.offset:m.offset + m.size]
        slices.append(Slice(m.name, m.offset, part, BYTE_ORDER.get(m.name, "?"), _meaning(m.name, part)))
    packed, recipe = python_packed(host, port)
    return Example(host, port, raw, slices, recipe, packed == raw)


# -- output -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import platform

    return {"machine": platform.machine(), "byteorder": sys.byteorder,
            "pointer_size": ffi.sizeof("void *")}


def _agree_word(row: Row) -> str:
    if row.ctypes_agrees and row.struct_agrees:
        return "yes"
    if row.ctypes_agrees:
        return "no (struct)"
    if row.struct_agrees:
        return "no (ctypes)"
    return "no (both)"


def _yes(flag: bool) -> str:
    return "agree" if flag else "DISAGREE"


def _hole_text(holes: list[Hole]) -> str:
    if not holes:
        return "none"
    return ", ".join(f"{h.size} bytes at offset {h.offset} (after {h.after})" for h in holes)


def _struct_text(comp: Comparison) -> list[str]:
    c = comp.c
    name_w = max([14] + [len(m.name) + 2 for m in c.members])
    type_w = max([18] + [len(m.ctype) + 2 for m in c.members])
    lines = [f"{c.name}  <{c.header}>  {c.size} bytes, aligned to {c.align}",
             f"  {'offset':>6} {'size':>5} {'align':>5}  {'member':<{name_w}}{'C type':<{type_w}}"
             f"{'ctypes':<26}{'struct':<7}agrees with C"]
    for r in comp.rows:
        m = r.c
        lines.append(f"  {m.offset:>6} {m.size:>5} {m.align:>5}  {m.name:<{name_w}}{m.ctype:<{type_w}}"
                     f"{r.ctypes.spelling if r.ctypes else '(missing)':<26}"
                     f"{r.struct.spelling if r.struct else '(missing)':<7}{_agree_word(r)}")
    lines.append(f"  padding holes: {_hole_text(c.holes())}")
    if c.packed():
        lines.append(f"  packed: {_packed_text(c)}")
    lines.append(f"  total: C {c.size}, ctypes {comp.ctypes_class} {comp.ctypes_size} ({_yes(comp.ctypes_agrees)}), "
                 f"struct '{comp.struct_format}' {comp.struct_size} ({_yes(comp.struct_agrees)})")
    return lines


# Why a system header packs a struct, where the lesson knows.
_WHY_PACKED = {
    "struct epoll_event": "the kernel packs it on x86-64 (EPOLL_PACKED) so that 32-bit and 64-bit "
                          "programs pass it the same 12 bytes, and glibc follows",
}


def _packed_text(c: CStruct) -> str:
    where = ", ".join(f"{m.name} at offset {m.offset} (its type aligns to {m.align})" for m in c.packed())
    why = _WHY_PACKED.get(c.name)
    return f"{where}; the struct aligns to {c.align}" + (f": {why}" if why else "")


def _example_text(ex: Example) -> list[str]:
    width = max(len(s.hex()) for s in ex.slices)
    lines = [f"struct sockaddr_in for {ex.host}:{ex.port}, filled in C by ps_sockaddr_in ({len(ex.raw)} bytes)",
             f"  {'offset':>6}  {'bytes':<{width}}  {'member':<11} {'order':<8} value"]
    for s in ex.slices:
        lines.append(f"  {s.offset:>6}  {s.hex():<{width}}  {s.name:<11} {s.order:<8} {s.value}")
    lines.append(f"  hex: {ex.raw.hex()}   (host order here is {sys.byteorder}-endian; network order is big-endian)")
    same = "the same bytes" if ex.python_agrees else "DIFFERENT bytes"
    lines.append(f"  Python: {ex.python_recipe} gives {same}")
    return lines


def render_text(comps: list[Comparison], ex: Example | None) -> str:
    m = machine()
    lines = [f"Struct layouts as pysock's C library was compiled on this machine: "
             f"{m['machine']}, {m['byteorder']}-endian, {m['pointer_size']}-byte pointers.",
             "ctypes and struct columns: the same structs written by hand in Python "
             "(see pysock/lessons/layout.py).", ""]
    for comp in comps:
        lines += _struct_text(comp) + [""]
    if ex is not None:
        lines += _example_text(ex)
    return "\n".join(lines).rstrip("\n")


def _comparison_json(comp: Comparison) -> dict[str, Any]:
    c = comp.c
    members = []
    for r in comp.rows:
        entry = asdict(r.c)
        entry["ctypes"] = r.ctypes and {"type": r.ctypes.spelling, "offset": r.ctypes.offset,
                                        "size": r.ctypes.size, "align": r.ctypes.align,
                                        "agrees": r.ctypes_agrees}
        entry["struct"] = r.struct and {"code": r.struct.spelling, "offset": r.struct.offset,
                                        "size": r.struct.size, "agrees": r.struct_agrees}
        members.append(entry)
    return {"name": c.name, "header": c.header, "size": c.size, "align": c.align,
            "packed": [m.name for m in c.packed()], "members": members, "holes": [asdict(h) for h in c.holes()],
            "ctypes": {"class": comp.ctypes_class, "size": comp.ctypes_size,
                       "align": comp.ctypes_align, "agrees": comp.ctypes_agrees},
            "struct": {"format": comp.struct_format, "size": comp.struct_size,
                       "agrees": comp.struct_agrees}}


def render_json(comps: list[Comparison], ex: Example) -> str:
    import json

    example = {"host": ex.host, "port": ex.port, "hex": ex.raw.hex(), "python": ex.python_recipe,
               "python_agrees": ex.python_agrees,
               "members": [{"name": s.name, "offset": s.offset, "size": len(s.raw), "hex": s.raw.hex(),
                            "order": s.order, "value": s.value} for s in ex.slices]}
    doc = {"machine": machine(), "structs": [_comparison_json(c) for c in comps], "example": example}
    return json.dumps(doc, indent=2)


def struct_names() -> list[str]:
    """The structs this build knows, in lesson order ("struct msghdr", ...)."""
    return [c.name for c in c_layouts()]


def find_structs(names: list[str]) -> list[str]:
    """The full names of the structs asked for ("msghdr" or "struct msghdr"),
    in the order asked; ValueError names any this build does not know."""
    known = struct_names()
    out: list[str] = []
    unknown: list[str] = []
    for name in names:
        full = name if name.startswith("struct ") else f"struct {name}"
        (out if full in known else unknown).append(full)
    if unknown:
        short = ", ".join(k[len("struct "):] for k in known)
        raise ValueError(f"no struct {', '.join(u[len('struct '):] for u in unknown)} in this build; "
                         f"it knows: {short}")
    return out


def report(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, as_json: bool = False,
           names: list[str] | None = None, example: bool = True) -> str:
    """What ``pysock layout`` prints: every struct, or just those named (in
    that order); the text shows the filled sockaddr_in when example is set,
    the JSON always (its schema is one)."""
    comps = comparisons()
    if names:
        by_name = {comp.c.name: comp for comp in comps}
        comps = [by_name[n] for n in find_structs(names)]
    if as_json:
        return render_json(comps, filled_sockaddr_in(host, port))
    return render_text(comps, filled_sockaddr_in(host, port) if example else None)


def sockaddr_in_many(host: str, first_port: int, count: int) -> list[bytes]:
    """count sockaddr_in for host on ports first_port, first_port + 1, ...,
    filled by one C call (the host parsed or resolved once)."""
    array = ffi.new("struct sockaddr_in[]", max(count, 1))
    check(lib.ps_sockaddr_in_many(array, count, host.encode(), first_port),
          f"cannot fill {count} sockaddr_in for {host} from port {first_port}")
    size = ffi.sizeof("struct sockaddr_in")
    raw = ffi.buffer(array, size * count)[:]
    return [raw[i * size:(i + 1) * size] for i in range(count)]
