"""Run every `$ moesim ...` command of README.md, the slow ones included, and print how many ran and how many
print what the README shows, with each drift (tests/readme_commands.py). Usage, from anywhere:

    python tests/benchmarks/bench_readme_commands.py            # all (several minutes: plan, calibrate run, ...)
    python tests/benchmarks/bench_readme_commands.py --fast     # only those the default test run checks
    python tests/benchmarks/bench_readme_commands.py --show 1673   # the fresh output of README line 1673, to paste
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.readme_commands import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
