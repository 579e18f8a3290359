"""``parley bench``: a load driver for a running Parley, and a bare relay beside it."""

from parley.bench.command import bench

__all__ = ["bench"]
