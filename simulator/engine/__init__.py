"""The engine: a training step's programs built, compiled and run in simulated time on SimPy.

One concept per module, in the order a step flows through them:

- :mod:`~moesim.simulator.engine.program` — the program builder: a schedule's steps and their priced segments → each
  pipeline rank's tasks (:mod:`~moesim.simulator.engine.tasks`: tasks on a GPU's compute, communication and pipeline
  streams), dependencies named by signals; :mod:`~moesim.simulator.engine.host` — each rank's CPU thread issuing them;
- :mod:`~moesim.simulator.engine.compiler` — signals → the (pipeline rank, slot) pairs the runner reads, once per
  kind of step, then linked across steps and ranks;
- :mod:`~moesim.simulator.engine.cohorts` — which GPUs run: one per pipeline rank (representative fidelity) or every GPU,
  in classes of identical ones (full fidelity);
- :mod:`~moesim.simulator.engine.runner` — every unit's streams on SimPy, collectives meeting in a
  :mod:`~moesim.simulator.engine.rendezvous`, each recorded GPU's time kept in its :mod:`~moesim.simulator.engine.ledger`;
- :mod:`~moesim.simulator.engine.pipeline` — :class:`PipelineEngine`, which puts them together, and the
  :class:`Timeline` a run returns.
"""

__all__ = ["PipelineEngine", "TailSpec", "Timeline"]


def __getattr__(name: str):
    # Loaded on first use, not with the package: the pricer imports the host model from here, and the pipeline
    # imports the pricer's segments.
    if name in __all__:
        from moesim.simulator.engine import pipeline
        return getattr(pipeline, name)
    raise AttributeError(f"module 'moesim.simulator.engine' has no attribute {name!r}")
