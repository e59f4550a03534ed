"""``python -m hw.timing``: the timing report's entry point, where users know it; the tool itself
is :mod:`flow.timing`."""

import sys

from flow.timing import main

if __name__ == "__main__":
    sys.exit(main())
