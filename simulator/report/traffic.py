"""Where the bytes go: per-link-class loads and per-expert token counts, computed from what moesim has.

The analytic network prices a collective by its busiest link class (NVLink or the GPU's NIC), so the finest
link view it can give is per class and per pipeline rank: bytes one GPU of that rank sends over NVLink and
over its NIC in one step, and the utilisation that is (bytes / (effective bandwidth × step time)). The split
of each collective's bytes follows the same algorithms :mod:`moesim.simulator.network.analytic` prices (ring and
hierarchical collectives, DeepSeek-style dispatch: one NIC crossing per remote node, then NVLink forwards).

Tokens per expert and per GPU come from the routing sampler in :mod:`moesim.workloads.routing` for one micro-batch
of one MoE layer across one EP group. Both results are plain :class:`Grid` / :class:`ExpertLoad` data, so a
graph network model (per link, per plane) or a skewed router can hand the charts richer data later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moesim.simulator.network import AnalyticNetwork
from moesim.simulator.network.groups import GroupGeometry
from moesim.simulator.schedules import scenario_schedule
from moesim.simulator.simulate import fsdp_tail_comms
from moesim.workloads.model import build_stages
from moesim.workloads.ops import DTYPE_BYTES, Comm, Pattern
from moesim.workloads.routing import sample_balanced
from moesim.workloads.scenario import Scenario

GB = 1e9
NVLINK, NIC = "NVLink", "NIC"
MAX_ROUTED_TOKENS = 32_768  # routing is sampled on at most this many tokens and scaled (the shape is what shows)


@dataclass(frozen=True)
class Grid:
    """A heat-map's data: ``values[r][c]`` for row ``rows[r]`` and column ``columns[c]``; ``detail`` for hover."""

    title: str
    rows: list[str]
    columns: list[str]
    values: list[list[float]]
    unit: str
    detail: list[list[str]]
    row_title: str = "link class"
    column_title: str = "pipeline rank"


@dataclass(frozen=True)
class LinkLoads:
    """Per pipeline rank, bytes per step one GPU sends on each link class, and by which traffic."""

    nvlink_gb: list[float]
    nic_gb: list[float]
    nvlink_gbps: float  # effective per-GPU bandwidth the network model uses
    nic_gbps: float
    by_traffic: list[dict[str, tuple[float, float]]]  # per rank: traffic name -> (NVLink GB, NIC GB)

    def utilisation(self, step_time_s: float) -> Grid:
        """Average utilisation of each link class per rank over the step (0..1)."""
        ranks = len(self.nvlink_gb)
        rows = [NVLINK, NIC]
        values, detail = [], []
        for name, loads, gbps in ((NVLINK, self.nvlink_gb, self.nvlink_gbps), (NIC, self.nic_gb, self.nic_gbps)):
            index = 0 if name == NVLINK else 1
            values.append([gb / (gbps * step_time_s) for gb in loads])
            detail.append([f"{loads[r]:.2f} GB at {gbps:.0f} GB/s<br>"
                           + "<br>".join(f"{t}: {v[index]:.2f} GB" for t, v in self.by_traffic[r].items()
                                         if v[index] > 0) for r in range(ranks)])
        return Grid("link utilisation per pipeline rank (average over the step)", rows,
                    [f"rank {r}" for r in range(ranks)], values, "utilisation", detail)


def comm_link_bytes(network: AnalyticNetwork, comm: Comm) -> tuple[float, float]:
    """(NVLink bytes, NIC bytes) one member of ``comm.group`` sends for one collective."""
    g: GroupGeometry = network.group(comm.group)
    nbytes = comm.bytes_per_rank
    if comm.pattern is Pattern.SEND_RECV:
        return 0.0, nbytes  # priced as an inter-node transfer (stages sit on different nodes)
    if g.size == 1:
        return 0.0, 0.0
    if comm.pattern in (Pattern.EP_DISPATCH, Pattern.EP_COMBINE):
        traffic = network.ep_traffic()
        token_bytes = comm.token_bytes
        return comm.tokens * traffic.nvl_copies * token_bytes, comm.tokens * traffic.ib_nodes * token_bytes
    if comm.pattern is Pattern.ALL_TO_ALL:
        share = nbytes / g.size
        return share * (g.per_node - 1), share * (g.size - g.per_node)
    p, n = g.per_node, g.nodes
    nvl = (p - 1) / p * nbytes if p > 1 else 0.0
    nic = (n - 1) / n * nbytes / p if n > 1 else 0.0
    factor = 2.0 if comm.pattern is Pattern.ALL_REDUCE else 1.0
    return factor * nvl, factor * nic


def _traffic_name(comm: Comm) -> str:
    names = {Pattern.EP_DISPATCH: "EP dispatch", Pattern.EP_COMBINE: "EP combine"}
    return names.get(comm.pattern, f"{comm.group.upper()} {comm.pattern.value.replace('_', '-')}")


