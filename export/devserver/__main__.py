"""``python -m export.devserver``: run the development model server."""

import sys

from export.devserver.cli import main

if __name__ == "__main__":
    sys.exit(main())
