"""``python -m tendril.job --config-json FILE`` (supervisor) or ``--config worker.toml``."""

from tendril.core.process import service_main
from tendril.job.service import build

if __name__ == "__main__":
    service_main("job", build)
