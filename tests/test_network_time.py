"""The network in simulated time (issue 14): one scenario → topology mapping, and links shared in time."""

from __future__ import annotations

import pytest

from simulator.simulate import make_network
from workloads.loader import load_scenario
from workloads.ops import Comm, Pattern

DELTA_US = 10.0
SEND_BYTES = 4e6


def _nets(extra: list[str]) -> dict[str, object]:
    """The network models a user can get for the 16-GPU preset: analytic, flow, analytic with a link fault."""
    return {
        "analytic": make_network(load_scenario(preset="deepseek-v2-lite-h800", overrides=extra)),
        "flow": make_network(load_scenario(preset="deepseek-v2-lite-h800", overrides=["run.network=flow", *extra])),
        "analytic+fault": make_network(load_scenario(
            preset="deepseek-v2-lite-h800",
            overrides=['faults.links=[{"link": ["n0.nic3", "p3.leaf0"], "bandwidth_factor": 0.5}]', *extra])),
    }


@pytest.mark.parametrize("field, comm, steps", [
    # A pipeline send crosses InfiniBand once: the step moves by the change itself.
    ("nic_latency_us", Comm(Pattern.SEND_RECV, "pp", SEND_BYTES), 1),
    # A DP all-gather over the 8 GPUs of a node is a ring of 7 NVLink steps.
    ("nvlink_latency_us", Comm(Pattern.ALL_GATHER, "dp", SEND_BYTES), 7),
])
def test_latency_fields_act_the_same_under_every_network_model(field, comm, steps):
    base = {name: net.comm_time_s(comm) for name, net in _nets([]).items()}
    default = getattr(load_scenario(preset="deepseek-v2-lite-h800").cluster.network, field)
    slower = {name: net.comm_time_s(comm)
              for name, net in _nets([f"cluster.network.{field}={default + DELTA_US}"]).items()}
    for name in base:
        assert slower[name] - base[name] == pytest.approx(steps * DELTA_US * 1e-6, rel=1e-9), name
