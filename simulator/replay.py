"""Trace replay: a whole training step priced with per-layer costs measured in a profiler trace.

A PyTorch-profiler trace of a few MoE layers (DeepSeek's covers one forward and one backward chunk of 4
layers) gives, per component and phase, the GPU time of one layer: ATTN, MLP (F, B, W), DISPATCH and
COMBINE (F, B); see :func:`moesim.workloads.traces.phases.component_costs_us`. Compute is the wall time of a
component's kernels, never the sum of kernels that ran at once on different streams (the weight-gradient GEMMs
of mlp(W) run on a side stream beside the main compute stream). Communication is taken with the waiting
for peers removed (transfer and notify time, least over the traced layers); waiting is the engine's to
produce. Where the scenario differs from the traced run (model, sequence length, hidden size, EP degree, GPU,
routing), a traced cost is scaled by the cost model's ratio between the scenario's component and the same
component of the traced run (``--traced-as``: the scenario the trace was recorded with, at the shapes its name
states; by default the replayed scenario at those shapes). Everything the trace does not cover — dense layers,
MTP, embedding, head, pipeline sends, data-parallel synchronisation, optimizer — is priced by the cost and
network models. The step is then simulated with the scenario's schedule, micro-batches and data parallelism.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from moesim.calibration.cost_model import CostModel
from moesim.simulator.network import AnalyticNetwork
from moesim.simulator.pricing import Pricer
from moesim.topologies.gpus import catalogue_key, gpu_spec
from moesim.workloads.errors import ScenarioError
from moesim.workloads.model import is_moe_layer, moe_layer
from moesim.workloads.ops import Component, Phase
from moesim.workloads.scenario import GpuSpec, Routing, Scenario
from moesim.workloads.traces.kineto import KinetoTrace
from moesim.workloads.traces.phases import component_costs_us, phase_instances

TRACE_COMPONENTS = {"attn": "ATTN", "mlp": "MLP", "dispatch": "DISPATCH", "combine": "COMBINE"}
COMM_COMPONENTS = ("DISPATCH", "COMBINE")
SHAPE_PATTERNS = {"ep": r"ep(\d+)", "tp": r"tp(\d+)", "hidden": r"hidden(\d+)", "seq_len": r"seq_?len(\d+)"}


@dataclass
class ComponentCost:
    """One MoE layer's component in one phase: measured, scale, replayed and cost-model seconds."""

    component: str
    phase: str
    trace_s: float
    scale: float
    replay_s: float
    model_s: float
    layers_averaged: int


@dataclass
class TraceCosts:
    """What replay takes from a trace: per (component, phase) seconds, the traced shapes and notes."""

    costs: dict[tuple[str, Phase], ComponentCost]
    shapes: dict[str, int]
    notes: list[str] = field(default_factory=list)


def trace_shapes(trace: KinetoTrace, scenario: Scenario) -> tuple[dict[str, int], list[str]]:
    """The traced run's shapes from the trace name (DeepSeek's: ``prof_ep64_tp1_..._hidden7168_seqlen4096``);
    a shape the name does not state is assumed to be the scenario's, and a note says so."""
    par = scenario.parallelism
    defaults = {"ep": par.ep, "tp": par.tp, "hidden": scenario.model.hidden,
                "seq_len": par.seq_len * par.micro_batch_size}
    shapes, notes = {}, []
    for key, pattern in SHAPE_PATTERNS.items():
        m = re.search(pattern, trace.name or "", re.I)
        shapes[key] = int(m.group(1)) if m else defaults[key]
        if not m:
            notes.append(f"trace name does not state {key}; assumed the scenario's ({defaults[key]})")
    return shapes, notes


