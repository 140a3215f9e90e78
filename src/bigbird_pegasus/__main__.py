"""`python -m bigbird_pegasus ...`: the same as the `bigbird-pegasus` command."""

from .cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
