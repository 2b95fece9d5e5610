"""DeepEP's dispatch and combine kernels: the figures DeepEP publishes, computed the way its tests compute them,
and the rates on each link they imply — alone (DeepEP's own benchmark) and beside compute (a profiler trace).

A dispatch or combine moves, per GPU, ``remote_nodes`` InfiniBand copies of each token (one per other node it
reaches, to the GPU with the same index there) and ``nvl_forwards`` NVLink copies (one per distinct target GPU
other than the arrival GPU of each node reached). DeepEP's published GB/s divide other counts by the time:
RDMA bytes count every node reached *including the token's own* (``nodes``), NVL bytes every row a rank
receives, its own tokens included (``ranks``). :func:`deepep_figures` turns a time into those figures;
:func:`link_rates` turns DeepEP's table back into the bytes per second the links really carried.

- Alone (:func:`isolated_rates`): the NIC rate is the mean over the rows whose tokens reach 4 or more nodes
  (EP32, EP64: most copies cross InfiniBand); the NVLink rate the mean of the intranode rows (EP8). EP16 is
  held out: with two nodes each token crosses InfiniBand once and neither link is near its limit there.
- Beside compute (:func:`in_situ_nic_rate`): the dispatch and combine kernels of a profiler trace, each moving
  its micro-batch's tokens at the traced scenario's EP traffic; InfiniBand is taken as their bottleneck (it is
  for EP64 alone, where NVLink carries 83 of its 136 GB/s).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from moesim.topologies.bundled import bundled_yaml
from moesim.workloads.routing import EpCounts, ep_counts

TABLE = Path(__file__).parent / "profiles" / "deepep-h800.yaml"
GB = 1e9
FP8_BYTES = 1 + 4 / 128  # one byte per element and a 4-byte scale per 128 (DeepEP's (1 + 4/128) / 2 of BF16)
BF16_BYTES = 2.0
SAMPLE_TOKENS = 16384
IB_BOUND_NODES = 4  # rows whose tokens reach this many nodes or more calibrate the NIC rate


@dataclass(frozen=True)
class Row:
    """One measured configuration: EP size, which figure DeepEP published, and its GB/s."""

    ep: int
    figure: str  # "nvl" or "rdma"
    dispatch_gbps: float
    combine_gbps: float


@dataclass(frozen=True)
class Table:
    """DeepEP's benchmark set-up (tokens per GPU, hidden size, top-k of ``experts``, nodes a token may reach,
    GPUs per node, SMs the kernels ran on) and its published rows."""

    tokens: int
    hidden: int
    top_k: int
    experts: int
    groups_per_token_max: int
    gpus_per_node: int
    sms: int
    rows: tuple[Row, ...]

    def nodes(self, ep: int) -> int:
        return max(1, ep // self.gpus_per_node)


def load_table(path: str | Path = TABLE) -> Table:
    """DeepEP's published normal-kernel table (``profiles/deepep-h800.yaml``)."""
    data = bundled_yaml(Path(path).read_text())
    test = data["test"]
    rows = tuple(Row(int(r["ep"]), r["figure"], float(r["dispatch_gbps"]), float(r["combine_gbps"]))
                 for r in data["rows"])
    return Table(int(test["tokens"]), int(test["hidden"]), int(test["top_k"]), int(test["experts"]),
                 int(test["groups_per_token_max"]), int(test["gpus_per_node"]), int(test["sms"]), rows)


def token_bytes(hidden: int, kind: str) -> float:
    """Bytes of one token: FP8 with scales for dispatch, BF16 for combine (DeepEP's test set-up)."""
    return hidden * (FP8_BYTES if kind == "dispatch" else BF16_BYTES)


