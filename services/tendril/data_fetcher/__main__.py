"""``python -m tendril.data_fetcher --config-json FILE`` (supervisor) or ``--config worker.toml``."""

from tendril.core.process import service_main
from tendril.data_fetcher.service import build

service_main("data_fetcher", build)
