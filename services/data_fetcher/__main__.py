"""``python -m tendril.services.data_fetcher --config-json FILE`` (supervisor) or ``--config worker.toml``."""

from tendril.services.core.process import service_main
from tendril.services.data_fetcher.service import build

service_main("data_fetcher", build)
