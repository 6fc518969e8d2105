"""``python -m kmexp``: the same entry point as the ``kmexp`` console script."""

from kmexp.cli import main

if __name__ == "__main__":
    main()
