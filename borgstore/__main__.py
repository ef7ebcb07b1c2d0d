"""``python -m borgstore``: the ``borgstore`` command (borgstore._cli)."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
