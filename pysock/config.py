"""Server configuration: every choice a server takes, checked in Python before
any C code runs, with one clear error for each mistake."""
from __future__ import annotations

import dataclasses
import errno
import functools
import importlib.util
import ipaddress
import math
import os
import re
import resource
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pysock.errors import ConfigError
from pysock.transform import TRANSFORMS as _TRANSFORMS
from pysock.unixpath import PATH_MAX as _UNIX_PATH_MAX
from pysock.urls import format_url

PROTOS = ("tcp", "udp")
FAMILIES = ("inet", "inet6", "unix")

TRANSFORMS = tuple(_TRANSFORMS)
BACKENDS = ("c", "python")
# The loop models each backend offers, per protocol; the first that can run
# here is the default.  C TCP defaults to epoll: in `pysock bench` it serves
# 32 connections with 1.8x the requests/s of the threads model at half its
# CPU per request, and one connection as fast (docs/performance.md).  The
# python backend's models are the pure-Python twins (pysock/engines/twins/).
MODELS = {
    ("c", "tcp"): ("epoll", "uring", "threads"),
    ("c", "udp"): ("loop", "uring"),
    ("python", "tcp"): ("threads", "loop", "asyncio", "uvloop"),
    ("python", "udp"): ("loop", "asyncio", "uvloop"),
}
# Models that need an optional package, and the package.
MODEL_NEEDS = {"uvloop": "uvloop"}


def model_available(model: str) -> bool:
    """Whether the optional package a model needs (if any) is installed."""
    package = MODEL_NEEDS.get(model)
    return package is None or importlib.util.find_spec(package) is not None


def available_models(backend: str, proto: str) -> tuple[str, ...]:
    """The models of backend for proto that can run here."""
    return tuple(m for m in MODELS[(backend, proto)] if model_available(m) and _built(backend, m))


def default_model(backend: str, proto: str) -> str:
    """The model a server gets when it names none: the first that can run here."""
    return available_models(backend, proto)[0]


def _built(backend: str, model: str) -> bool:
    """Whether this build of the C library, and for uring the running
    kernel, has what the model needs."""
    if backend != "c":
        return True
    if model == "uring":
        return uring_refused() is None
    return model != "epoll" or "epoll" in c_features()

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 12000  # the tutorials' port; the CLI's default (the API's is 0)


@dataclass(frozen=True)
class ServerConfig:
    """What a server is asked to be.  Build it with :meth:`validated`."""

    host: str = DEFAULT_HOST
    port: int = 0
    proto: str = "tcp"
    family: str = "inet"
    path: str | None = None
    transform: str = "upper"
    backend: str = "c"
    model: str | None = None
    workers: int = 1
    spin_us: int = 0
    backlog: int = 0  # 0: the system's SOMAXCONN
    max_conns: int = 1000
    idle_timeout: float | None = 300.0  # seconds; 0 or None: never
    send_timeout: float | None = 10.0  # seconds an echo may stay unsent; 0 or None: never
    max_unsent: int = 1 << 20  # bytes of echo a client may leave unread
    ipv6_only: bool | None = None  # IPv6 address: None is True but for "::", which serves IPv4 too

    @classmethod
    def from_options(cls, **options: object) -> ServerConfig:
        """A checked configuration from keyword options; an unknown keyword
        is a ConfigError that lists the known ones."""
        check_known(options, OPTIONS)
        return cls(**options).validated()  # type: ignore[arg-type]

    def validated(self) -> ServerConfig:
        """Return a checked copy, with the family and the model filled in
        and a unix path made absolute."""
        _check_choice("proto", self.proto, PROTOS)
        _check_choice("transform", self.transform, TRANSFORMS)
        _check_choice("backend", self.backend, BACKENDS)
        for name, (low, high) in INT_RANGES.items():
            _check_int(name, getattr(self, name), low, high)
        for name in SECONDS:
            _check_seconds(name, getattr(self, name))
        path = _absolute(self.path)
        family = _family(self.family, self.host, path)
        models = self.model_choices()
        model = self.model if self.model is not None else self.default_model()
        _check_choice(f"model for {self.backend} {self.proto}", model, models)
        _check_platform(self.backend, self.proto, model, self.workers, family)
        if not model_available(model):
            package = MODEL_NEEDS[model]
            raise ConfigError(f"model {model!r} needs {package}, which is not installed: "
                              f"pip install {package} (or pip install 'pysock-echo[{package}]')")
        return dataclasses.replace(self, family=family, path=path, model=model,
                                   ipv6_only=_ipv6_only(family, self.host, self.ipv6_only))

    def model_choices(self) -> tuple[str, ...]:
        """The models this backend offers for this protocol."""
        return MODELS[(self.backend, self.proto)]

    def default_model(self) -> str:
        """The model when none is named: the first that can run here."""
        return default_model(self.backend, self.proto)

    def url(self, host: str, port: int) -> str:
        """The ready line: tcp://HOST:PORT, udp://[::1]:PORT, unix://PATH."""
        return format_url(self.proto, self.path if self.path is not None else (host, port))


