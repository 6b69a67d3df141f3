"""``python -m lake.cli``."""

from lake.cli.app import main

main()
