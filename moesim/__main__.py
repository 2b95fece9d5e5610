"""``python -m moesim``: the command line (``moesim --help``)."""

from moesim.simulator.cli import entry_point

if __name__ == "__main__":
    entry_point()
