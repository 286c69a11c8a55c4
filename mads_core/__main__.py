"""``python -m mads_core`` entry point."""

import sys

from mads_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
