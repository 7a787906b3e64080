"""Run pytest, and re-run once, alone, any test whose process crashed.

    python .ci/rerun_crashes.py PYTHON [PYTEST OPTIONS...]

(options only: the tests are pyproject's testpaths, and a re-run names the
crashed tests alone).

For Debian's PyPy 7.3.11 (.ci/interpreters), which now and then crashes in
its own JIT-compiled code (the closing note of the suite issue and the
PyPy section of docs/interpreters.md say what was found).  The tests run in several
processes (pytest-xdist), so a crash takes down one worker, whose test is
reported as "worker 'gwN' crashed while running 'TEST'"; the run goes on.

- Any ordinary failure fails this run, as it would without this script.
- A crashed test is named, with the fatal error its process printed (the
  whole output is shown above it), then run again once in a process of its
  own: if it passes there, the run passes, and the crash stays on the
  record in this output; if it crashes or fails again, the run fails.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

CRASHED = re.compile(r"worker '(gw\d+)' crashed while running '([^']+)'")


def failures(junit: str) -> tuple[list[str], list[str]]:
    """(crashed test ids, other failed test ids) from a JUnit XML report."""
    crashed, failed = [], []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for problem in list(case.iter("failure")) + list(case.iter("error")):
            found = CRASHED.search(problem.get("message", "") + (problem.text or ""))
            if found:
                crashed.append(found.group(2))
            else:
                failed.append(f"{case.get('classname')}::{case.get('name')}")
    return sorted(set(crashed)), failed


def fatal_errors(output: str, most: int = 40) -> str:
    """The interpreter's own crash reports in a run's output: each "Fatal
    Python error" line and what follows it (the stacks), up to most lines."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if "Fatal Python error:" in line]  # after a progress dot
    return "\n\n".join("\n".join(lines[i:i + most]) for i in starts) or "(no fatal error report was printed)"


def without_workers(args: list[str]) -> list[str]:
    """args without -n N / -nN: a re-run is one process."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "-n":
            skip = True
        elif not a.startswith("-n"):
            out.append(a)
    return out


def main(argv: list[str]) -> int:
    python, args = argv[0], argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        junit = os.path.join(tmp, "junit.xml")
        run = subprocess.run([python, "-X", "faulthandler", "-m", "pytest", *args, f"--junitxml={junit}"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sys.stdout.write(run.stdout)
        if run.returncode == 0:
            return 0
        if not os.path.exists(junit):
            return run.returncode  # pytest itself failed (usage, collection)
        crashed, failed = failures(junit)
    if failed or not crashed:
        return run.returncode
    print(f"\nrerun_crashes: {len(crashed)} test(s) crashed their process:")
    for test in crashed:
        print(f"  {test}")
    print(fatal_errors(run.stdout))
    again = subprocess.run([python, "-X", "faulthandler", "-m", "pytest", "-n", "0", "-p", "no:cacheprovider",
                            *without_workers(args), *crashed])
    if again.returncode != 0:
        print("rerun_crashes: the crashed test(s) failed again on their own: the run fails")
        return again.returncode
    print("rerun_crashes: the crashed test(s) passed on their own; the crash above is on the record")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
