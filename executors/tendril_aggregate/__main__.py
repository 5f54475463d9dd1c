"""Entry point: ``python -m tendril_aggregate --socket PATH``."""

import sys

from tendril_aggregate.main import main

if __name__ == "__main__":
    sys.exit(main())
