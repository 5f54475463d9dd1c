"""Entry point: ``python -m tendril_example --socket PATH``."""

from tendril_example.main import main

if __name__ == "__main__":
    main()
