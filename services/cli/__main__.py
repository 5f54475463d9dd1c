"""``python -m tendril.services.cli`` is the same as the ``tendril`` console script."""

from tendril.services.cli.main import main

main()