def deepep_test_routing(tokens: int, experts: int, top_k: int, nodes: int, groups_per_token: int,
                 seed: int = 0) -> np.ndarray:
    """Expert ids (tokens, top_k) routed as DeepEP's tests route: scores |N(0,1)| + 1; over several nodes a
    node scores its best expert and each token keeps its best ``groups_per_token`` nodes."""
    rng = np.random.default_rng(seed)
    scores = np.abs(rng.standard_normal((tokens, experts))) + 1.0
    if nodes > 1 and groups_per_token < nodes:
        node_score = scores.reshape(tokens, nodes, -1).max(axis=2)
        kept = np.argpartition(-node_score, groups_per_token - 1, axis=1)[:, :groups_per_token]
        mask = np.zeros((tokens, nodes), dtype=bool)
        np.put_along_axis(mask, kept, True, axis=1)
        scores = np.where(np.repeat(mask, experts // nodes, axis=1), scores, -np.inf)
    return np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]


def table_counts(table: Table, ep: int, seed: int = 0) -> EpCounts:
    nodes = table.nodes(ep)
    ids = deepep_test_routing(SAMPLE_TOKENS, table.experts, table.top_k, nodes, min(nodes, table.groups_per_token_max),
                       seed)
    return ep_counts(ids, table.experts, ep, table.gpus_per_node)


def deepep_figures(counts: EpCounts, tokens: int, token_bytes_: float, time_s: float) -> dict[str, float]:
    """DeepEP's ``rdma_gbps`` and ``nvl_gbps`` for a dispatch or combine of ``tokens`` tokens per GPU that took
    ``time_s``: its RDMA and NVL byte counts (see the module docstring) / 1e9 / time."""
    if time_s <= 0:
        return {"rdma_gbps": 0.0, "nvl_gbps": 0.0}
    return {"rdma_gbps": tokens * counts.nodes * token_bytes_ / GB / time_s,
            "nvl_gbps": tokens * counts.ranks * token_bytes_ / GB / time_s}


@dataclass(frozen=True)
class LinkRate:
    """What one published measurement means on the wires: its time and the real bytes/s per GPU per link."""

    ep: int
    kind: str  # dispatch or combine
    published_gbps: float
    time_s: float
    ib_gbps: float
    nvlink_gbps: float


def link_rates(table: Table, overhead_s: dict[bool, float], seed: int = 0) -> list[LinkRate]:
    """Each row's time (published figure's bytes / its GB/s) and the InfiniBand and NVLink bytes/s it implies,
    once the fixed part (``overhead_s[internode]``: notify and latencies) is taken off."""
    out = []
    for row in table.rows:
        counts = table_counts(table, row.ep, seed)
        internode = table.nodes(row.ep) > 1
        for kind, gbps in (("dispatch", row.dispatch_gbps), ("combine", row.combine_gbps)):
            tb = token_bytes(table.hidden, kind)
            copies = counts.nodes if row.figure == "rdma" else counts.ranks
            time_s = table.tokens * copies * tb / (gbps * GB)
            transfer_s = time_s - overhead_s[internode]
            out.append(LinkRate(row.ep, kind, gbps, time_s,
                                table.tokens * counts.remote_nodes * tb / transfer_s / GB,
                                table.tokens * counts.nvl_forwards * tb / transfer_s / GB))
    return out


def calibrates(table: Table, ep: int) -> bool:
    """Whether row ``ep`` sets a rate (intranode rows: NVLink; 4+ nodes: NIC) or is held out (2–3 nodes)."""
    return table.nodes(ep) == 1 or table.nodes(ep) >= IB_BOUND_NODES


def isolated_rates(rates: list[LinkRate], table: Table) -> tuple[float, float]:
    """(NIC GB/s, NVLink GB/s) DeepEP's kernels reach alone (selection: module docstring)."""
    nic = [r.ib_gbps for r in rates if table.nodes(r.ep) >= IB_BOUND_NODES]
    nvl = [r.nvlink_gbps for r in rates if table.nodes(r.ep) == 1]
    return float(np.mean(nic)), float(np.mean(nvl))


def default_overhead_s() -> dict[bool, float]:
    """The fixed part of a measured dispatch/combine as moesim prices it with the default network: the notify
    (a tiny all-to-all: its path latencies) and the transfer's path latencies — NVLink only within a node,
    NVLink and NIC across nodes ("Insights" Table 5 latencies, moesim.workloads.scenario.NetworkSpec)."""
    from moesim.workloads.scenario import NetworkSpec

    net = NetworkSpec()
    nvlink_s, nic_s = net.nvlink_latency_us * 1e-6, net.nic_latency_us * 1e-6
    return {False: 2 * nvlink_s, True: 2 * (nvlink_s + nic_s)}


def nominal_gbps(gpu: str = "h800") -> tuple[float, float]:
    """(NIC, NVLink) nominal GB/s per GPU per direction of DeepEP's test machine (H800, one CX7 per GPU)."""
    from moesim.workloads.scenario import GpuSpec, NetworkSpec
    from moesim.topologies.gpus import gpu_spec

    return NetworkSpec().nic_gbytes_per_s, GpuSpec(**gpu_spec(gpu)).nvlink_gbps


@lru_cache(maxsize=4)
def isolated_efficiencies(path: str | Path = TABLE) -> tuple[float, float]:
    """(NIC, NVLink) fractions of the nominal rates DeepEP's kernels reach alone, from its published table."""
    table = load_table(path)
    nic, nvlink = isolated_rates(link_rates(table, default_overhead_s()), table)
    nic_nominal, nvlink_nominal = nominal_gbps()
    return nic / nic_nominal, nvlink / nvlink_nominal


@dataclass(frozen=True)
class InSitu:
    """The trace's dispatch/combine kernels: count, total time, total InfiniBand bytes, and the mean rate."""

    kernels: int
    time_s: float
    ib_bytes: float

    @property
    def nic_gbps(self) -> float:
        return self.ib_bytes / self.time_s / GB if self.time_s > 0 else 0.0


def in_situ_nic_rate(kernels: list[tuple[str, float]], tokens: int, hidden: int, remote_nodes: float,
                     dispatch_bytes: float, combine_bytes: float, latency_s: float) -> InSitu:
    """Bytes/s over InfiniBand of a trace's DeepEP kernels: ``kernels`` are (op class ``ep.dispatch`` or
    ``ep.combine``, duration s); each moved ``tokens`` tokens to ``remote_nodes`` other nodes at
    ``dispatch_bytes``/``combine_bytes`` per element, and ``latency_s`` of each is path latency."""
    time_s = ib = 0.0
    count = 0
    for cls, dur_s in kernels:
        if cls not in ("ep.dispatch", "ep.combine"):
            continue
        per_element = dispatch_bytes if cls == "ep.dispatch" else combine_bytes
        ib += tokens * remote_nodes * hidden * per_element
        time_s += max(dur_s - latency_s, 0.0)
        count += 1
    return InSitu(count, time_s, ib)


def trace_kernels(trace) -> list[tuple[str, float]]:
    """(op class, seconds) of a :class:`~moesim.workloads.traces.kineto.KinetoTrace`'s DeepEP dispatch and combine
    kernels (their notify kernels are priced apart)."""
    from moesim.workloads.traces.classify import op_class_name

    out = []
    for k in trace.kernels:
        cls = op_class_name(k.name)
        if cls in ("ep.dispatch", "ep.combine"):
            out.append((cls, k.dur_us * 1e-6))
    return out


def in_situ_for(trace, scenario) -> InSitu:
    """:func:`in_situ_nic_rate` of ``trace`` run as ``scenario`` (its micro-batch tokens, hidden size, dtypes,
    EP traffic of its routing and path latencies)."""
    from moesim.workloads.ep_load import scenario_ep_load
    from moesim.workloads.layers import element_bytes

    from moesim.workloads.errors import ScenarioError

    moe, par, net = scenario.model.moe, scenario.parallelism, scenario.cluster.network
    per_node = min(par.ep, scenario.cluster.node.gpus_per_node)
    if moe is None or par.ep <= per_node:
        raise ScenarioError(f"--traced-as {scenario.name}: its EP group stays inside one node, so its dispatch "
                            "and combine never cross InfiniBand; name the layout the trace ran, with EP over "
                            "several nodes")
    traffic = scenario_ep_load(scenario, per_node).stats  # as the network models price its dispatch
    tokens = par.micro_batch_size * par.seq_len // (par.tp * par.cp)
    latency_s = (net.nvlink_latency_us + (net.nic_latency_us if par.ep > per_node else 0.0)) * 1e-6
    kernels = trace_kernels(trace)
    if not kernels:
        raise ScenarioError(f"{trace.path}: no DeepEP dispatch or combine kernels in this trace")
    return in_situ_nic_rate(kernels, tokens, scenario.model.hidden, traffic.ib_nodes,
                            element_bytes(scenario.training.dispatch_dtype),
                            element_bytes(scenario.training.combine_dtype), latency_s)


def report(trace: str | Path | None, traced_as: str) -> dict:
    """Every number ``moesim calibrate deepep`` prints: per published row, its time and link rates; the
    isolated efficiencies; the in-situ NIC rate of ``trace`` (None: no trace) run as ``traced_as`` (a preset
    name or scenario file); the scenario defaults."""
    from moesim.workloads.loader import load_scenario
    from moesim.workloads.scenario import NetworkSpec
    from moesim.workloads.traces import load_trace

    table = load_table()
    rates = link_rates(table, default_overhead_s())
    nic_gbps, nvlink_gbps = isolated_rates(rates, table)
    nic_nominal, nvlink_nominal = nominal_gbps()
    out = {"rows": [{"ep": r.ep, "kind": r.kind, "published_gbps": r.published_gbps, "time_us": r.time_s * 1e6,
                     "ib_gbps": r.ib_gbps, "nvlink_gbps": r.nvlink_gbps,
                     "calibrates": calibrates(table, r.ep)} for r in rates],
           "isolated": {"nic_gbps": nic_gbps, "nvlink_gbps": nvlink_gbps,
                        "nic_efficiency": nic_gbps / nic_nominal, "nvlink_efficiency": nvlink_gbps / nvlink_nominal},
           "defaults": {"ep_nic_efficiency": NetworkSpec().ep_nic_efficiency,
                        "ep_nvlink_efficiency": NetworkSpec().ep_nvlink_efficiency}}
    if trace is not None:
        scenario = load_scenario(traced_as) if Path(traced_as).is_file() else load_scenario(preset=traced_as)
        situ = in_situ_for(load_trace(trace), scenario)
        nominal = scenario.cluster.network.nic_gbytes_per_s
        out["in_situ"] = {"trace": str(trace), "traced_as": traced_as, "kernels": situ.kernels,
                          "time_ms": situ.time_s * 1e3, "ib_gb": situ.ib_bytes / 1e9, "nic_gbps": situ.nic_gbps,
                          "nic_efficiency": situ.nic_gbps / nominal}
    return out
