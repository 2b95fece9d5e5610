"""`moesim calibrate run --quick` on this machine's CPU: wall time and peak resident memory of the whole run.

Target (issue 16): within 2 GB and 2 minutes on the 2-core CI machine.
Run: python tests/benchmarks/bench_calibrate_quick.py   (prints numbers; asserts nothing)
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "quick.json"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "moesim.simulator.cli", "calibrate", "run", "--quick", "--device", "cpu",
                               "-o", str(out)], capture_output=True, text=True)
        wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
    print(f"calibrate run --quick: exit {proc.returncode}, {wall:.1f} s wall, peak RSS {peak_mb:,.0f} MB "
          f"(target: 120 s, 2048 MB)")
    if proc.returncode:
        print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "(no stderr)")


if __name__ == "__main__":
    main()
