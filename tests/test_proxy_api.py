"""The toxiproxy-compatible control API (pysock.proxy.api), over HTTP on
127.0.0.1 as toxiproxy's clients call it: the JSON they send, the fields
and status codes they read back, and what the toxics do to the bytes."""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from support import LOCALHOST, CliServer, skip_unless_ci

import pysock
from pysock.proxy.api import ControlAPI

SLACK = 5.0


@pytest.fixture(params=["c", "python"])
def api(request):
    with ControlAPI(LOCALHOST, 0, backend=request.param) as control:
        yield control


@pytest.fixture
def echo():
    with pysock.Server(LOCALHOST, 0, transform="echo") as srv:
        yield srv


def call(api: ControlAPI, method: str, path: str, body: object = None) -> tuple[int, object]:
    """(status, decoded body) of one call, as a client makes it."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(api.url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=SLACK) as resp:
            status, raw, kind = resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    if not raw:
        return status, None
    return status, json.loads(raw) if kind.startswith("application/json") else raw.decode()


def round_trip(address: tuple[str, int]) -> float:
    with socket.create_connection(address, timeout=SLACK) as s:
        start = time.monotonic()
        s.sendall(b"ping")
        assert s.recv(10) == b"ping"
        return time.monotonic() - start


def listen_address(proxy: dict) -> tuple[str, int]:
    host, _, port = proxy["listen"].rpartition(":")
    return host.strip("[]"), int(port)


def test_a_proxy_is_made_listens_on_its_bound_port_and_forwards(api, echo):
    status, proxy = call(api, "POST", "/proxies", {"name": "db", "listen": "127.0.0.1:0",
                                                   "upstream": f"127.0.0.1:{echo.port}"})
    assert status == 201
    assert proxy["name"] == "db" and proxy["enabled"] is True and proxy["toxics"] == []
    host, port = listen_address(proxy)
    assert host == "127.0.0.1" and port > 0
    round_trip((host, port))
    assert call(api, "GET", "/proxies") == (200, {"db": proxy})
    assert call(api, "GET", "/proxies/db") == (200, proxy)


def test_toxics_shape_their_stream_and_go_away(api, echo):
    _, proxy = call(api, "POST", "/proxies", {"name": "db", "upstream": f"127.0.0.1:{echo.port}"})
    address = listen_address(proxy)
    status, toxic = call(api, "POST", "/proxies/db/toxics",
                         {"type": "latency", "attributes": {"latency": 150}})
    assert status == 200
    assert toxic == {"name": "latency_downstream", "type": "latency", "stream": "downstream", "toxicity": 1.0,
                     "attributes": {"latency": 150, "jitter": 0}}
    assert round_trip(address) >= 0.15
    status, toxic = call(api, "POST", "/proxies/db/toxics/latency_downstream", {"attributes": {"latency": 0}})
    assert status == 200 and toxic["attributes"]["latency"] == 0
    call(api, "POST", "/proxies/db/toxics", {"type": "latency", "stream": "upstream", "name": "up",
                                             "attributes": {"latency": 150}})
    assert round_trip(address) >= 0.15
    assert [t["name"] for t in call(api, "GET", "/proxies/db/toxics")[1]] == ["latency_downstream", "up"]
    assert call(api, "DELETE", "/proxies/db/toxics/up") == (204, None)
    assert call(api, "DELETE", "/proxies/db/toxics/latency_downstream") == (204, None)
    assert round_trip(address) < 0.15


@pytest.mark.parametrize("toxic, check", [
    ({"type": "limit_data", "attributes": {"bytes": 3}}, "eof after 3"),
    ({"type": "reset_peer", "attributes": {"timeout": 100}}, "reset"),
    ({"type": "timeout", "attributes": {"timeout": 100}}, "silence, then eof"),
    ({"type": "bandwidth", "attributes": {"rate": 1}}, "slow"),
    ({"type": "slicer", "attributes": {"average_size": 1, "delay": 20000}}, "pieces"),
    ({"type": "slow_close", "attributes": {"delay": 150}}, "late eof"),
])
def test_each_toxic_type_does_what_toxiproxy_says(api, echo, toxic, check):
    _, proxy = call(api, "POST", "/proxies", {"name": "p", "upstream": f"127.0.0.1:{echo.port}"})
    assert call(api, "POST", "/proxies/p/toxics", toxic)[0] == 200
    start = time.monotonic()  # before the connect: a timed toxic's clock starts as the proxy accepts
    with socket.create_connection(listen_address(proxy), timeout=SLACK) as s:
        s.sendall(b"hello")
        if check == "eof after 3":
            assert s.recv(10) == b"hel" and s.recv(10) == b""
        elif check == "reset":
            with pytest.raises(ConnectionResetError):
                while s.recv(10):
                    pass
            assert time.monotonic() - start >= 0.1
        elif check == "silence, then eof":
            assert s.recv(10) == b"" and time.monotonic() - start >= 0.1
        elif check == "slow":  # 1 KB/s: 100 more bytes take 0.1 s, less the first 20 ms' piece
            s.sendall(b"x" * 100)
            got = b""
            while len(got) < 105:
                got += s.recv(200)
            assert got == b"hello" + b"x" * 100 and time.monotonic() - start >= 0.08
        elif check == "pieces":
            pieces = [s.recv(10) for _ in range(5)]
            assert pieces == [b"h", b"e", b"l", b"l", b"o"] and time.monotonic() - start >= 0.08
        else:
            assert s.recv(10) == b"hello"
            s.shutdown(socket.SHUT_WR)
            assert s.recv(10) == b"" and time.monotonic() - start >= 0.15


def test_a_disabled_proxy_refuses_and_comes_back_on_its_port(api, echo):
    _, proxy = call(api, "POST", "/proxies", {"name": "db", "upstream": f"127.0.0.1:{echo.port}"})
    address = listen_address(proxy)
    status, off = call(api, "POST", "/proxies/db", {"enabled": False})
    assert status == 200 and off["enabled"] is False
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=SLACK)
    call(api, "POST", "/proxies/db/toxics", {"type": "latency", "attributes": {"latency": 150}})
    assert call(api, "POST", "/reset") == (204, None)
    _, back = call(api, "GET", "/proxies/db")
    assert back["enabled"] is True and back["toxics"] == [] and listen_address(back) == address
    assert round_trip(address) < 0.15


def test_delete_stops_the_proxy(api, echo):
    _, proxy = call(api, "POST", "/proxies", {"name": "db", "upstream": f"127.0.0.1:{echo.port}"})
    assert call(api, "DELETE", "/proxies/db") == (204, None)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(listen_address(proxy), timeout=SLACK)
    assert call(api, "GET", "/proxies") == (200, {})


def test_errors_are_toxiproxys_codes_and_bodies(api, echo):
    upstream = f"127.0.0.1:{echo.port}"
    assert call(api, "GET", "/proxies/nope") == (404, {"title": "proxy not found", "status": 404})
    assert call(api, "POST", "/proxies", {"name": "x"})[0] == 400
    call(api, "POST", "/proxies", {"name": "x", "upstream": upstream})
    assert call(api, "POST", "/proxies", {"name": "x", "upstream": upstream}) == \
        (409, {"title": "proxy already exists", "status": 409})
    assert call(api, "POST", "/proxies/x/toxics", {"type": "nosuch"})[0] == 400
    assert call(api, "POST", "/proxies/x/toxics", {"type": "latency", "stream": "sideways"})[0] == 400
    assert call(api, "GET", "/proxies/x/toxics/none")[0] == 404
    call(api, "POST", "/proxies/x/toxics", {"type": "latency"})
    assert call(api, "POST", "/proxies/x/toxics", {"type": "latency"})[0] == 409
    status, body = call(api, "POST", "/proxies/x/toxics", {"type": "slicer", "toxicity": 0.5,
                                                            "attributes": {"average_size": 10}})
    assert status == 400 and "one toxicity" in body["title"]
    assert [t["type"] for t in call(api, "GET", "/proxies/x/toxics")[1]] == ["latency"]  # the refused one is gone


def test_version_and_udp_as_an_extension(api):
    status, text = call(api, "GET", "/version")
    assert status == 200 and text.startswith("pysock ")
    with pysock.Server(LOCALHOST, 0, "udp", transform="echo") as up:
        status, proxy = call(api, "POST", "/proxies", {"name": "dns", "upstream": up.url})
        assert status == 201 and proxy["upstream"] == up.url
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(SLACK)
            s.sendto(b"query", listen_address(proxy))
            assert s.recvfrom(100)[0] == b"query"


def test_the_cli_serves_the_api_and_a_proxy(echo):
    with CliServer("proxy", "0", echo.url, "--api", "127.0.0.1:0", lines=2) as cli:
        api_url, proxy_url = cli.urls  # the API first, then each proxy
        assert proxy_url.startswith("tcp://127.0.0.1:") and api_url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(api_url + "/proxies", timeout=SLACK) as resp:
            proxies = json.loads(resp.read())
        assert proxies["pysock"]["upstream"] == echo.url
        round_trip(listen_address(proxies["pysock"]))


@pytest.mark.slow
def test_toxiproxy_python_drives_the_api_unchanged(api, echo):
    """toxiproxy's own Python client (toxiproxy-python, which CI installs),
    through its whole surface: what its users' tests call."""
    try:
        from toxiproxy import Toxiproxy
        from toxiproxy.api import APIConsumer
        from toxiproxy.exceptions import NotFound, ProxyExists
    except ImportError:
        skip_unless_ci("toxiproxy-python is not installed (pip install toxiproxy-python)")
    saved = APIConsumer.host, APIConsumer.port  # the client keeps them on the class
    server = Toxiproxy()
    server.update_api_consumer(*api.address)
    try:
        assert server.running() and server.version().startswith(b"pysock ")
        proxy = server.create(upstream=f"127.0.0.1:{echo.port}", name="db", listen="127.0.0.1:0")
        with pytest.raises(ProxyExists):
            server.create(upstream=f"127.0.0.1:{echo.port}", name="db")
        address = listen_address({"listen": proxy.listen})
        assert address[1] > 0 and proxy.enabled is True
        round_trip(address)
        proxy.add_toxic(type="latency", attributes={"latency": 250})
        assert [(t.type, t.stream, t.attributes["latency"]) for t in proxy.toxics().values()] == \
            [("latency", "downstream", 250)]
        assert 0.25 <= round_trip(address) < SLACK
        proxy.destroy_toxic("latency_downstream")
        assert proxy.toxics() == {} and round_trip(address) < 0.25
        with proxy.down():
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=SLACK)
        round_trip(address)
        proxy.add_toxic(type="latency", stream="upstream", attributes={"latency": 250})
        assert server.reset() and proxy.toxics() == {}
        with pytest.raises(NotFound):
            APIConsumer.get("/proxies/nope")
        assert [p.name for p in server.populate([{"name": "cache", "upstream": f"127.0.0.1:{echo.port}",
                                                   "listen": "127.0.0.1:0"}])] == ["cache"]
        assert sorted(server.proxies()) == ["cache", "db"]
        server.destroy_all()
        assert server.proxies() == {}
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=SLACK)
    finally:
        APIConsumer.host, APIConsumer.port = saved
