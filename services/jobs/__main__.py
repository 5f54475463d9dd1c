"""``python -m tendril.services.jobs --config-json FILE`` (supervisor) or ``--config worker.toml``."""

from tendril.services.core.process import service_main
from tendril.services.jobs.service import build

if __name__ == "__main__":
    service_main("jobs", build)
