"""pysock.Faults as a user meets it: the settings refused alike for every
engine, the seed reported, set_faults' lifecycle, and `pysock serve
--fault`.  What each fault does on each engine is tests/test_faults_contract.py."""
from __future__ import annotations

import socket
import time

import pytest
from support import LOCALHOST, CliServer, run_cli

import pysock
from pysock.faults import Corrupter, parse_fault, spared


@pytest.mark.parametrize("fields", [
    {"latency": -0.1}, {"latency": float("nan")}, {"jitter": float("inf")}, {"latency": "1"},
    {"latency": 3601}, {"bandwidth": 0}, {"bandwidth": 1.5}, {"slice": True}, {"limit_data": -1},
    {"drop": 1.5}, {"duplicate": -0.1}, {"reorder": "half"}, {"stall": 1}, {"seed": -1},
    {"seed": 1 << 64}, {"slice_delay": 0.1}, {"corrupt": 2}, {"toxicity": -0.5},
    {"close_after_time": -1}, {"reset_after_time": "soon"},
])
def test_bad_settings_are_refused_naming_the_field(fields):
    with pytest.raises(pysock.ConfigError, match=next(iter(fields))):
        pysock.Faults(**fields)


@pytest.mark.parametrize("proto, fields, word", [
    ("udp", {"limit_data": 10}, "TCP only"),
    ("udp", {"slice": 10}, "TCP only"),
    ("udp", {"close_delay": 1.0}, "TCP only"),
    ("tcp", {"drop": 0.5}, "UDP only"),
    ("tcp", {"reorder": 0.5}, "UDP only"),
    ("udp", {"close_after_time": 1.0}, "TCP only"),
    ("udp", {"reset_after_time": 1.0}, "TCP only"),
])
@pytest.mark.parametrize("backend", ["c", "python"])
def test_a_fault_for_the_other_protocol_is_refused(proto, fields, word, backend):
    with pytest.raises(pysock.ConfigError, match=word):
        pysock.Server(LOCALHOST, 0, proto, backend=backend, faults=pysock.Faults(**fields))


@pytest.mark.parametrize("field, value", [("reset_after", 1), ("reset_after_time", 1.0)])
def test_a_reset_needs_ip(tmp_path, field, value):
    with pytest.raises(pysock.ConfigError, match="unix socket has no reset"):
        pysock.Server(path=str(tmp_path / "s"), faults=pysock.Faults(**{field: value}))


def test_toxicity_alone_is_no_fault():
    with pysock.Server(LOCALHOST, 0, faults=pysock.Faults(toxicity=0.5)) as srv:
        assert srv.faults is None


@pytest.mark.parametrize("sizes", [[20000], [1] * 50 + [19950], [7, 13, 4096, 15884]])
def test_corrupt_follows_the_stream_whatever_its_pieces(sizes):
    """The flips land on the same bytes however the stream is cut into
    reads: engines read in different sizes and must flip alike."""
    data = bytes(range(256)) * 79
    whole = Corrupter(11).apply(0.005, data[:20000])
    cutter, pieces, at = Corrupter(11), [], 0
    for n in sizes:
        pieces.append(cutter.apply(0.005, data[at:at + n]))
        at += n
    assert b"".join(pieces) == whole != data[:20000]
    assert all(bin(a ^ b).count("1") <= 1 for a, b in zip(whole, data))  # one bit a byte at most


@pytest.mark.parametrize("chance", [0.001, 0.05, 0.5])
def test_corrupt_flips_about_the_share_asked(chance):
    data = bytes(200_000)
    flipped = sum(1 for b in Corrupter(1).apply(chance, data) if b)
    assert 0.8 * chance * len(data) <= flipped <= 1.2 * chance * len(data)


def test_toxicity_spares_about_the_share_asked():
    faults = pysock.Faults(latency=0.1, toxicity=0.3)
    hit = sum(not spared(faults, 7, n) for n in range(1, 5001))
    assert 0.27 * 5000 <= hit <= 0.33 * 5000
    assert not any(spared(pysock.Faults(latency=0.1), 7, n) for n in range(1, 100))


