"""``python -m kmexp.report SWEEP_DIR``."""

import sys

from kmexp.report.cli import main

sys.exit(main())