def reference_scenario(scenario: Scenario, shapes: dict[str, int], device_name: str,
                       traced_as: Scenario | None = None) -> tuple[Scenario, list[str]]:
    """The traced run as a scenario — ``traced_as`` (the model and cluster the trace was recorded with) or else
    the replayed scenario — at the traced shapes, with balanced routing, on the traced GPU: the denominator of
    the scales."""
    notes = []
    if traced_as is None:
        if scenario.model.hidden != shapes["hidden"]:
            notes.append(f"the traced model (hidden {shapes['hidden']}) is not the scenario's (hidden "
                         f"{scenario.model.hidden}); scaled as the scenario's model at hidden {shapes['hidden']}: "
                         "name the traced model with --traced-as (e.g. deepseek-v3-h800)")
        traced_as = scenario
    elif traced_as.model.hidden != shapes["hidden"]:
        notes.append(f"--traced-as has hidden {traced_as.model.hidden}; the trace name says {shapes['hidden']}")
    scenario = traced_as
    moe, par = scenario.model.moe, scenario.parallelism
    ep = shapes["ep"]
    if moe is not None and (ep > moe.routed_experts or moe.routed_experts % ep):
        notes.append(f"trace ran EP{ep}, which {moe.routed_experts} experts do not divide; scaled at the "
                     f"scenario's EP{par.ep}")
        ep = par.ep
    parallelism = par.model_copy(update={"ep": ep, "tp": shapes["tp"], "cp": 1, "micro_batch_size": 1,
                                         "seq_len": shapes["seq_len"]})
    cluster = scenario.cluster
    gpu_key = _catalogue_key(device_name)
    if gpu_key is not None:
        cluster = cluster.model_copy(update={"gpu": GpuSpec(**gpu_spec(gpu_key))})
    else:
        notes.append(f"traced GPU {device_name!r} is not in the catalogue; scaled as if on the scenario's GPU")
    update = {"parallelism": parallelism, "model": scenario.model.model_copy(update={"hidden": shapes["hidden"]}),
              "routing": Routing(), "cluster": cluster}
    return scenario.model_copy(update=update), notes


def _catalogue_key(device_name: str) -> str | None:
    return catalogue_key(device_name)


def moe_layer_components(scenario: Scenario) -> dict[tuple[str, Phase], Component]:
    """The components of one MoE layer (attention + MoE block) of ``scenario``, by (name, phase)."""
    ops = moe_layer(scenario, "replay")
    found: dict[tuple[str, Phase], Component] = {}
    for component in ops.forward + ops.backward + ops.weight:
        key = (component.name, component.phase)
        if key in found:
            found[key].ops.extend(component.ops)
        else:
            found[key] = Component(component.name, component.layer, component.phase, list(component.ops))
    return found


def trace_costs(trace: KinetoTrace, scenario: Scenario, cost_model, network: AnalyticNetwork,
                traced_as: Scenario | None = None) -> TraceCosts:
    """Per-layer component costs from ``trace``, scaled to ``scenario``'s shapes (see :func:`reference_scenario`
    for ``traced_as``)."""
    instances, _ = phase_instances(trace)
    measured = component_costs_us(instances)
    if not any(c in TRACE_COMPONENTS for c, _ in measured):
        raise ScenarioError(f"{trace.path}: no phase annotations named attn/mlp/dispatch/combine with (F), (B) "
                            "or (W); replay needs DualPipe-style record_function ranges")
    shapes, notes = trace_shapes(trace, scenario)
    reference, ref_notes = reference_scenario(scenario, shapes, trace.device_name, traced_as)
    notes += ref_notes
    ours = moe_layer_components(scenario)
    theirs = moe_layer_components(reference)
    ours_pricer = Pricer(scenario, cost_model, network)
    ref_pricer = Pricer(reference, CostModel(cost_model.profiles, reference.cluster.gpu, cost_model.kernels),
                        AnalyticNetwork(reference))
    costs = {}
    for (name, phase_letter), m in measured.items():
        component = TRACE_COMPONENTS.get(name)
        phase = Phase(phase_letter)
        if component is None or (component, phase) not in ours:
            notes.append(f"trace phase {name}({phase_letter}) has no counterpart in moesim's MoE layer; not used")
            continue
        if component in COMM_COMPONENTS:
            seconds = (m["comm_transfer_us"] + m["comm_sync_us"] + m["compute_us"]) * 1e-6
        else:
            seconds = (m["compute_us"] + m["comm_us"]) * 1e-6
        model_s = ours_pricer.component_time_s(ours[(component, phase)])
        ref_s = ref_pricer.component_time_s(theirs[(component, phase)]) if (component, phase) in theirs else 0.0
        scale = model_s / ref_s if ref_s > 0 else 1.0
        costs[(component, phase)] = ComponentCost(component, phase.value, seconds, scale, seconds * scale, model_s,
                                                  int(m["layers"]))
    return TraceCosts(costs, shapes, notes)


