"""``python -m tendril.services.arbiter --config-json FILE``: the Arbiter process."""

from tendril.services.arbiter.service import build
from tendril.services.core.process import service_main

if __name__ == "__main__":
    service_main("arbiter", build)
