"""toxiproxy's HTTP control API, served by pysock, so that toxiproxy's own
clients (toxiproxy-python, the Go client, toxiproxy-cli, testcontainers'
modules) drive pysock proxies unchanged.

The subset: GET /version; GET and POST /proxies; GET, POST and DELETE
/proxies/{name}; GET and POST /proxies/{name}/toxics; GET, POST and DELETE
/proxies/{name}/toxics/{toxic}; POST /reset.  Field names, defaults and
status codes are toxiproxy's.  Each toxic is a set of pysock.Faults
fields; a proxy's toxics of one stream merge into that direction's Faults
(downstream: faults, what clients receive; upstream: faults_up).  What
differs from toxiproxy is in docs/proxy.md."""
from __future__ import annotations

import json
import selectors
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from pysock import __version__
from pysock.errors import ConfigError, PysockError
from pysock.faults import Faults
from pysock.proxy.proxy import Proxy
from pysock.urls import format_url

__all__ = ["TOXICS", "ApiError", "ControlAPI"]

# Each toxic type: its attributes with toxiproxy's defaults, and the Faults
# fields they make.  Units are toxiproxy's: milliseconds, KB/s (1000 bytes),
# microseconds for slicer's delay.
TOXICS: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "latency": ({"latency": 0, "jitter": 0},
                lambda a: {"latency": a["latency"] / 1000, "jitter": a["jitter"] / 1000}),
    "bandwidth": ({"rate": 0},
                  lambda a: {"bandwidth": a["rate"] * 1000} if a["rate"] > 0 else {"stall": True}),
    "slow_close": ({"delay": 0}, lambda a: {"close_delay": a["delay"] / 1000}),
    "timeout": ({"timeout": 0},
                lambda a: {"stall": True, "close_after_time": a["timeout"] / 1000}),
    "reset_peer": ({"timeout": 0}, lambda a: {"reset_after_time": max(a["timeout"] / 1000, 1e-6)}),
    "slicer": ({"average_size": 0, "size_variation": 0, "delay": 0},
               lambda a: {"slice": a["average_size"], "slice_delay": a["delay"] / 1e6}
               if a["average_size"] > 0 else {}),
    "limit_data": ({"bytes": 0}, lambda a: {"limit_data": a["bytes"]} if a["bytes"] > 0 else {}),
}
STREAMS = ("upstream", "downstream")


class ApiError(PysockError):
    """An API call that fails: toxiproxy's {"title", "status"} body."""

    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title


@dataclass
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "stream": self.stream, "toxicity": self.toxicity,
                "attributes": self.attributes}

    def fields(self) -> dict[str, Any]:
        return TOXICS[self.type][1](self.attributes)


@dataclass
class Entry:
    """One named proxy: what was asked, and the Proxy serving it (None
    while disabled)."""

    name: str
    listen: str
    upstream: str
    enabled: bool
    proxy: Proxy | None = None
    toxics: dict[str, Toxic] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream, "enabled": self.enabled,
                "toxics": [t.as_json() for t in self.toxics.values()]}


