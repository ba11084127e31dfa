"""``python -m export.serve``: the development model server's command, kept as an alias.

The server is the package :mod:`export.devserver` (``python -m export.devserver`` runs the
same command); this module runs its command line and keeps its public names importable
from here (``from export.serve import BackgroundServer``).
"""

from __future__ import annotations

import sys

from export import devserver
from export.devserver import *  # noqa: F403 (the package's public names, listed in __all__)
from export.devserver import main

__all__ = devserver.__all__

if __name__ == "__main__":
    sys.exit(main())
