"""``python -m hw.build``: the build's entry point, where users know it; the tool itself is
:mod:`flow.build` (the build and report tools live in flow/, not beside the RTL)."""

import sys

from flow.build import main

if __name__ == "__main__":
    sys.exit(main())
