"""The micro-benchmarks time one process at a time: pyproject's "-n auto"
and "--benchmark-disable" (for the test suite, which has no benchmarks) are
turned off here."""
from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config) -> None:
    config.option.benchmark_disable = False
    if getattr(config.option, "numprocesses", None):
        config.option.numprocesses = 0
        config.option.dist = "no"
