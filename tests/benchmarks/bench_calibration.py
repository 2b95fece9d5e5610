"""Speed of the calibration layer: fitting profiles and pricing every op of every preset (cold caches).

Run: python tests/benchmarks/bench_calibration.py   (prints numbers; asserts nothing)
"""

from __future__ import annotations

import time

from moesim.calibration.cost_model import CostModel
from moesim.calibration.fit import fit_report
from moesim.calibration.profile import builtin_profile
from moesim.workloads.loader import load_scenario
from moesim.workloads.model import build_stages
from moesim.workloads.ops import Kind, Phase
from moesim.workloads.presets import preset_names


def main() -> None:
    ops_by_preset = {}
    for name in preset_names():
        scenario = load_scenario(preset=name)
        ops = [op for stage in build_stages(scenario) for phase in Phase for op in stage.chunk(phase).ops()
               if op.kind is not Kind.COMM]
        ops_by_preset[name] = (scenario, ops)
    for profile_name in ("h800", "cpu"):
        profile = builtin_profile(profile_name)
        start = time.perf_counter()
        fits = fit_report(profile)
        fit_s = time.perf_counter() - start
        print(f"{profile_name}: fit of {len(profile.points)} points in {len(fits)} classes, with leave-one-out: "
              f"{fit_s * 1e3:.1f} ms")
        for name, (scenario, ops) in ops_by_preset.items():
            start = time.perf_counter()
            model = CostModel(profile, scenario.cluster.gpu)
            for op in ops:
                model.op_time_s(op, scenario.cluster.gpu.sms - scenario.training.comm_sms)
            elapsed = time.perf_counter() - start
            distinct = len(model._cache)
            print(f"  {name:24s} {len(ops):6d} ops ({distinct:4d} distinct) priced in {elapsed * 1e3:7.1f} ms "
                  f"= {len(ops) / elapsed:,.0f} ops/s cold")


if __name__ == "__main__":
    main()
