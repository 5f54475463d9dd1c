"""``python -m tendril.data_node prepare|serve ...``: the data node without the console script.

# NOTE: the data node is not a worker service (no WorkerConfig, no supervisor), so its entry
# is the `tendril data` command group rather than service_main.
"""

import sys

from tendril.data_node.cli import main

sys.exit(main())
