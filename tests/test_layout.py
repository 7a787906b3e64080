"""pysock layout and pysock resolve: the struct layouts as C laid them out,
checked against ctypes, the struct module, cffi and Python's resolver."""
from __future__ import annotations

import ctypes
import json
import os
import platform
import re
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from support import UNRESOLVABLE, run_cli, skip_unless_ci

import pysock
from pysock._core import ffi
from pysock.lessons import layout
from pysock.lessons import resolve as resolve_cmd

STRUCTS = ["struct sockaddr_in", "struct in_addr", "struct hostent", "struct sockaddr_in6"]
# The hot paths' structs; epoll's and io_uring's only where the build has them.
HOT_PATH = ["struct iovec", "struct msghdr", "struct mmsghdr", "struct sockaddr_storage", "struct sockaddr_un",
            "struct addrinfo", "struct epoll_event", "struct io_uring_sqe", "struct io_uring_cqe"]
ALL = STRUCTS + HOT_PATH
# cffi, asked the compiler, knows the ones pysock's cdef declares.
CFFI_KNOWS = STRUCTS + ["struct iovec", "struct msghdr", "struct mmsghdr", "struct sockaddr_storage"]


def _by_name() -> dict[str, layout.CStruct]:
    return {c.name: c for c in layout.c_layouts()}


# -- the C table --------------------------------------------------------------


def _built(name: str) -> bool:
    from pysock.config import c_features

    needs = {"struct epoll_event": "epoll", "struct io_uring_sqe": "uring", "struct io_uring_cqe": "uring"}
    return name not in needs or needs[name] in c_features()


def test_c_table_has_every_struct_in_lesson_order():
    assert [c.name for c in layout.c_layouts()] == [n for n in ALL if _built(n)]


@pytest.mark.parametrize("name", CFFI_KNOWS)
def test_c_table_matches_cffi_which_asked_the_compiler(name):
    c = _by_name()[name]
    assert (c.size, c.align) == (ffi.sizeof(name), ffi.alignof(name))
    known = dict(ffi.typeof(name).fields)  # the members pysock's cdef names; the rest are "..."
    checked = [m for m in c.members if m.name in known]
    assert checked
    for m in checked:
        assert (m.offset, m.size) == (known[m.name].offset, ffi.sizeof(known[m.name].type)), m.name


def test_filled_structs_are_as_long_as_c_says():
    c = _by_name()
    assert len(pysock.sockaddr_in("127.0.0.1", 1)) == c["struct sockaddr_in"].size
    assert len(pysock.sockaddr_in6("::1", 1)) == c["struct sockaddr_in6"].size


def _c(name: str) -> layout.CStruct:
    if not _built(name):
        pytest.skip(f"this build of pysock has no {name} (no epoll or io_uring header)")
    return _by_name()[name]


@pytest.mark.parametrize("name", ALL)
def test_holes_and_members_account_for_every_byte(name):
    c = _c(name)
    assert sum(m.size for m in c.members) + sum(h.size for h in c.holes()) == c.size


def test_holes_are_found_between_members_and_at_the_end():
    class Padded(ctypes.Structure):
        _fields_ = [("a", ctypes.c_char), ("b", ctypes.c_int), ("c", ctypes.c_char)]

    members = [layout.CMember(n, "?", getattr(Padded, n).offset, getattr(Padded, n).size, 1) for n in "abc"]
    padded = layout.CStruct("struct padded", "-", ctypes.sizeof(Padded), 4, members)
    assert padded.holes() == [layout.Hole(1, 3, "a"), layout.Hole(9, 3, "c")]


