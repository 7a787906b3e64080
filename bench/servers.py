"""The server process the micro-benchmarks talk to (bench_servers.py).

bench/ holds pytest-benchmark micro-benchmarks, run only when named
(``python -m pytest bench/``): pyproject's testpaths is tests/, and its
python_files adds the bench_*.py pattern that collects them here."""
from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """``python -m pysock serve 0 --PROTO`` in a process of its own, so a
    Python server does not share this process's GIL with the client."""

    def __init__(self, proto: str, backend: str, model: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, "-m", "pysock", "serve", "0", f"--{proto}",
                                      "--backend", backend, "--model", model],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith(f"{proto}://"):
            self.close()
            raise RuntimeError(f"{backend}/{model} server did not start: {line!r}")
        host, _, port = line[len(proto) + 3:].rpartition(":")
        self.address = (host.strip("[]"), int(port))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc.stdout.close()
