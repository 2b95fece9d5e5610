"""The SimPy engine: schedules, streams, collectives, the network model, metrics, CLI and reports."""
