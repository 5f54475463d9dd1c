"""``python -m tendril.paramserver --config-json FILE`` (or ``--config worker.toml``)."""

from tendril.core.process import service_main
from tendril.paramserver.service import build

if __name__ == "__main__":
    service_main("paramserver", build)