def lift_descriptor_limit(needed: int) -> int:
    """Raise this process's soft descriptor limit (RLIMIT_NOFILE) as far as
    the hard one allows, when fewer than needed descriptors may be open;
    the limit it ends at (RLIM_INFINITY: none)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def check_known(options: Iterable[str], known: Sequence[str]) -> None:
    """ConfigError for keywords not among known, listing the known ones."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown server option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))}: the options are {', '.join(known)}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} {value} is out of range {low}-{high}")


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    low, high = SECONDS[name]
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or not low <= value <= high):
        raise ConfigError(f"{name} must be a number of seconds from {low:.0f} to {high:.0f} "
                          f"(0: never), not {value!r}")


def c_features() -> frozenset[str]:
    """What this build of the C library can do: "epoll", "mmsg" (batched UDP),
    "reuseport" (workers > 1).  Linux has them all."""
    from pysock._core import lib

    bits = lib.ps_features()
    names = {"epoll": lib.PS_FEAT_EPOLL, "mmsg": lib.PS_FEAT_MMSG, "reuseport": lib.PS_FEAT_REUSEPORT,
             "uring": lib.PS_FEAT_URING}
    return frozenset(name for name, bit in names.items() if bits & bit)


# Why the running kernel refuses the uring model, by the error io_uring_setup
# (or registering a buffer ring) gave.
_URING_REFUSED = {
    errno.ENOSYS: "this kernel has no io_uring",
    errno.EPERM: "the kernel refuses io_uring here (sysctl kernel.io_uring_disabled, "
                 "or a seccomp filter such as a container's)",
    errno.EACCES: "the kernel refuses io_uring to this user (sysctl kernel.io_uring_disabled=1 "
                  "and not in kernel.io_uring_group)",
    errno.EINVAL: "this kernel's io_uring is too old (Linux 6.0 or later is needed)",
    errno.EOPNOTSUPP: "this kernel's io_uring is too old (Linux 6.0 or later is needed)",
}


@functools.cache
def uring_refused() -> str | None:
    """Why model "uring" cannot run here, or None if it can: this build
    must have it, and the running kernel must let this process use it."""
    if "uring" not in c_features():
        return ("this build of pysock has no io_uring (it was built without Linux 6.1's "
                "<linux/io_uring.h>)")
    from pysock._core import lib

    rc = lib.ps_uring_probe()
    if rc == 0:
        return None
    return _URING_REFUSED.get(-rc, f"io_uring_setup failed: {os.strerror(-rc)}")


def _check_platform(backend: str, proto: str, model: str, workers: int, family: str) -> None:
    if workers > 1 and family == "unix":
        raise ConfigError("workers > 1 needs an IP address (each worker binds the port): "
                          "a unix socket has one worker")
    if backend != "c":
        return
    if model == "epoll" and "epoll" not in c_features():
        raise ConfigError("model 'epoll' needs Linux's epoll, which this build of pysock "
                          "lacks: use model='threads'")
    if model == "uring" and (why := uring_refused()) is not None:
        other = "epoll" if proto == "tcp" else "loop"
        raise ConfigError(f"model 'uring' cannot run: {why}; use model='{other}'")
    if workers > 1 and "reuseport" not in c_features():
        raise ConfigError("workers > 1 needs SO_REUSEPORT, which this build of pysock "
                          "lacks: use workers=1")