class TracePricer(Pricer):
    """A :class:`Pricer` that takes traced costs for the MoE layers' components, the cost model elsewhere.
    ``sources`` counts, per component name, how many component instances came from each source."""

    def __init__(self, scenario: Scenario, cost_model, network, costs: TraceCosts, stage_rank=None):
        super().__init__(scenario, cost_model, network, stage_rank)
        self.scenario = scenario
        self.costs = costs
        self.sources: Counter = Counter()

    def component_time_s(self, component: Component, sms: int | None = None) -> float:
        """A traced component's measured time (in situ, whatever ran beside it), else the cost model's. Sources
        are counted once per component: on its price beside communication (``sms`` None), not its all-SM one."""
        model = self.scenario.model
        traced = self.costs.costs.get((component.name, component.phase))
        if traced is not None and 0 <= component.layer < model.layers and is_moe_layer(model, component.layer):
            if sms is None:
                self.sources[("trace", component.name)] += 1
            return traced.replay_s
        if sms is None:
            self.sources[("cost model", _describe(component, model))] += 1
        return super().component_time_s(component, sms)


def _describe(component: Component, model) -> str:
    if component.layer >= model.layers or component.layer < 0:
        return component.name if component.name in ("EMBED", "HEAD") else f"MTP {component.name}"
    return f"{component.name} (dense layer)" if not is_moe_layer(model, component.layer) else component.name


@dataclass
class ReplayResult:
    """A replayed step: the simulation, the traced costs used, where each priced component came from, and
    the same step priced by the cost model alone (for comparison)."""

    result: object  # moesim.simulator.simulate.Result
    costs: TraceCosts
    sources: dict[str, dict[str, int]]
    model_only_step_s: float

    def to_dict(self) -> dict:
        return {
            "result": self.result.to_dict(),
            "trace_shapes": self.costs.shapes,
            "moe_layer_costs": [vars(c) for c in self.costs.costs.values()],
            "sources": self.sources,
            "cost_model_only_step_time_s": self.model_only_step_s,
            "notes": self.costs.notes,
        }


def replay(trace: KinetoTrace, scenario: Scenario, profile=None, keep_timeline: bool = False,
           traced_as: Scenario | None = None) -> ReplayResult:
    """Simulate one training step of ``scenario`` with MoE-layer costs from ``trace`` (recorded with the model
    and cluster of ``traced_as``, by default ``scenario``'s own)."""
    from moesim.simulator.simulate import cost_model_for, simulate

    costs = trace_costs(trace, scenario, cost_model_for(scenario, profile), AnalyticNetwork(scenario), traced_as)
    pricers: list[TracePricer] = []

    def factory(sc, cost_model, network, stage_rank=None):
        pricers.append(TracePricer(sc, cost_model, network, costs, stage_rank))
        return pricers[-1]

    result = simulate(scenario, profile, keep_timeline=keep_timeline, pricer_factory=factory)
    sources: dict[str, dict[str, int]] = {"trace": {}, "cost model": {}}
    for (source, name), n in sorted(pricers[0].sources.items()):
        sources[source][name] = n
    sources["cost model"].update({"pipeline send/recv": 1, "data-parallel gradient and parameter sync": 1,
                                  "optimizer step": 1})
    model_only = simulate(scenario, profile).step_time_s
    return ReplayResult(result, costs, sources, model_only)
