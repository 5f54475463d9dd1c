"""Entry point: ``python -m tendril.executors.example --socket PATH``."""

from tendril.executors.example.main import main

if __name__ == "__main__":
    main()
