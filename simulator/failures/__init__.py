"""Faults as part of the model: straggler GPUs and degraded links in a step (:mod:`~moesim.simulator.failures.faults`),
and the expected cost of failures over a long run (:mod:`~moesim.simulator.failures.reliability`)."""
