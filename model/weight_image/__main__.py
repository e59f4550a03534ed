"""``python -m model.weight_image``: :func:`model.weight_image.report.main`."""

import sys

from model.weight_image.report import main

if __name__ == "__main__":
    sys.exit(main())
