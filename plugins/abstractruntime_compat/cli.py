"""``python -m abstractruntime.cli``: the ``abstractruntime`` command line (it lives in the ``cli`` plugin)."""

import sys

from abstractruntime_cli.main import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
