"""Checking timestamped replies: every stamp must be a ctime() taken while the
test ran; with the times taken out, the reply must equal the reference."""
from __future__ import annotations

import re
import time

# ctime(): "Sun Nov 22 01:56:25 2026" (the day of the month padded with a space)
STAMP = re.compile(rb"at ([A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}) :")


class Window:
    """The wall-clock span a test's replies must have been stamped in."""

    def __init__(self) -> None:
        self.start = time.time()

    def check(self, reply: bytes) -> bytes:
        """The reply with every stamp checked and replaced by "at T :"."""
        end = time.time()
        stamps = STAMP.findall(reply)
        for when in stamps:
            t = time.mktime(time.strptime(when.decode(), "%a %b %d %H:%M:%S %Y"))
            # ctime has whole seconds: allow the second the window started in
            assert int(self.start) - 1 <= t <= end + 1, (when, self.start, end)
        return STAMP.sub(b"at T :", reply)


def unstamped(reply: bytes) -> bytes:
    """The reply with its times taken out, unchecked (for the reference)."""
    return STAMP.sub(b"at T :", reply)
