"""``python -m parley.bench``: the bench command, before or without ``parley bench``."""

from parley.bench import bench

if __name__ == "__main__":
    bench(prog_name="parley bench")
