"""``python -m tendril.lease --config-json FILE``: the LeaseService process."""

from tendril.core.process import service_main
from tendril.lease.service import build

if __name__ == "__main__":
    service_main("lease", build)
