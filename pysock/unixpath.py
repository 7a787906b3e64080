"""AF_UNIX socket paths: claiming one for a server.

A socket file left behind by a server that died is replaced; a path a live
server answers on is refused, and so is anything that is not a socket,
which is never deleted."""
from __future__ import annotations

import errno
import os
import socket
import stat

# sun_path holds 108 bytes, the terminating NUL included.
PATH_MAX = 107


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
    os.unlink(path)  # stale: nobody listens on it any more


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
