"""``python -m tendril.gateway --config-json FILE``: the supervisor's embedded gateway."""

from tendril.core.process import service_main
from tendril.gateway.service import build

if __name__ == "__main__":
    service_main("gateway", build)
