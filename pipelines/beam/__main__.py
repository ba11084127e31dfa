"""``python -m pipelines.beam``: see :mod:`pipelines.beam.cli`."""

import sys

from pipelines.beam.cli import main

if __name__ == "__main__":
    sys.exit(main())
