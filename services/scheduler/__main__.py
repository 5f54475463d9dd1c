"""``python -m tendril.services.scheduler run --config job.toml`` (what `tendril scheduler run` does)."""

import sys

from tendril.services.scheduler.cli import main

sys.exit(main())