# -- C beside ctypes and struct ----------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_ctypes_and_struct_agree_with_c(name):
    c = _c(name)
    cls = layout.CTYPES[name]
    assert ctypes.sizeof(cls) == c.size
    assert ctypes.alignment(cls) == c.align
    assert struct.calcsize(layout.struct_format(name)) == c.size
    py_struct = layout.struct_members(name)
    assert [f for f, _ in cls._fields_] == [m.name for m in c.members] == list(py_struct)
    for m in c.members:
        field = getattr(cls, m.name)
        assert (field.offset, field.size) == (m.offset, m.size), m.name
        assert (py_struct[m.name].offset, py_struct[m.name].size) == (m.offset, m.size), m.name
    comparison = layout.compare(c)
    assert comparison.ctypes_agrees and comparison.struct_agrees


def test_a_struct_format_that_differs_from_c_is_reported(monkeypatch):
    codes = dict(layout.STRUCT_CODES)
    codes["struct sockaddr_in6"] = [(n, "Q" if n == "sin6_scope_id" else c)
                                    for n, c in codes["struct sockaddr_in6"]]
    monkeypatch.setattr(layout, "STRUCT_CODES", codes)
    comparison = layout.compare(_by_name()["struct sockaddr_in6"])
    assert comparison.ctypes_agrees
    assert not comparison.struct_agrees
    assert [r.struct_agrees for r in comparison.rows] == [True, True, True, True, False]


# -- the filled example -------------------------------------------------------


def _expected(host: str, port: int) -> bytes:
    return (struct.pack("=H", socket.AF_INET) + struct.pack("!H", port)
            + socket.inet_aton(host) + bytes(8))


@pytest.mark.parametrize("host, port", [("127.0.0.1", 12000), ("10.1.2.3", 1), ("255.255.255.255", 65535)])
def test_example_is_the_bytes_struct_pack_and_inet_aton_give(host, port):
    example = layout.filled_sockaddr_in(host, port)
    raw = example.raw
    assert raw == _expected(host, port)
    assert example.python_agrees
    assert b"".join(s.raw for s in example.slices) == raw
    by_name = {s.name: s for s in example.slices}
    assert by_name["sin_port"].raw == struct.pack("!H", port)
    assert by_name["sin_addr"].raw == socket.inet_aton(host)
    assert [s.order for s in example.slices] == ["host", "network", "network", "-"]


def test_layout_cli_dumps_the_example_the_user_asks_for():
    result = run_cli("layout", "10.1.2.3", "8080")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert _expected("10.1.2.3", 8080).hex() in text
    assert re.search(r"^\s+2  1f 90\s+sin_port\s+network\s+8080 ", text, re.M)
    assert re.search(r"^\s+4  0a 01 02 03\s+sin_addr\s+network\s+10\.1\.2\.3 ", text, re.M)
    assert "gives the same bytes" in text
    for name in STRUCTS:
        assert re.search(rf"^{name}  <", text, re.M)


def test_layout_cli_defaults_to_127_0_0_1_port_12000():
    result = run_cli("layout", "--json")
    assert result.returncode == 0, result.stderr
    example = json.loads(result.stdout)["example"]
    assert (example["host"], example["port"]) == ("127.0.0.1", 12000)
    assert example["hex"] == _expected("127.0.0.1", 12000).hex()


