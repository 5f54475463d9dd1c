"""``python -m tendril.lab run|up|measure|clean`` (what `tendril lab` does)."""

import sys

from tendril.lab.cli import main

sys.exit(main())
