"""The shape of the code, as a newcomer relies on it: no import or call
cycles, the pure-Python side and the CLI working without the compiled
extension, and a Server whose signature says what it takes."""
from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, cli_env

import pysock

PACKAGE = ROOT / "pysock"
CSRC = ROOT / "csrc"


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle in graph as a list of nodes (first == last), or []."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_nodes(tree: ast.Module, top_level_only: bool) -> list[ast.AST]:
    """The statements that run: an ``if TYPE_CHECKING:`` block is for type
    checkers alone, so its imports are no edge."""
    def checking_only(node: ast.AST) -> bool:
        return isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"

    out: list[ast.AST] = []
    todo: list[ast.AST] = [n for n in tree.body if not checking_only(n)]
    while todo:
        node = todo.pop()
        out.append(node)
        if not top_level_only:
            todo.extend(n for n in ast.iter_child_nodes(node) if not checking_only(n))
    return out


def python_imports(top_level_only: bool = False) -> dict[str, set[str]]:
    """Every pysock module and the pysock modules it imports: at the top or
    inside a function alike, or (top_level_only) what importing it loads."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in runtime_nodes(tree, top_level_only):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def test_no_python_module_imports_itself_in_a_loop():
    assert find_cycle(python_imports()) == []


def layer(module: str) -> str:
    """The layer of a pysock module: the core (the top-level modules and
    the engines), one of the layers above it, or the command line on top.
    The package itself (pysock/__init__.py) only names what it exports."""
    parts = module.split(".")
    if parts[:2] in (["pysock", "cli"], ["pysock", "__main__"]):
        return "cli"
    if len(parts) > 1 and parts[1] in ("apps", "lessons", "bench"):
        return parts[1]
    return "core"


def test_the_layers_use_the_core_and_never_the_reverse():
    """The core never imports apps, lessons, bench or the CLI; those three
    use the core (and themselves), never each other or the CLI."""
    for module, targets in python_imports().items():
        if module == "pysock":
            continue
        for target in targets - {"pysock"}:
            here, there = layer(module), layer(target)
            allowed = {"core", here} if here != "cli" else {"core", "apps", "lessons", "bench", "cli"}
            assert there in allowed, f"{module} ({here}) imports {target} ({there})"


def test_at_most_fourteen_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 14, top


def test_importing_the_twins_the_engine_layer_or_the_cli_loads_no_c():
    graph = python_imports(top_level_only=True)

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    for start in ("pysock.engines.twins", "pysock.engines.twins.blocking", "pysock.engines.twins.aio",
                  "pysock.engines.base", "pysock.server",
                  "pysock.config", "pysock.client", "pysock.cli"):
        assert "pysock._core" not in reach(start), start


C_FUNCTION = re.compile(r"^(?!static)[a-z].*?\b(ps_{1,2}\w+)\s*\(", re.M)


def c_calls() -> dict[str, set[str]]:
    """csrc/*.c and the other csrc files whose functions each calls."""
    sources = {p.name: p.read_text() for p in CSRC.glob("*.c")}
    defined = {fn: name for name, text in sources.items() for fn in C_FUNCTION.findall(text)}
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, text in sources.items():
        for fn, where in defined.items():
            if where != name and re.search(rf"\b{fn}\s*\(", text):
                graph[name].add(where)
    return graph


def test_no_two_c_files_call_each_other_in_a_loop():
    graph = c_calls()
    for model in ("tcp.c", "epoll.c", "uring.c", "udp.c"):  # the models use the shared helpers, never server.c
        assert "loop.c" in graph[model] and "server.c" not in graph[model], (model, graph[model])
    for model in ("epoll.c", "uring.c"):  # the event loops run on one skeleton, which calls neither
        assert "evloop.c" in graph[model] and model not in graph["evloop.c"], (model, graph[model])
    assert find_cycle(graph) == []


NO_EXTENSION = "import sys; sys.modules['pysock._pysock'] = None\n"


def run_without_extension(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_EXTENSION + code], capture_output=True, text=True,
                          timeout=30, env=cli_env())


def test_the_python_backend_serves_without_the_extension():
    result = run_without_extension(
        "import pysock\n"
        "with pysock.Server(backend='python', model='threads') as srv:\n"
        "    print(pysock.request(b'no c here', srv.address).decode())\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "NO C HERE\n"


CLI = "from pysock.cli import main; sys.exit(main(sys.argv[1:]))\n"


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["serve", "--help"], ["layout", "--help"],
                                  ["bench", "--help"]])
def test_the_cli_answers_without_the_extension(args):
    result = subprocess.run([sys.executable, "-c", NO_EXTENSION + CLI, *args], capture_output=True, text=True,
                            timeout=30, env=cli_env())
    assert result.returncode == 0 and result.stdout and not result.stderr


def test_a_command_that_needs_c_says_so_in_one_line():
    result = subprocess.run([sys.executable, "-c", NO_EXTENSION + CLI, "layout"], capture_output=True,
                            text=True, timeout=30, env=cli_env())
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "C extension is not built" in result.stderr and "pip install" in result.stderr


def test_version():
    result = subprocess.run([sys.executable, "-m", "pysock", "--version"], capture_output=True, text=True,
                            timeout=30, env=cli_env())
    assert result.stdout == f"pysock {pysock.__version__}\n"


def test_server_signature_names_every_option_with_its_default():
    from pysock.config import OPTIONS, ServerConfig

    params = inspect.signature(pysock.Server).parameters
    for option in OPTIONS:
        assert option in params, option
        if option not in ("host", "port", "proto", "model", "path"):
            assert params[option].default == getattr(ServerConfig, option), option
    assert "max_unsent" in (pysock.Server.__init__.__doc__ or "")


def test_the_package_says_it_is_typed():
    assert (PACKAGE / "py.typed").exists()


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:5", "udp://[::1]:65535", "unix:///tmp/x.sock", "tcp://h:0"])
def test_the_address_url_round_trips(url):
    from pysock.urls import format_url, parse_url

    assert format_url(*parse_url(url)) == url


@pytest.mark.parametrize("bad", ["127.0.0.1:5", "tcp://::1:5", "tcp://h:99999", "ftp://h:1", "tcp://h:x"])
def test_a_bad_url_is_refused_saying_why(bad):
    from pysock.urls import parse_url

    with pytest.raises(ValueError):
        parse_url(bad)


def test_send_takes_back_what_serve_prints():
    from support import CliServer, run_cli

    with CliServer("serve", "0", lines=2) as server:
        for url in server.urls:
            result = run_cli("send", url, "round", "trip")
            assert result.returncode == 0 and result.stdout == b"ROUND TRIP\n", (url, result.stderr)


def test_the_package_exports_exactly_its_lazy_names():
    assert sorted(pysock.__all__) == sorted(pysock._EXPORTS)
    for name in pysock.__all__:
        assert getattr(pysock, name).__name__ == name


def test_importing_bench_or_the_cli_loads_no_c_and_probes_nothing():
    """pysock bench's modules load the C extension (and ask the kernel about
    io_uring) when a run needs them, not when they are imported: --help,
    --list's parsing and a python-backend run start without them."""
    code = ("import sys, pysock.bench.measure, pysock.bench.report, pysock.cli\n"
            "print('pysock._pysock' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=30)
    assert out.stdout.strip() == "False", out.stderr


def test_the_wheel_lists_every_package():
    """[tool.setuptools] names the packages one by one: a new one left out
    installs without it (pysock.proxy once did)."""
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    listed = set(re.findall(r'"(pysock(?:\.\w+)*)"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    on_disk = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")}
    assert listed == on_disk
