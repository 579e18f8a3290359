"""Runs the ``parley`` command as ``python -m parley``."""

from parley.cli import main

main()
