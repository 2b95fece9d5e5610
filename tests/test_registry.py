"""The registry helper: register by name, look up with one clear error, never register a name twice; and the four
registries built on it (schedules, executors, routing models, topologies)."""

from __future__ import annotations

import pytest

from moesim.simulator.schedules import SCHEDULES, ScheduleError, get_schedule
from moesim.simulator.sweep.executors import EXECUTORS, get_executor
from moesim.topologies.base_registry import Registry
from moesim.topologies.registry import TOPOLOGIES, get_topology
from moesim.topologies.spec import TopologyError
from moesim.workloads.errors import ScenarioError
from moesim.workloads.routing import ROUTING_MODELS, routing_names, sample_routing


def test_register_and_look_up():
    r = Registry("thing: unknown {name!r}; known: {known}", ScenarioError)

    @r.register("b")
    def b():
        return "b"

    assert r.add("a", 1) == 1 and r.lookup("b") is b and b() == "b"
    assert r.names() == ["a", "b"] and list(r) == ["b", "a"] and "a" in r  # names sorted, the dict as added
    with pytest.raises(ScenarioError, match=r"^thing: unknown 'c'; known: a, b$"):
        r.lookup("c")
    with pytest.raises(ValueError, match="'a' is registered twice"):
        r.add("a", 2)
    assert r.lookup("a") == 1  # the first entry stays


def test_registration_order_kept_when_not_sorted():
    r = Registry("unknown {name!r}; known: {known}", KeyError, sort=False)
    r.add("z", 0)
    r.add("a", 1)
    assert r.names() == ["z", "a"]
    with pytest.raises(KeyError, match="known: z, a"):
        r.lookup("q")


@pytest.mark.parametrize("registry,lookup,error,message", [
    (SCHEDULES, get_schedule, ScheduleError, "schedule: unknown schedule 'x'; known: 1f1b, dualpipe"),
    (EXECUTORS, get_executor, ScenarioError, "--executor 'x' is unknown; known: local, ray"),
    (TOPOLOGIES, get_topology, TopologyError, "unknown topology 'x'; known: ft2, ft3, mpft"),
    (ROUTING_MODELS, lambda n: sample_routing(n, None), ScenarioError, "routing.name: unknown routing model 'x'"),
])
def test_the_four_registries(registry, lookup, error, message):
    assert isinstance(registry, Registry) and len(registry) >= 2
    with pytest.raises(error) as err:
        lookup("x")
    assert str(err.value).startswith(message)
    first = next(iter(registry))
    with pytest.raises(ValueError, match="registered twice"):
        registry.add(first, registry[first])


def test_routing_names_sorted():
    assert routing_names() == sorted(ROUTING_MODELS)
