"""Size guards: estimate what a command is about to build and refuse, naming the number and the limit, before
building it (a run that cannot finish is worse than a clear no).

Each limit is set so that the largest accepted input runs in about two minutes and within a couple of GB on
this project's 2-core CI machine; the measurements behind each are in its comment. Graph sizes are guarded in
:mod:`moesim.topologies.registry` (it may not import from here), calibration buffers in :mod:`moesim.calibration.bench`.
"""

from __future__ import annotations

from moesim.workloads.errors import ScenarioError

# moesim schedule 1f1b --pp 8 --microbatches 20000: 480,000 chunk tasks in 57 s and 0.55 GB resident (2 cores).
MAX_ENGINE_TASKS = 1_000_000
# moesim collective all-to-all --gpus 512: 261,632 flows in 45 s and 0.33 GB; 2048 GPUs (4.2M flows) ran > 3 min.
MAX_FLOWS = 500_000
# moesim plan / sweep --workers: each local worker is a process holding the simulator (~100 MB); past this many
# on one machine, use a Ray cluster (--executor ray).
MAX_LOCAL_WORKERS = 256
# moesim plan / sweep: layouts enumerated before any is simulated.
MAX_LAYOUTS = 100_000


def check_size(what: str, count: int | float, limit: int, fix: str) -> None:
    """Refuse ``count`` of ``what`` above ``limit`` with one line: the number, the limit and ``fix``."""
    if count > limit:
        raise ScenarioError(f"{what}: {count:,.0f} is over the limit of {limit:,} (about two minutes and a few GB "
                            f"on a small machine); {fix}")


def pipeline_tasks(pp: int, micro_batches: int, virtual_stages: int, units_per_rank: int = 1) -> int:
    """Chunk tasks the pipeline engine runs: forward, input- and weight-backward of every micro-batch on every
    stage, for each simulated unit of each pipeline rank."""
    return 3 * pp * virtual_stages * micro_batches * units_per_rank


def check_pipeline(pp: int, micro_batches: int, virtual_stages: int, fix: str, units_per_rank: int = 1) -> None:
    check_size("pipeline tasks to simulate (3 × pp × virtual stages × micro-batches"
               + (" × GPUs simulated per pipeline rank)" if units_per_rank > 1 else ")"),
               pipeline_tasks(pp, micro_batches, virtual_stages, units_per_rank), MAX_ENGINE_TASKS, fix)
