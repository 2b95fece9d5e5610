"""Benchmark: flow-level DeepSeek-style EP all-to-all (dispatch) over 2048 GPUs on the 8-plane fat-tree.

Not collected by pytest (pyproject ignores tests/benchmarks). Prints wall time and flows per second for
routing (building the flows' link incidence) and for the max-min fluid simulation separately.

    python tests/benchmarks/bench_flow_a2a.py            # 32 EP64 groups at once, then EP2048
    python tests/benchmarks/bench_flow_a2a.py --ep 256
"""

from __future__ import annotations

import argparse
import time

from moesim.simulator.network.flows import GB
from moesim.simulator.network.graph_model import GraphNetwork
from moesim.topologies.registry import build_topology
from moesim.workloads.routing import balanced_ep_traffic

GPUS = 2048
GPN = 8
TOKENS, HIDDEN, TOPK, MAX_NODES = 4096, 7168, 8, 4
FP8_TOKEN_BYTES = HIDDEN * (1 + 4 / 128)  # FP8 plus one fp32 scale per 128 channels (DeepSeek-V3 TR §3.3)


def run(net: GraphNetwork, ep: int, stagger_us: float = 0.0) -> None:
    nodes = ep // GPN
    experts = max(256, ep)  # DeepSeek-V3's 256, or one expert per GPU beyond that
    traffic = balanced_ep_traffic(experts, TOPK, nodes, min(MAX_NODES, nodes), ep, GPN, 0)
    wall = time.perf_counter()
    programs = [net.ep(net.members(ep, first=g * ep), TOKENS, FP8_TOKEN_BYTES, traffic)
                for g in range(GPUS // ep)]
    route_s = time.perf_counter() - wall
    flows = sum(p.flows for p in programs)
    wall = time.perf_counter()
    starts = [g * stagger_us * 1e-6 for g in range(len(programs))]
    finish = net.concurrent_s(programs, starts)
    sim_s = time.perf_counter() - wall
    t = max(finish)
    longest = max(f - s for f, s in zip(finish, starts))  # the slowest group's own dispatch time
    rdma = TOKENS * traffic.ib_nodes * FP8_TOKEN_BYTES / longest / GB
    staggered = f", group g starting at g x {stagger_us:g} us" if stagger_us else ""
    print(f"EP{ep} x {GPUS // ep} groups on {GPUS} GPUs (mpft, 8 planes{staggered}): {flows:,} flows "
          f"({traffic.ib_nodes:.2f} IB nodes, {traffic.nvl_copies:.2f} NVLink forwards per token)")
    print(f"  dispatch {longest * 1e6:,.1f} us simulated for the slowest group (all done at {t * 1e6:,.1f} us), "
          f"rdma {rdma:.1f} GB/s per GPU")
    print(f"  routing  {route_s:.2f} s wall, {flows / route_s:,.0f} flows/s")
    print(f"  fluid    {sim_s:.2f} s wall, {flows / sim_s:,.0f} flows/s")
    print(f"  total    {route_s + sim_s:.2f} s wall, {flows / (route_s + sim_s):,.0f} flows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ep", type=int, action="append", help="EP group size (repeatable); default 64 and 2048")
    args = parser.parse_args()
    wall = time.perf_counter()
    g = build_topology("mpft", gpus=GPUS)
    net = GraphNetwork(g, "flow")
    print(f"built the 2048-GPU cluster graph and its router in {time.perf_counter() - wall:.2f} s")
    for ep in args.ep or [64, GPUS]:
        run(net, ep)
    # Staggered starts: groups overlap partially and share the spines, so rates change at every start/finish.
    run(net, 64, stagger_us=50.0)


if __name__ == "__main__":
    main()