def link_loads(scenario: Scenario) -> LinkLoads:
    """Bytes per GPU per step on NVLink and on the NIC, per pipeline rank, by traffic kind.

    Counts every communication op of every chunk × micro-batches, the pipeline sends between ranks, and the
    gradient and parameter synchronisation of the tail (sized as :func:`moesim.simulator.simulate.tail_spec` does).
    """
    network = AnalyticNetwork(scenario)
    par, tr = scenario.parallelism, scenario.training
    schedule = scenario_schedule(scenario)
    stages = build_stages(scenario)
    by_traffic: list[dict[str, list[float]]] = [{} for _ in range(par.pp)]

    def add(rank: int, name: str, nvl: float, nic: float, times: float) -> None:
        slot = by_traffic[rank].setdefault(name, [0.0, 0.0])
        slot[0] += nvl * times / GB
        slot[1] += nic * times / GB

    rank_params = [[0.0, 0.0] for _ in range(par.pp)]
    send_bytes = par.micro_batch_size * par.seq_len // par.cp * scenario.model.hidden * DTYPE_BYTES["bf16"] / par.tp
    for stage in stages:
        rank = schedule.stage_rank(stage.stage)
        rank_params[rank][0] += stage.dense_params
        rank_params[rank][1] += stage.expert_params
        for chunk in (stage.forward, stage.backward, stage.weight):
            for op in chunk.ops():
                if op.comm is not None:
                    add(rank, _traffic_name(op.comm), *comm_link_bytes(network, op.comm), scenario.micro_batches)
        # Activations go forward to the next stage, gradients back to the previous one, once per micro-batch.
        for target in (stage.stage + 1, stage.stage - 1):
            if 0 <= target < len(stages) and schedule.stage_rank(target) != rank:
                add(rank, "PP send", *comm_link_bytes(network, Comm(Pattern.SEND_RECV, "pp", send_bytes)),
                    scenario.micro_batches)
    zero = par.zero_stage >= 1
    reduce = Pattern.REDUCE_SCATTER if zero else Pattern.ALL_REDUCE
    if par.fsdp is not None:  # per layer they are chunk ops (counted above); with PP, the tail's
        for rank, (dense, expert) in enumerate(rank_params):
            grads, params = fsdp_tail_comms(scenario, dense, expert)
            for name, comms in (("gradient sync", grads), ("parameter all-gather", params)):
                for comm in comms:
                    add(rank, name, *comm_link_bytes(network, comm), 1)
    for rank, (dense, expert) in enumerate(rank_params if par.fsdp is None else ()):
        for group, params in (("dp", dense), ("edp", expert)):
            grads = Comm(reduce, group, params * DTYPE_BYTES[tr.grad_dtype])
            add(rank, "gradient sync", *comm_link_bytes(network, grads), 1)
            if zero:
                gather = Comm(Pattern.ALL_GATHER, group, params * DTYPE_BYTES[tr.weight_dtype])
                add(rank, "parameter all-gather", *comm_link_bytes(network, gather), 1)
    totals = [(sum(v[0] for v in t.values()), sum(v[1] for v in t.values())) for t in by_traffic]
    return LinkLoads([t[0] for t in totals], [t[1] for t in totals], network.nvlink_gbps, network.nic_gbps,
                     [{k: (v[0], v[1]) for k, v in t.items()} for t in by_traffic])


@dataclass(frozen=True)
class ExpertLoad:
    """Tokens each routed expert and each EP-group GPU receives for one micro-batch of one MoE layer."""

    tokens_per_expert: list[float]
    tokens_per_gpu: list[float]
    experts_per_gpu: int
    routed_tokens: int  # token copies are top_k × this
    sampled_tokens: int
    router: str


def expert_load(scenario: Scenario) -> ExpertLoad | None:
    """Sample the scenario's router over one EP group's micro-batch; None for a dense model."""
    moe = scenario.model.moe
    if moe is None:
        return None
    par = scenario.parallelism
    tokens = par.ep * par.micro_batch_size * par.seq_len // par.cp
    sampled = min(tokens, MAX_ROUTED_TOKENS)
    ids = sample_balanced(moe.routed_experts, moe.top_k, moe.groups, moe.groups_per_token, sampled,
                          scenario.run.seed)
    per_expert = np.bincount(ids.ravel(), minlength=moe.routed_experts) * (tokens / sampled)
    per_gpu = per_expert.reshape(par.ep, moe.routed_experts // par.ep).sum(axis=1)
    return ExpertLoad(per_expert.tolist(), per_gpu.tolist(), moe.routed_experts // par.ep, tokens, sampled,
                      "balanced group-limited")
