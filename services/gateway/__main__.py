"""``python -m tendril.services.gateway --config-json FILE``: the supervisor's embedded gateway."""

from tendril.services.core.process import service_main
from tendril.services.gateway.service import build

if __name__ == "__main__":
    service_main("gateway", build)
