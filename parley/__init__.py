"""Parley: a self-hostable messenger server."""

__version__ = "0.1.0"
