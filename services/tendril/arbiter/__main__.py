"""``python -m tendril.arbiter --config-json FILE``: the Arbiter process."""

from tendril.arbiter.service import build
from tendril.core.process import service_main

if __name__ == "__main__":
    service_main("arbiter", build)
