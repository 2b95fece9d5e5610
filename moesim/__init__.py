"""moesim: a discrete-event simulator of large mixture-of-experts training clusters.

One import name for the whole tool. Its four parts are subpackages: :mod:`moesim.simulator` (engine, network,
schedules, CLI), :mod:`moesim.workloads` (scenarios, models, presets), :mod:`moesim.topologies` (GPUs, racks,
fabrics) and :mod:`moesim.calibration` (kernel profiles). The Python API is what the CLI runs::

    import moesim
    scenario = moesim.load("deepseek-v3-h800", ["parallelism.pp=8", "schedule=1f1b"])  # a preset or a file
    result = moesim.simulate(scenario)                  # one training step
    result.step_time_s, result.mfu_causal               # seconds, fraction of the BF16 peak
    result.to_dict()                                    # what `moesim simulate --json` prints
    result.stages_frame()                               # pandas: one row per pipeline rank
    moesim.simulate(scenario, timeline=True).timeline_frame()   # pandas: one row per kernel/transfer
    run = moesim.sweep("examples/sweeps/v2-lite-layouts.yaml", "layouts.csv")
    run.frame()                                         # pandas: one row per point, as the CSV holds it

Bad input raises :class:`ScenarioError` with the one line the CLI would print.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The folders of a source checkout sit beside this package (pyproject.toml maps them under moesim.* in an
# installed wheel). In a checkout or an editable install they are found here, so `moesim.simulator` is always
# this project's, never a folder of that name in the user's working directory.
SUBPACKAGES = ("simulator", "workloads", "topologies", "calibration")
_CHECKOUT = Path(__file__).resolve().parent.parent
if all((_CHECKOUT / name / "__init__.py").is_file() for name in SUBPACKAGES) and str(_CHECKOUT) not in __path__:
    __path__.append(str(_CHECKOUT))

from moesim.workloads.errors import ScenarioError  # noqa: E402  (needs the path above)

if TYPE_CHECKING:
    from moesim.simulator.simulate import Result
    from moesim.simulator.sweep.runner import SweepRun
    from moesim.workloads.scenario import Scenario

__all__ = ["ScenarioError", "load", "simulate", "sweep", "version", "__version__"]


def version() -> str:
    """moesim's version: the installed distribution's, or pyproject.toml's in a checkout never installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed
    try:
        return installed("moesim")
    except PackageNotFoundError:
        import tomllib
        return tomllib.loads((_CHECKOUT / "pyproject.toml").read_text())["project"]["version"]


def load(source: str | Path | dict = "deepseek-v3-h800", overrides: list[str] | tuple[str, ...] = ()) -> Scenario:
    """A validated scenario from a built-in preset's name, a YAML/JSON scenario file or a dict of its sections,
    with ``overrides`` applied in order (``"parallelism.pp=8"``, as ``--set`` takes them)."""
    from moesim.workloads.loader import load_scenario, scenario_from
    from moesim.workloads.presets import preset_names

    if isinstance(source, dict):  # overrides edit the dict in place; the caller's stays as given
        return scenario_from(copy.deepcopy(source), overrides)
    if not isinstance(source, (str, Path)):
        raise ScenarioError(f"moesim.load: give a preset name, a scenario file's path or a dict of sections, not "
                            f"{type(source).__name__} {source!r:.60}")
    if isinstance(source, str) and source in preset_names():
        return load_scenario(preset=source, overrides=list(overrides))
    if Path(source).is_file():
        return load_scenario(path=source, overrides=list(overrides))
    raise ScenarioError(f"{str(source)!r} is neither a preset ({', '.join(preset_names())}) nor a scenario file")


def simulate(scenario: Scenario | str | Path, profile: str | None = None, timeline: bool = False,
             check_memory: bool | None = None) -> Result:
    """Simulate one training step of ``scenario`` (a Scenario, or what :func:`load` takes) and return its
    :class:`~moesim.simulator.simulate.Result` (seconds, FLOP rates, memory in GB per pipeline rank).

    ``profile``: calibration profiles as ``--profile`` takes them (built-in names or JSON files, comma-separated;
    default: the GPU's own). ``timeline``: keep every kernel and transfer (for :meth:`Result.timeline_frame`,
    reports and traces; slower). ``check_memory`` overrides the scenario's ``run.check_memory``: a layout that
    does not fit raises :class:`~moesim.simulator.memory.MemoryLayoutError`."""
    from moesim.simulator.profile_input import user_profile
    from moesim.simulator.simulate import simulate as run

    if not hasattr(scenario, "parallelism"):
        scenario = load(scenario)
    return run(scenario, user_profile(profile), keep_timeline=timeline, check_memory=check_memory)


def sweep(spec: str | Path | dict, output: str | Path, executor: str = "local", workers: int | None = None,
          force: bool = False) -> SweepRun:
    """Run a sweep spec (a YAML file as ``moesim sweep`` takes it, or the same as a dict) and write its rows to
    ``output`` (.csv or .parquet), resuming what an earlier run of the same spec left there unless ``force``.
    Returns the :class:`~moesim.simulator.sweep.runner.SweepRun`: counts, and ``rows``/``frame()``."""
    from moesim.simulator.sweep.runner import run_sweep
    from moesim.simulator.sweep.spec import load_spec, parse_spec, prepared

    parsed, base = prepared(parse_spec(spec)) if isinstance(spec, dict) else load_spec(spec)
    return run_sweep(parsed, base, output, executor=executor, workers=workers, force=force)


def __getattr__(name: str) -> Any:
    """``__version__``, and the four parts as attributes too (``moesim.workloads``), imported when first used."""
    if name == "__version__":
        return version()
    if name in SUBPACKAGES:
        import importlib
        return importlib.import_module(f"moesim.{name}")
    raise AttributeError(f"module 'moesim' has no attribute {name!r}")
