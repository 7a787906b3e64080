"""AF_UNIX socket paths: claiming one for a server, and giving it back.

A socket file left behind by a server that died is replaced; a path a live
server answers on is refused, and so is anything that is not a socket,
which is never deleted.  Claiming and binding happen under a lock on the
directory, so two servers racing for one path end with exactly one owner
(the other gets EADDRINUSE).  A server removes its path when it stops only
if the file there is still the one it bound (same device and inode)."""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable, TypeVar

# sun_path holds 108 bytes, the terminating NUL included.
PATH_MAX = 107

Identity = tuple[int, int]  # (st_dev, st_ino) of the socket file a server bound
T = TypeVar("T")


def bind_claimed(path: str, bind: Callable[[], T]) -> tuple[T, Identity]:
    """Claim path, run bind() (which binds a socket there, and listens), and
    return what it returned with the identity of the file it made.  Other
    pysock servers claiming a path in the same directory wait meanwhile."""
    with _directory_locked(path):
        claim(path)
        try:
            bound = bind()
        except BaseException:  # a signal (Ctrl-C) may come after the bind itself
            _unlink_socket(path)
            raise
        try:
            return bound, identity(path)
        except BaseException:
            close = getattr(bound, "close", None)
            if close is not None:
                close()
            _unlink_socket(path)
            raise


def _unlink_socket(path: str) -> None:
    """Under the directory's lock, after claim(): a socket file at path is
    the one this bind made."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


def claim(path: str) -> None:
    """Make path free for a server to bind, or raise an error saying why not."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(errno.EEXIST, f"cannot serve unix://{path}: the path exists and is not a "
                                            f"socket (pysock will not delete it)")
    if in_use(path):
        raise OSError(errno.EADDRINUSE, f"cannot serve unix://{path}: a live server is using it")
    try:
        os.unlink(path)  # stale: nobody listens on it any more
    except FileNotFoundError:
        pass  # someone who does not take the lock removed it first: free either way


def identity(path: str) -> Identity:
    st = os.lstat(path)
    return st.st_dev, st.st_ino


def release(path: str, bound: Identity | None) -> None:
    """Remove path if it is still the socket file this server bound; a file
    that replaced it (another server's, or not a socket) stays."""
    if bound is None:
        return
    try:
        if identity(path) == bound:
            os.unlink(path)
    except FileNotFoundError:
        pass


def in_use(path: str) -> bool:
    """Whether a server answers on the socket file at path: only a refused
    connection means nobody is there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)  # a live stream server with a full backlog keeps us waiting
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return False
        except OSError:
            return True  # EPROTOTYPE: a datagram server; a timeout: a busy one
        return True


@contextmanager
def _directory_locked(path: str) -> Iterator[None]:
    """An exclusive flock on path's directory: no file is left behind, and
    the lock goes with the process however it ends."""
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot serve unix://{path}: {os.strerror(exc.errno or 0)} "
                                 f"(its directory)") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