def test_faults_must_be_faults():
    with pytest.raises(pysock.ConfigError, match=r"pysock\.Faults"):
        pysock.Server(LOCALHOST, 0, faults={"latency": 1})


def test_a_drawn_seed_is_reported_and_kept():
    with pysock.Server(LOCALHOST, 0, faults=pysock.Faults(latency=0.01)) as srv:
        seed = srv.faults.seed
        assert isinstance(seed, int) and 0 <= seed < 1 << 64
        assert srv.faults == pysock.Faults(latency=0.01, seed=seed)
    with pysock.Server(LOCALHOST, 0, faults=pysock.Faults(latency=0.01, seed=99)) as srv:
        assert srv.faults.seed == 99


def test_no_fault_set_is_no_faults():
    with pysock.Server(LOCALHOST, 0, faults=pysock.Faults(seed=3)) as srv:
        assert srv.faults is None
        srv.set_faults(pysock.Faults(stall=True))
        assert srv.faults.stall
        srv.set_faults(None)
        assert srv.faults is None


def test_set_faults_before_start_and_not_after_stop():
    srv = pysock.Server(LOCALHOST, 0)
    srv.set_faults(pysock.Faults(latency=0.2))
    with srv:
        start = time.monotonic()
        assert pysock.request(b"x", srv.address) == b"X"
        assert time.monotonic() - start >= 0.2
    with pytest.raises(RuntimeError, match="stopped"):
        srv.set_faults(None)


@pytest.mark.parametrize("text, wanted", [
    ("latency=0.1", ("latency", 0.1)), ("bandwidth=1000", ("bandwidth", 1000)),
    ("stall=yes", ("stall", True)), ("stall=0", ("stall", False)), ("seed=0x10", ("seed", 16)),
    ("slice-delay=0.5", ("slice_delay", 0.5)),
])
def test_fault_options_parse_in_the_fields_units(text, wanted):
    assert parse_fault(text) == wanted


@pytest.mark.parametrize("args, said", [
    (["--fault", "latency"], "NAME=VALUE"),
    (["--fault", "speed=3"], "NAME=VALUE"),
    (["--fault", "latency=soon"], "not a number of seconds"),
    (["--fault", "drop=2"], "probability"),
    (["--tcp", "--fault", "drop=0.5"], "UDP only"),
    (["--udp", "--fault", "reset_after=5"], "TCP only"),
])
def test_serve_fault_usage_errors_exit_2_with_one_line(args, said):
    out = run_cli("serve", "0", *args)
    assert out.returncode == 2
    lines = out.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and said in lines[0]


def test_serve_with_faults_reports_the_seed_and_misbehaves():
    with CliServer("serve", "0", "--fault", "latency=0.2", "--fault", "drop=1", "--fault", "seed=5",
                   lines=2) as srv:
        tcp = srv.address("tcp")
        start = time.monotonic()
        assert pysock.request(b"late", tcp) == b"LATE"
        assert time.monotonic() - start >= 0.2
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            s.sendto(b"lost", srv.address("udp"))
            with pytest.raises(socket.timeout):
                s.recv(100)
        code, err = srv.interrupt()
    assert code in (0, 130)
    assert "faults: latency=0.2, seed=5" in err.decode()
    assert "faults: latency=0.2, drop=1.0, seed=5" in err.decode()


def test_an_unknown_fault_is_a_config_error_naming_the_fields():
    with pytest.raises(pysock.ConfigError, match=r"unknown fault 'latncy': the fields are latency, jitter"):
        pysock.Faults(latncy=0.1)


def test_bandwidth_stops_where_no_network_goes():
    """Past 2**40 bytes/s a bandwidth only overflowed C's pacing (2**62
    sent 1-byte pieces: a 2 MiB echo took 3.8 s)."""
    from pysock.faults import MAX_BANDWIDTH

    assert pysock.Faults(bandwidth=MAX_BANDWIDTH).bandwidth == 1 << 40
    with pytest.raises(pysock.ConfigError, match="bandwidth"):
        pysock.Faults(bandwidth=MAX_BANDWIDTH + 1)
