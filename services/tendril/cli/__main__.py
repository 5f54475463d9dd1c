"""``python -m tendril.cli`` is the same as the ``tendril`` console script."""

from tendril.cli.main import main

main()
