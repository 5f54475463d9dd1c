"""``python -m tendril.scheduler run --config job.toml`` (what `tendril scheduler run` does)."""

import sys

from tendril.scheduler.cli import main

sys.exit(main())
