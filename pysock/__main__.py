"""python -m pysock, and the pysock command: the same as pysock.cli.main,
with a Ctrl-C that comes while Python is still importing it ending as one
that comes later does (exit 130, no traceback): until main() takes the
signals over, a Ctrl-C is only noted."""
import _signal  # the builtin under signal.py, which would take a while to import first
import sys


def run() -> int:
    noted: list[int] = []
    try:
        previous = _signal.signal(_signal.SIGINT, lambda signum, frame: noted.append(signum))
        try:
            from pysock.cli import main
        finally:
            _signal.signal(_signal.SIGINT, previous)
        return 130 if noted else main(program=True)
    except KeyboardInterrupt:  # between the two handlers
        return 130


if __name__ == "__main__":
    sys.exit(run())
