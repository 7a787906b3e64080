"""python -m pysock: the same as the pysock command."""
import sys

from pysock.cli import main

sys.exit(main())
