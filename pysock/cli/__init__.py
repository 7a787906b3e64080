"""The command line: ``pysock serve``, ``pysock proxy``, ``pysock send``, ``pysock chat``,
``pysock talk`` and friends, one module per command (pysock/cli/*.py).

Building the parser imports no command's dependencies: each command imports
what it needs when it runs, so ``pysock --help``, ``--version``, ``send`` and
``serve --backend python`` work without the compiled extension.  Every
failure becomes one line on stderr and an exit code: 1 for a runtime error,
2 for a usage error, 130 after Ctrl-C; never a traceback."""
from __future__ import annotations

import argparse
import os
import sys
import threading
import warnings
from collections.abc import Sequence

from pysock import __version__
from pysock.cli import bench, chat, layout, load, proxy, resolve, send, serve, signals, talk
from pysock.cli.common import EXIT_RUNTIME, EXIT_SIGINT, EXIT_USAGE, Parser, UsageError
from pysock.errors import ConfigError, PysockError

COMMANDS = (serve, proxy, send, load, bench, layout, resolve, chat, talk)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="pysock", description="Echo servers with a C hot path, and lessons on the socket structs.")
    parser.add_argument("--version", action="version", version=f"pysock {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    print(f"pysock: warning: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None, *, program: bool = False) -> int:
    """Run one command; its exit code.  program: this is the process's own
    run (python -m pysock, the pysock command), which ends when main()
    returns: the signal handlers stay (a late signal is ignored while the
    interpreter exits).  Otherwise the handlers from before come back."""
    restore = signals.install() if threading.current_thread() is threading.main_thread() else None
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return EXIT_SIGINT
    finally:
        if restore is not None and not program:
            restore()


def _main(argv: Sequence[str] | None) -> int:
    warnings.showwarning = _show_warning
    try:
        with signals.deferred():  # the parser imports a little: a Ctrl-C waits until it is built
            args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"pysock: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except BrokenPipeError:  # stdout closed early (| head): what was wanted was printed
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0
    except KeyboardInterrupt:
        return EXIT_SIGINT
    except (UsageError, ConfigError) as exc:
        print(f"pysock: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PysockError, OSError) as exc:
        print(f"pysock: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except ImportError as exc:  # the compiled extension is missing: the message names the fix
        print(f"pysock: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