def test_layout_cli_shows_just_the_structs_named_in_that_order():
    result = run_cli("layout", "epoll_event", "struct msghdr", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    wanted = [n for n in ("struct epoll_event", "struct msghdr") if _built(n)]
    assert [s["name"] for s in doc["structs"]] == wanted
    assert set(doc) == {"machine", "structs", "example"}  # the schema stays one
    text = run_cli("layout", "msghdr").stdout.decode()
    assert [m[1] for m in re.finditer(r"^(struct \w+)  <", text, re.M)] == ["struct msghdr"]
    assert "filled in C" not in text  # names alone: no example
    text = run_cli("layout", "msghdr", "--host", "10.1.2.3", "--port", "8080").stdout.decode()
    assert _expected("10.1.2.3", 8080).hex() in text


def test_layout_cli_unknown_struct_is_a_usage_error_naming_the_known_ones():
    result = run_cli("layout", "msghdrr")
    assert result.returncode == 2
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "no struct msghdrr" in err and "mmsghdr" in err and "--host" in err


def test_layout_cli_host_and_port_options_and_the_old_positional_form_agree():
    new = run_cli("layout", "--host", "10.1.2.3", "--port", "8080", "--json")
    old = run_cli("layout", "10.1.2.3", "8080", "--json")
    one = run_cli("layout", "10.1.2.3", "--json")
    assert new.returncode == old.returncode == one.returncode == 0
    assert json.loads(new.stdout)["example"] == json.loads(old.stdout)["example"]
    assert json.loads(one.stdout)["example"]["port"] == 12000


def test_layout_cli_unknown_host_is_one_line_and_exit_1():
    result = run_cli("layout", UNRESOLVABLE)
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().count("\n") == 1
    assert UNRESOLVABLE in result.stderr.decode()


# -- text and JSON carry the same numbers ------------------------------------

HEADER = re.compile(r"^(struct \w+)  <(.+)>  (\d+) bytes, aligned to (\d+)$")
MEMBER = re.compile(r"^\s+(\d+)\s+(\d+)\s+(\d+)  (\w+)\s+(.+?)\s{2,}(\S.*?)\s{2,}(\S+)\s+(yes|no \(\w+\))$")
HOLE = re.compile(r"(\d+) bytes at offset (\d+) \(after (\w+|\(start\))\)")
TOTAL = re.compile(r"total: C (\d+), ctypes (\w+) (\d+) \((agree|DISAGREE)\), struct '(.+)' (\d+) \((agree|DISAGREE)\)")
EXAMPLE = re.compile(r"^\s+(\d+)  ((?:[0-9a-f]{2} )*[0-9a-f]{2})\s+(\w+)\s+(host|network|-)\s+(.+)$")


def _parse_text(text: str) -> dict:
    """The numbers of `pysock layout` text, shaped like its JSON."""
    structs: list[dict] = []
    example: list[dict] = []
    for line in text.splitlines():
        if m := HEADER.match(line):
            structs.append({"name": m[1], "header": m[2], "size": int(m[3]), "align": int(m[4]),
                            "members": [], "holes": []})
        elif m := MEMBER.match(line):
            structs[-1]["members"].append({"offset": int(m[1]), "size": int(m[2]), "align": int(m[3]),
                                           "name": m[4], "ctype": m[5], "ctypes": m[6], "struct": m[7],
                                           "agrees": m[8] == "yes"})
        elif "padding holes:" in line:
            structs[-1]["holes"] = [{"size": int(h[0]), "offset": int(h[1]), "after": h[2]}
                                    for h in HOLE.findall(line)]
        elif m := TOTAL.search(line):
            structs[-1]["total"] = (int(m[1]), m[2], int(m[3]), m[4] == "agree", m[5], int(m[6]), m[7] == "agree")
        elif m := EXAMPLE.match(line):
            example.append({"offset": int(m[1]), "hex": m[2].replace(" ", ""), "name": m[3],
                            "order": m[4], "value": m[5]})
    return {"structs": structs, "example": example}


def test_layout_json_and_text_carry_the_same_numbers():
    text_run = run_cli("layout")
    json_run = run_cli("layout", "--json")
    assert text_run.returncode == json_run.returncode == 0
    text = _parse_text(text_run.stdout.decode())
    doc = json.loads(json_run.stdout)
    assert [s["name"] for s in text["structs"]] == [s["name"] for s in doc["structs"]] == [
        n for n in ALL if _built(n)]
    for seen, js in zip(text["structs"], doc["structs"]):
        assert (seen["header"], seen["size"], seen["align"]) == (js["header"], js["size"], js["align"])
        assert seen["holes"] == js["holes"]
        assert seen["total"] == (js["size"], js["ctypes"]["class"], js["ctypes"]["size"], js["ctypes"]["agrees"],
                                 js["struct"]["format"], js["struct"]["size"], js["struct"]["agrees"])
        assert len(seen["members"]) == len(js["members"])
        for row, m in zip(seen["members"], js["members"]):
            assert (row["offset"], row["size"], row["align"], row["name"], row["ctype"]) == (
                m["offset"], m["size"], m["align"], m["name"], m["ctype"])
            assert (row["ctypes"], row["struct"]) == (m["ctypes"]["type"], m["struct"]["code"])
            assert row["agrees"] == (m["ctypes"]["agrees"] and m["struct"]["agrees"])
    example = [{k: e[k] for k in ("offset", "hex", "name", "order", "value")} for e in doc["example"]["members"]]
    assert text["example"] == example
    assert doc["example"]["hex"] in text_run.stdout.decode()


def test_layout_json_numbers_are_the_c_numbers():
    doc = json.loads(run_cli("layout", "--json").stdout)
    for js, c in zip(doc["structs"], layout.c_layouts()):
        assert (js["name"], js["size"], js["align"]) == (c.name, c.size, c.align)
        assert [(m["name"], m["offset"], m["size"], m["align"]) for m in js["members"]] == [
            (m.name, m.offset, m.size, m.align) for m in c.members]


# -- many in one call ---------------------------------------------------------


def test_sockaddr_in_many_fills_each_like_one_call():
    many = layout.sockaddr_in_many("127.0.0.1", 12000, 1000)
    assert len(many) == 1000
    assert many[0] == pysock.sockaddr_in("127.0.0.1", 12000)
    assert many[999] == pysock.sockaddr_in("127.0.0.1", 12999)
    assert all(raw == _expected("127.0.0.1", 12000 + i) for i, raw in enumerate(many))


def test_sockaddr_in_many_takes_a_name_and_zero_elements():
    assert layout.sockaddr_in_many("localhost", 80, 2)[1][4:8] == socket.inet_aton(socket.gethostbyname("localhost"))
    assert layout.sockaddr_in_many("127.0.0.1", 80, 0) == []


def test_sockaddr_in_many_refuses_ports_past_65535():
    assert layout.sockaddr_in_many("127.0.0.1", 65534, 2)[1][2:4] == b"\xff\xff"
    with pytest.raises(OSError, match="65535") as info:
        layout.sockaddr_in_many("127.0.0.1", 65535, 2)
    assert info.value.errno == 22


# -- resolve ------------------------------------------------------------------


def test_resolve_cli_matches_gethostbyname_ex():
    name, aliases, addresses = socket.gethostbyname_ex("localhost")
    result = run_cli("resolve", "localhost", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["hostent"] == {"h_name": name, "h_aliases": aliases, "h_addrtype": socket.AF_INET,
                              "h_length": 4, "h_addr_list": addresses}
    assert doc["agree"] is True
    text = run_cli("resolve", "localhost").stdout.decode()
    assert re.search(rf"^  h_name\s+{re.escape(name)}$", text, re.M)
    assert re.search(rf"^  h_addr_list\s+{re.escape(addresses[0])} ", text, re.M)
    assert re.search(r"^  h_addrtype\s+2 \(AF_INET\)$", text, re.M)
    assert re.search(r"^  h_length\s+4$", text, re.M)
    assert "C and Python agree on every field." in text


def test_resolve_unknown_name_is_one_line_and_exit_1():
    result = run_cli("resolve", UNRESOLVABLE)
    assert result.returncode == 1
    assert result.stdout == b""
    err = result.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert UNRESOLVABLE in err


def test_resolve_reports_where_python_disagrees():
    entry = pysock.HostEntry(name="localhost", aliases=[], addrtype=socket.AF_INET, length=4,
                             addresses=["10.9.9.9"])
    checks = resolve_cmd.python_checks("localhost", entry)
    differ = {(c.source, c.field) for c in checks if not c.agrees}
    assert differ == {("gethostbyname_ex", "addresses"), ("getaddrinfo", "addresses")}
    assert "differ" in resolve_cmd.verdict_line(checks)


# -- pahole, which reads the compiler's debug information ----------------------

PAHOLE_MEMBER = re.compile(r"^(\t+)(?:.*?\W)?(\w+)(?:\[\d*\])?;\s+/\*\s+(\d+)\s+(\d+)\s+\*/")
PAHOLE_UNNAMED = re.compile(r"^\t};\s+/\*\s+(\d+)\s+(\d+)\s+\*/")
PAHOLE_HOLE = re.compile(r"^\t/\* XXX (\d+) bytes? hole")
PAHOLE_SIZE = re.compile(r"/\* size: (\d+),")
PAHOLE_PADDING = re.compile(r"^\t/\* padding: (\d+) \*/")


def pahole(obj: Path, name: str) -> dict:
    """What pahole prints of struct name: its size; every member at any
    depth, by name; the top-level members' bytes (a union is one); and the
    holes (between top-level members, then the tail's padding)."""
    out = subprocess.run(["pahole", "-C", name, str(obj)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout, out.stderr
    named, top, holes, size = {}, [], [], None
    for line in out.stdout.splitlines():
        if m := PAHOLE_MEMBER.match(line):
            named[m[2]] = (int(m[3]), int(m[4]))
            if len(m[1]) == 1 and int(m[4]) > 0:
                top.append((int(m[3]), int(m[4])))
        elif m := PAHOLE_UNNAMED.match(line):
            top.append((int(m[1]), int(m[2])))
        elif m := PAHOLE_HOLE.match(line):
            offset, length = top[-1]
            holes.append((offset + length, int(m[1])))
        elif m := PAHOLE_SIZE.search(line):
            size = int(m[1])
        elif m := PAHOLE_PADDING.match(line):
            holes.append((size - int(m[1]), int(m[1])))
    return {"size": size, "named": named, "top": top, "holes": holes}


@pytest.fixture(scope="module")
def debug_object(tmp_path_factory) -> Path:
    """csrc/layout.c compiled with debug information for every type it names."""
    if shutil.which("pahole") is None:
        skip_unless_ci("pahole is not installed (Debian: apt-get install dwarves)")
    obj = tmp_path_factory.mktemp("pahole") / "layout.o"
    csrc = Path(__file__).resolve().parent.parent / "csrc"
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-std=c99", "-D_GNU_SOURCE", "-g", "-fno-eliminate-unused-debug-types", "-I", str(csrc),
                    "-c", str(csrc / "layout.c"), "-o", str(obj)], check=True, timeout=120)
    return obj


@pytest.mark.parametrize("name", ALL)
def test_every_struct_agrees_with_pahole(name, debug_object):
    c = _c(name)
    seen = pahole(debug_object, name[len("struct "):])
    assert seen["size"] == c.size
    for m in c.members:  # every member pysock shows, at the offset and size pahole gives it
        assert seen["named"].get(m.name) == (m.offset, m.size), m.name
    covered = sorted({b for o, n in seen["top"] for b in range(o, o + n)})
    ours = sorted({b for m in c.members for b in range(m.offset, m.offset + m.size)})
    assert covered == ours  # together they cover the same bytes: no member missed
    assert seen["holes"] == [(h.offset, h.size) for h in c.holes()]


def test_a_packed_struct_says_so_and_why():
    """A member off its type's alignment is shown with the reason, in text
    and JSON; on x86-64, glibc's epoll_event is packed (data at offset 4)."""
    comps = {c.c.name: c for c in layout.comparisons()}
    assert comps["struct msghdr"].c.packed() == []
    text = layout.report(names=["epoll_event", "msghdr"], example=False)
    doc = json.loads(layout.report(names=["epoll_event"], as_json=True))
    epoll = comps.get("struct epoll_event")
    if epoll is None or platform.machine() != "x86_64":
        assert "packed:" not in text.split("struct msghdr")[1]
        return
    assert [m.name for m in epoll.c.packed()] == ["data"]
    assert "packed: data at offset 4 (its type aligns to 8)" in text and "EPOLL_PACKED" in text
    assert doc["structs"][0]["packed"] == ["data"]
