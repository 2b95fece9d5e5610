"""Speed of trace import, summary, replay and routing sampling (not collected by pytest; prints numbers).

    python tests/benchmarks/bench_trace.py [TRACE]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from moesim.simulator.export import write_chrome_trace  # noqa: E402
from moesim.simulator.replay import replay  # noqa: E402
from moesim.simulator.simulate import simulate  # noqa: E402
from moesim.workloads.ep_load import ep_load  # noqa: E402
from moesim.workloads.loader import load_scenario  # noqa: E402
from moesim.workloads.routing import RoutingInputs, sample_routing  # noqa: E402
from moesim.workloads.traces import load_trace  # noqa: E402
from moesim.workloads.traces.summary import summarize  # noqa: E402


def timed(label: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label:<52} {time.perf_counter() - start:8.3f} s")
    return out


def main() -> None:
    default = REPO.parent / "shared/data/deepseek-profile-data/train.json"
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else default if default.is_file() else \
        REPO / "tests/data/deepseek-train-excerpt.json"
    trace = timed(f"load {path.name} ({path.stat().st_size / 1e6:.1f} MB)", load_trace, path)
    print(f"{'':<52} {len(trace.kernels)} kernels, {len(trace.annotations)} annotations")
    timed("summarize", summarize, trace)
    scenario = load_scenario(preset="deepseek-v3-h800")
    timed("replay on deepseek-v3-h800 (two simulated steps)", replay, trace, scenario)
    timeline = simulate(scenario, keep_timeline=True).timeline
    with tempfile.TemporaryDirectory() as tmp:
        out = timed(f"export {len(timeline.records):,} records", write_chrome_trace, timeline, Path(tmp) / "s.json")
        print(f"{'':<52} {out.stat().st_size / 1e6:.1f} MB")
        back = timed("import the export", load_trace, out)
        timed("summarize the export", summarize, back)
    v3 = RoutingInputs(256, 8, 8, 4, "sigmoid", 7168, zipf_alpha=1.0)
    ids = timed("sample zipf routing, 16384 tokens × 256 experts", sample_routing, "zipf", v3)
    timed("EP load (EP64) from those ids", ep_load, ids, 256, 64, 8)
    try:
        timed("sample torch-gate routing, 16384 tokens, hidden 7168", sample_routing, "gate", v3)
    except Exception as err:  # torch absent
        print(f"gate routing skipped: {err}")


if __name__ == "__main__":
    main()
