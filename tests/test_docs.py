"""The examples in README.md and on the docs pages run as written.

Every ```python block is run: one that defines tests (``def test_``) as a
user's own pytest file, with pysock's plugin from its entry point, and every
other block as a script in a fresh interpreter.  A block that cannot run
here says so in an HTML comment on the line before it: ``<!-- not run:
why -->``.  The links between the pages and from the README lead somewhere.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import cli_env

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs"
TEST_DEF = re.compile(r"^(?:async )?def test_", re.M)
FENCE = re.compile(r"(?:<!--(?P<note>[^>]*)-->\n)?```python\n(?P<code>.*?)```", re.S)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted(PAGES.glob("*.md"))]


def examples() -> list[tuple[str, str]]:
    """(an id naming the page and the block's line, the code) for every block that runs."""
    found = []
    for doc in documents():
        text = doc.read_text()
        for match in FENCE.finditer(text):
            if (match.group("note") or "").strip().startswith("not run"):
                continue
            line = text.count("\n", 0, match.start("code")) + 1
            found.append((f"{doc.relative_to(ROOT)}:{line}", match.group("code")))
    return found


EXAMPLES = examples()
SCRIPTS = [pytest.param(code, id=name) for name, code in EXAMPLES if "def test_" not in code]
TEST_FILES = [pytest.param(code, id=name) for name, code in EXAMPLES if "def test_" in code]


def test_the_docs_have_examples_of_both_kinds():
    assert len(SCRIPTS) >= 3 and len(TEST_FILES) >= 3, [name for name, _ in EXAMPLES]


@pytest.mark.parametrize("code", SCRIPTS)
def test_a_script_example_runs(code, tmp_path):
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env=cli_env())
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("code", TEST_FILES)
def test_a_test_example_passes_as_a_users_test_file(code, pytester):
    pytester.makepyfile(test_example=code)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == len(TEST_DEF.findall(code))
    assert set(outcomes) <= {"passed", "seconds"}, result.stdout.str()


LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)(#[^)\s]*)?\)")


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file(doc):
    missing = [target for target, _ in LINK.findall(doc.read_text())
               if not (doc.parent / target).exists()]
    assert not missing, f"{doc.name} links to {missing}"