def split_host_port(text: str, what: str) -> tuple[str, int]:
    """("::", 16001) from "[::]:16001"; ApiError 400 if it is not HOST:PORT."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ApiError(400, f"bad request body: {what} {text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def upstream_url(text: str) -> str:
    """toxiproxy's HOST:PORT is TCP; pysock's URLs (udp://, unix://) pass."""
    if "://" in text:
        return text
    host, port = split_host_port(text, "upstream")
    return format_url("tcp", (host, port))


def _merge(toxics: list[Toxic], stream: str) -> Faults | None:
    """The Faults of one direction: its toxics' fields, one toxicity."""
    mine = [t for t in toxics if t.stream == stream]
    if not mine:
        return None
    fields: dict[str, Any] = {}
    for toxic in mine:
        for name, value in toxic.fields().items():
            if name in fields and fields[name] != value:
                raise ApiError(409, f"toxic {toxic.name!r} sets {name}, which another {stream} toxic sets: "
                                    "pysock merges a stream's toxics into one set of faults")
            fields[name] = value
    chances = {t.toxicity for t in mine}
    if len(chances) > 1:
        raise ApiError(400, f"the {stream} toxics have toxicities {sorted(chances)}: pysock applies one "
                            "toxicity to a stream's toxics together")
    fields["toxicity"] = chances.pop()
    try:
        return Faults(**fields)
    except ConfigError as exc:
        raise ApiError(400, f"bad request body: {exc}") from None


class Registry:
    """The named proxies and their toxics, behind one lock."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.entries: dict[str, Entry] = {}
        self.lock = threading.Lock()

    def get(self, name: str) -> Entry:
        entry = self.entries.get(name)
        if entry is None:
            raise ApiError(404, "proxy not found")
        return entry

    def create(self, body: dict[str, Any]) -> Entry:
        name, upstream = body.get("name"), body.get("upstream")
        for key, value in (("name", name), ("upstream", upstream)):
            if not isinstance(value, str) or not value:
                raise ApiError(400, f"missing required field: {key}")
        assert isinstance(name, str) and isinstance(upstream, str)
        if name in self.entries:
            raise ApiError(409, "proxy already exists")
        entry = Entry(name, str(body.get("listen") or "127.0.0.1:0"), upstream, bool(body.get("enabled", True)))
        if entry.enabled:
            self.start(entry)
        self.entries[name] = entry
        return entry

    def adopt(self, name: str, proxy: Proxy) -> None:
        host, port = proxy.address if isinstance(proxy.address, tuple) else (proxy.url, 0)
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.entries[name] = Entry(name, listen, proxy.upstream_url, True, proxy)

    def start(self, entry: Entry) -> None:
        """Serve entry's listen address (a port of 0 is bound, then kept)."""
        up = upstream_url(entry.upstream)
        host, port = split_host_port(entry.listen, "listen")
        toxics = list(entry.toxics.values())
        try:
            proxy = Proxy(up, host=host, port=port, backend=self.backend,
                          faults=_merge(toxics, "downstream"), faults_up=_merge(toxics, "upstream"))
        except ConfigError as exc:
            raise ApiError(400, f"bad request body: {exc}") from None
        except OSError as exc:
            raise ApiError(500, f"{entry.name}: {exc}") from None
        entry.proxy = proxy.start()
        bound_host, bound_port = proxy.address if isinstance(proxy.address, tuple) else (host, port)
        entry.listen = f"[{bound_host}]:{bound_port}" if ":" in bound_host else f"{bound_host}:{bound_port}"

    def stop(self, entry: Entry) -> None:
        if entry.proxy is not None:
            entry.proxy.stop()
            entry.proxy = None

    def update(self, entry: Entry, body: dict[str, Any]) -> None:
        listen = str(body.get("listen", entry.listen))
        upstream = str(body.get("upstream", entry.upstream))
        enabled = bool(body.get("enabled", entry.enabled))
        if (listen, upstream) != (entry.listen, entry.upstream) or not enabled:
            self.stop(entry)
        entry.listen, entry.upstream, entry.enabled = listen, upstream, enabled
        if enabled and entry.proxy is None:
            self.start(entry)

    def apply_toxics(self, entry: Entry) -> None:
        """Set the proxy's faults from its toxics (checked first)."""
        toxics = list(entry.toxics.values())
        down, up = _merge(toxics, "downstream"), _merge(toxics, "upstream")
        if entry.proxy is not None:
            entry.proxy.set_faults(down, up)

    def add_toxic(self, entry: Entry, body: dict[str, Any]) -> Toxic:
        kind = body.get("type")
        if kind not in TOXICS:
            raise ApiError(400, "invalid toxic type")
        assert isinstance(kind, str)
        stream = body.get("stream", "downstream")
        if stream not in STREAMS:
            raise ApiError(400, "stream was invalid, can be either upstream or downstream")
        name = str(body.get("name") or f"{kind}_{stream}")
        if name in entry.toxics:
            raise ApiError(409, "toxic already exists")
        toxic = Toxic(name, kind, stream, _toxicity(body.get("toxicity", 1.0)),
                      _attributes(kind, body.get("attributes") or {}, TOXICS[kind][0]))
        self._change(entry, name, toxic)
        return toxic

    def update_toxic(self, entry: Entry, name: str, body: dict[str, Any]) -> Toxic:
        old = self.toxic(entry, name)
        toxic = Toxic(name, old.type, old.stream, _toxicity(body.get("toxicity", old.toxicity)),
                      _attributes(old.type, body.get("attributes") or {}, old.attributes))
        self._change(entry, name, toxic)
        return toxic

    def _change(self, entry: Entry, name: str, toxic: Toxic | None) -> None:
        """Put (or with None, remove) a toxic; undone if the faults refuse it."""
        before = dict(entry.toxics)
        if toxic is None:
            entry.toxics.pop(name)
        else:
            entry.toxics[name] = toxic
        try:
            self.apply_toxics(entry)
        except ApiError:
            entry.toxics = before
            raise

    def toxic(self, entry: Entry, name: str) -> Toxic:
        toxic = entry.toxics.get(name)
        if toxic is None:
            raise ApiError(404, "toxic not found")
        return toxic

    def remove_toxic(self, entry: Entry, name: str) -> None:
        self.toxic(entry, name)
        self._change(entry, name, None)

    def reset(self) -> None:
        """Every proxy enabled, every toxic gone."""
        for entry in self.entries.values():
            entry.toxics.clear()
            entry.enabled = True
            if entry.proxy is None:
                self.start(entry)
            else:
                entry.proxy.set_faults(None)

    def close(self) -> None:
        for entry in self.entries.values():
            self.stop(entry)


def _toxicity(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ApiError(400, f"bad request body: toxicity must be a number from 0 to 1, not {value!r}")
    return float(value)


def _attributes(kind: str, given: object, base: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(given, dict):
        raise ApiError(400, "bad request body: attributes must be an object")
    unknown = sorted(set(given) - set(TOXICS[kind][0]))
    if unknown:
        raise ApiError(400, f"bad request body: {kind} has no attribute {', '.join(unknown)} "
                            f"(it has {', '.join(TOXICS[kind][0])})")
    merged = {**base, **given}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ApiError(400, f"bad request body: {kind} {key} must be a number of at least 0, not {value!r}")
    return merged


class _Handler(BaseHTTPRequestHandler):
    """One request: routed by method and path, answered in JSON."""

    registry: Registry  # set on the class ControlAPI makes
    protocol_version = "HTTP/1.1"
    server_version = f"pysock/{__version__}"

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a test suite's output is not the place for access logs."""

    def _answer(self, method: str) -> None:
        try:
            body = self._body() if method == "POST" else {}
            with self.registry.lock:
                status, result = route(self.registry, method, self.path.split("?")[0].strip("/").split("/"), body)
        except ApiError as exc:
            status, result = exc.status, {"title": exc.title, "status": exc.status}
        if isinstance(result, str):
            self._send(status, result.encode(), "text/plain")
        else:
            self._send(status, b"" if status == 204 else json.dumps(result).encode(), "application/json")

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, f"bad request body: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "bad request body: a JSON object is expected")
        return body

    def _send(self, status: int, data: bytes, kind: str) -> None:
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if status != 204:
            self.wfile.write(data)


def route(reg: Registry, method: str, parts: list[str], body: dict[str, Any]) -> tuple[int, Any]:
    """(status, JSON-able result or text) for one call."""
    if parts == ["version"] and method == "GET":
        return 200, f"pysock {__version__}"
    if parts == ["reset"] and method == "POST":
        reg.reset()
        return 204, None
    if parts == ["proxies"]:
        if method == "GET":
            return 200, {name: e.as_json() for name, e in reg.entries.items()}
        if method == "POST":
            return 201, reg.create(body).as_json()
    if len(parts) >= 2 and parts[0] == "proxies":
        return _proxy_route(reg, method, parts[1], parts[2:], body)
    raise ApiError(404, f"no such call: {method} /{'/'.join(parts)}")


def _proxy_route(reg: Registry, method: str, name: str, rest: list[str], body: dict[str, Any]) -> tuple[int, Any]:
    entry = reg.get(name)
    if not rest:
        if method == "GET":
            return 200, entry.as_json()
        if method == "POST":
            reg.update(entry, body)
            return 200, entry.as_json()
        if method == "DELETE":
            reg.stop(entry)
            del reg.entries[name]
            return 204, None
    elif rest == ["toxics"]:
        if method == "GET":
            return 200, [t.as_json() for t in entry.toxics.values()]
        if method == "POST":
            return 200, reg.add_toxic(entry, body).as_json()
    elif len(rest) == 2 and rest[0] == "toxics":
        if method == "GET":
            return 200, reg.toxic(entry, rest[1]).as_json()
        if method == "POST":
            return 200, reg.update_toxic(entry, rest[1], body).as_json()
        if method == "DELETE":
            reg.remove_toxic(entry, rest[1])
            return 204, None
    raise ApiError(405, f"{method} is not a call on /proxies/{name}/{'/'.join(rest)}".rstrip("/"))


class ControlAPI:
    """The HTTP server: bound in the constructor (port 0: a free one),
    serving in a thread from start() until stop(), which wakes it at once."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, backend: str = "c") -> None:
        self.registry = Registry(backend)
        handler = type("Handler", (_Handler,), {"registry": self.registry})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._httpd.timeout = 0  # handle_request() after select(): never waits again
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def adopt(self, name: str, proxy: Proxy) -> None:
        """Let the API drive a proxy made elsewhere (pysock proxy PORT UPSTREAM --api)."""
        with self.registry.lock:
            self.registry.adopt(name, proxy)

    def start(self) -> ControlAPI:
        self._thread = threading.Thread(target=self._serve, name=f"pysock api {self.url}", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._httpd.socket, selectors.EVENT_READ, "http")
            sel.register(self._wake_r, selectors.EVENT_READ, "wake")
            while True:
                for key, _ in sel.select():
                    if key.data == "wake":
                        return
                    self._httpd.handle_request()

    def stop(self) -> None:
        """Stop serving the API, and every proxy it made."""
        self._wake_w.send(b"\0")
        if self._thread is not None:
            self._thread.join(5)
        self._httpd.server_close()
        with self.registry.lock:
            self.registry.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> ControlAPI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
