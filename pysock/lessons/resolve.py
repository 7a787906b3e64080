"""``pysock resolve NAME``: a struct hostent filled in C, field by field,
beside what Python's socket module answers for the same name."""
from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass

from pysock.lessons.addr import HostEntry, resolve


@dataclass(frozen=True)
class Check:
    """One thing Python's resolver says, and whether C said the same."""

    source: str      # "gethostbyname_ex" or "getaddrinfo"
    field: str
    value: object
    agrees: bool


def _family_name(family: int) -> str:
    try:
        return socket.AddressFamily(family).name
    except ValueError:
        return "?"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def python_checks(name: str, entry: HostEntry) -> list[Check]:
    """What socket.gethostbyname_ex and socket.getaddrinfo (IPv4, as
    hostent is) say for name, each beside C's answer.  getaddrinfo sorts
    its addresses by its own rules, so only the set has to match."""
    checks = []
    try:
        py_name, aliases, addresses = socket.gethostbyname_ex(name)
        checks += [Check("gethostbyname_ex", "name", py_name, py_name == entry.name),
                   Check("gethostbyname_ex", "aliases", aliases, aliases == entry.aliases),
                   Check("gethostbyname_ex", "addresses", addresses, addresses == entry.addresses)]
    except OSError as exc:
        checks.append(Check("gethostbyname_ex", "error", str(exc), False))
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
        canon = infos[0][3]
        found = _unique([str(info[4][0]) for info in infos])
        checks += [Check("getaddrinfo", "canonname", canon, canon == entry.name),
                   Check("getaddrinfo", "addresses", found, set(found) == set(entry.addresses))]
    except OSError as exc:
        checks.append(Check("getaddrinfo", "error", str(exc), False))
    return checks


def _show(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(value) if value else "(none)"
    return str(value)


def render_text(name: str, entry: HostEntry, checks: list[Check]) -> str:
    raw = [socket.inet_pton(entry.addrtype, a).hex(" ") for a in entry.addresses]
    lines = [f"struct hostent for {name!r}, filled in C by gethostbyname_r",
             f"  h_name       {entry.name}",
             f"  h_aliases    {_show(entry.aliases)}",
             f"  h_addrtype   {entry.addrtype} ({_family_name(entry.addrtype)})",
             f"  h_length     {entry.length}",
             f"  h_addr_list  {_show([f'{a} ({r})' for a, r in zip(entry.addresses, raw)])}"]
    calls = {"gethostbyname_ex": f"socket.gethostbyname_ex({name!r})",
             "getaddrinfo": f"socket.getaddrinfo({name!r}, None, AF_INET)"}
    for source, call in calls.items():
        lines += ["", call]
        for c in checks:
            if c.source == source:
                verdict = "" if c.field == "error" else ("agrees" if c.agrees else "DISAGREES")
                lines.append(f"  {c.field:<12} {_show(c.value):<30} {verdict}".rstrip())
    lines += ["", verdict_line(checks)]
    return "\n".join(lines)


def verdict_line(checks: list[Check]) -> str:
    differ = [f"{c.source} {c.field}" for c in checks if not c.agrees]
    if not differ:
        return "C and Python agree on every field."
    return "C and Python differ: " + ", ".join(differ) + "."


def render_json(name: str, entry: HostEntry, checks: list[Check]) -> str:
    doc = {"name": name,
           "hostent": {"h_name": entry.name, "h_aliases": entry.aliases,
                       "h_addrtype": entry.addrtype, "h_length": entry.length,
                       "h_addr_list": entry.addresses},
           "python": [asdict(c) for c in checks],
           "agree": all(c.agrees for c in checks)}
    return json.dumps(doc, indent=2)


def report(name: str, as_json: bool = False) -> str:
    """What ``pysock resolve NAME`` prints; raises pysock.ResolveError if C
    cannot resolve name."""
    entry = resolve(name)
    checks = python_checks(name, entry)
    return (render_json if as_json else render_text)(name, entry, checks)