def _ipv6_only(family: str, host: str, asked: object) -> bool | None:
    """Whether an IPv6 server serves IPv6 alone.  Unless asked, "::" (every
    address) serves IPv4 too, as Python's http.server does, and any other
    address IPv6 alone.  None for the other families."""
    if asked is not None and not isinstance(asked, bool):
        raise ConfigError(f"ipv6_only must be True, False or None, not {asked!r}")
    if family != "inet6":
        if asked:
            raise ConfigError(f"ipv6_only is for an IPv6 address, not {host!r}")
        return None
    return asked if asked is not None else not ipaddress.ip_address(host).is_unspecified


def _absolute(path: object) -> str | None:
    """The unix path, absolute: the server binds it and later removes it,
    and a chdir in between must not make that another file."""
    if path is None:
        return None
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)  # any bytes: kept as str the way os does (surrogateescape)
    if not isinstance(path, str) or not path:
        raise ConfigError(f"a unix socket needs a path, not {path!r}")
    try:
        raw = os.fsencode(path)
    except UnicodeError:
        raise ConfigError(f"unix socket path {path!r} has characters no file name can hold") from None
    if b"\0" in raw:
        raise ConfigError(f"unix socket path {path!r} holds a NUL byte")
    return os.path.abspath(path)


def _family(family: str, host: str, path: str | None) -> str:
    if path is not None or family == "unix":
        if path is None:
            raise ConfigError("a unix socket needs a path")
        if len(os.fsencode(path)) > _UNIX_PATH_MAX:
            raise ConfigError(f"unix socket path {path!r} is {len(os.fsencode(path))} bytes long; "
                              f"at most {_UNIX_PATH_MAX} fit in sockaddr_un")
        return "unix"
    _check_choice("family", family, FAMILIES)
    return host_family(host)


# A host name: dot-separated labels of letters, digits, '-' (and '_', which
# some local names use), 253 bytes in all.  A label over DNS's 63 bytes is
# left to the resolver, which refuses it in both backends (ResolveError).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]+(?<!-)")


def host_family(host: object) -> str:
    """"inet6" for an IPv6 address, "inet" for an IPv4 address or a host
    name (resolved as C's gethostbyname does, to IPv4).  Both backends take
    exactly these strings: numbers in the other forms inet_aton knows
    ("0x7f.1", "2130706433") are refused, since getaddrinfo reads them as
    addresses and gethostbyname_r as names."""
    if not isinstance(host, str) or not host:
        raise ConfigError(f"host must be an IP address or a host name, not {host!r}")
    if "%" in host:
        raise ConfigError(f"host {host!r} names a scope (an interface after %): pysock binds addresses "
                          f"without one (use {host.partition('%')[0]!r})")
    try:
        return "inet6" if ipaddress.ip_address(host).version == 6 else "inet"
    except ValueError:
        pass
    if _looks_numeric(host):
        raise ConfigError(f"host {host!r} is not an address pysock takes: write an IPv4 address "
                          f"as four decimal numbers (127.0.0.1)")
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ConfigError(f"host {_shorten(host)!r} is neither an IP address nor a host name "
                          f"(labels of letters, digits and '-', 253 bytes in all)")
    return "inet"


def _looks_numeric(host: str) -> bool:
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return False
    return True


def _shorten(text: str, most: int = 60) -> str:
    return text if len(text) <= most else text[:most] + "..."


def is_loopback(host: str) -> bool:
    """Whether host (an address, a name or a unix path) reaches this
    machine only.  A name counts as reaching others unless it is localhost."""
    if host.startswith("/"):
        return True  # a unix socket path
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.rstrip(".").lower() == "localhost"


# The whole-number options and their ranges: what every engine can hold (C
# keeps them in an int or a size_t).
INT_RANGES = {
    "port": (0, 65535),
    "workers": (1, 1024),
    "spin_us": (0, 1_000_000),
    "backlog": (0, 1 << 16),
    "max_conns": (1, 1 << 20),
    "max_unsent": (1, 1 << 40),
}
# The durations, in seconds: C keeps them as an int of milliseconds.
SECONDS = {
    "idle_timeout": (0.0, 1_000_000.0),
    "send_timeout": (0.0, 1_000_000.0),
}
OPTIONS = tuple(f.name for f in dataclasses.fields(ServerConfig))


def millis(seconds: float | None) -> int:
    """Seconds as the C library's milliseconds (0: never)."""
    return 0 if not seconds else max(1, round(seconds * 1000))
