"""``python -m moesim``: the command line (``moesim --help``)."""

from moesim.simulator.cli import main

if __name__ == "__main__":
    main()
