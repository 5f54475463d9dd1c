"""``python -m tendril.services.paramserver --config-json FILE`` (or ``--config worker.toml``)."""

from tendril.services.core.process import service_main
from tendril.services.paramserver.service import build

if __name__ == "__main__":
    service_main("paramserver", build)
