"""``moesim collective NAME``: price one collective (or DeepSeek-style EP dispatch/combine) on a topology."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from moesim.simulator.cli import app, console, fail
from moesim.simulator.commands.topology import parse_links, spec_from_options
from moesim.simulator.limits import MAX_FLOWS, check_size
from moesim.simulator.network.collectives import check_flow_state
from moesim.simulator.network.flows import GB
from moesim.simulator.network.graph_model import COLLECTIVES, FIDELITIES, GraphNetwork
from moesim.topologies.registry import build
from moesim.topologies.routing import fail as fail_elements
from moesim.topologies.spec import TopologyError, topology_defaults
from moesim.workloads.quantities import BYTES, FRACTION, OVERSUBSCRIPTION

EP_NAMES = ("ep-dispatch", "ep-combine")
# Efficiencies as in moesim.workloads.scenario.NetworkSpec: "Insights into DeepSeek-V3" §4.3 (~40 of 50 GB/s per
# 400G NIC) and DeepSeek-V3 TR §3.2.2 / DeepEP README (~160 of 200 GB/s NVLink per direction on H800).
# EP dispatch/combine alone move at what DeepEP's kernels reach alone (moesim.calibration.deepep.isolated_rates).
NIC_EFFICIENCY = 0.8
NVLINK_EFFICIENCY = 0.8
NOTIFY_BYTES_PER_EXPERT = 4  # DeepEP's notify: an int32 token count per expert to every peer


def parse_bytes(text: str) -> float:
    """``4096``, ``1e9``, ``256MB``, ``64MiB`` → bytes (the shared size rule of moesim.workloads.quantities)."""
    try:
        return BYTES(text)
    except ValueError as err:
        fail(f"--bytes {text!r}: {err}")


@app.command("collective")
def collective(
    name: str = typer.Argument(..., help=f"One of {', '.join(COLLECTIVES + EP_NAMES)}."),
    topology: str = typer.Option("mpft", "--topology", "-t", help="Topology kind (see `moesim topology list`)."),
    gpus: Optional[int] = typer.Option(None, "--gpus", min=1, max=1_000_000,
                                       help="GPUs taking part (default: --ep for EP, else 64)."),
    cluster_gpus: Optional[int] = typer.Option(None, "--cluster-gpus", min=1, max=1_000_000,
                                               help="GPUs in the topology (default --gpus)."),
    nbytes: str = typer.Option("256MB", "--bytes", help="Bytes per rank (all-to-all: all it sends)."),
    matrix: Optional[Path] = typer.Option(None, "--matrix", help="all-to-all traffic matrix: JSON list of rows "
                                          "or CSV, bytes from member i to member j (overrides --bytes)."),
    fidelity: str = typer.Option("analytic", "--fidelity", help="analytic or flow."),
    radix: Optional[int] = typer.Option(None, "--radix", min=2, max=4096),
    planes: Optional[int] = typer.Option(None, "--planes", min=1, max=1024),
    oversubscription: Optional[float] = typer.Option(None, "--oversubscription", parser=OVERSUBSCRIPTION.parser()),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="GPU catalogue key for the NVLink rate, e.g. h800, "
                                      "b200, gb200."),
    rack: Optional[str] = typer.Option(None, "--rack", help="Rack-scale NVLink domain (nvl72, nvl36x2): each "
                                       "node is one domain of its GPUs."),
    nic_efficiency: Optional[float] = typer.Option(
        None, "--nic-efficiency", parser=FRACTION.parser(),
        help=f"Achievable fraction of the NIC rate (0 < x ≤ 1); default {NIC_EFFICIENCY}, for ep-* what DeepEP's "
             "kernels reach alone."),
    nvlink_efficiency: Optional[float] = typer.Option(
        None, "--nvlink-efficiency", parser=FRACTION.parser(),
        help=f"Achievable fraction of the NVLink rate (0 < x ≤ 1); default {NVLINK_EFFICIENCY}, for ep-* what "
             "DeepEP's kernels reach alone."),
    ep: int = typer.Option(64, "--ep", min=1, max=1_000_000, help="EP group size (ep-dispatch/ep-combine)."),
    tokens: int = typer.Option(4096, "--tokens", min=1, max=10_000_000, help="Tokens per GPU."),
    hidden: int = typer.Option(7168, "--hidden", min=1, max=1_000_000),
    topk: int = typer.Option(8, "--topk", min=1, max=1024),
    experts: int = typer.Option(256, "--experts", min=1, max=1_000_000, help="Routed experts."),
    max_nodes: int = typer.Option(4, "--max-nodes", min=1, max=1_000_000,
                                  help="Node-limited routing: nodes a token may reach."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="fp8 (with per-128 scales) or bf16; default fp8 "
                                        "for dispatch, bf16 for combine."),
    seed: int = typer.Option(0, "--seed"),
    deepep: bool = typer.Option(False, "--deepep", help="ep-*: price DeepEP's published benchmark set-ups "
                                "(EP8…EP64, its test's routing) and compare with its figures."),
    fail_link: Optional[list[str]] = typer.Option(None, "--fail-link", help="Cable u:v to remove (repeatable)."),
    fail_switch: Optional[list[str]] = typer.Option(None, "--fail-switch", help="Switch to remove (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Time, algorithm bandwidth and bytes per link class of one collective; EP adds DeepEP's RDMA/NVL GB/s."""
    from moesim.workloads.layers import element_bytes
    from moesim.workloads.routing import SAMPLE_TOKENS, sample_balanced

    if name not in COLLECTIVES + EP_NAMES:
        fail(f"unknown collective {name!r}; choose one of {', '.join(COLLECTIVES + EP_NAMES)}")
    if fidelity not in FIDELITIES:
        fail(f"--fidelity {fidelity!r}: choose analytic or flow")
    is_ep = name in EP_NAMES
    if deepep:
        if not is_ep:
            fail("--deepep applies to ep-dispatch and ep-combine only")
        rows = deepep_comparison(name, topology, fidelity, nic_efficiency, nvlink_efficiency, seed)
        if as_json:
            print(json.dumps(rows, indent=1))
        else:
            print_deepep(name, fidelity, rows)
        return
    nic_efficiency, nvlink_efficiency = link_efficiencies(is_ep, nic_efficiency, nvlink_efficiency)
    members_n = gpus or (ep if is_ep else 64)
    if is_ep and gpus is not None and gpus != ep:
        fail(f"--gpus {gpus} differs from --ep {ep}; an EP collective runs over the --ep GPUs")
    if cluster_gpus is not None and cluster_gpus < members_n:  # never grow the cluster the user named
        flag = f"--ep {ep}" if is_ep else f"--gpus {members_n}"
        fail(f"{flag} is more GPUs than --cluster-gpus {cluster_gpus}; raise --cluster-gpus or lower {flag.split()[0]}")
    size = cluster_gpus or members_n
    try:
        spec = spec_from_options(topology, radix, planes, size, oversubscription, gpu, None, None, None, rack=rack)
        gpn = spec.gpus_per_node
        if name == "all-to-all" or is_ep:  # every member sends to every other: flows grow as members²
            check_size(f"{name} flows over {members_n} GPUs", members_n * (members_n - 1), MAX_FLOWS,
                       "use fewer --gpus" + (" (--ep)" if is_ep else ""))
        check_flow_state(name, members_n, gpn)  # and their state must fit in memory
        g = build(spec)
        g = fail_elements(g, parse_links(fail_link), fail_switch or [])
        net = GraphNetwork(g, fidelity, nvlink_efficiency, nic_efficiency)
        members = net.members(members_n)
        extra = {}
        if is_ep:
            dtype = dtype or ("fp8" if name == "ep-dispatch" else "bf16")
            if dtype not in ("fp8", "bf16"):
                fail(f"--dtype {dtype!r}: choose fp8 or bf16")
            nodes = max(1, ep // gpn)
            if experts % ep or experts % nodes:
                fail(f"--experts {experts} must divide evenly over --ep {ep} GPUs and their {nodes} nodes")
            if not 1 <= max_nodes <= nodes and nodes > 1:
                fail(f"--max-nodes {max_nodes} must be between 1 and the {nodes} nodes of --ep {ep}")
            if topk > min(max_nodes, nodes) * (experts // nodes):
                fail(f"--topk {topk} exceeds the experts on --max-nodes {max_nodes} nodes")
            # DeepSeek-V3's gate (node-limited, uniform affinities), as the simulator routes.
            ids = sample_balanced(experts, topk, nodes, min(max_nodes, nodes), SAMPLE_TOKENS, seed)
            per_rank = tokens * topk * hidden * element_bytes(dtype)
            result, extra = ep_collective(net, members, name, ids, experts, tokens, hidden * element_bytes(dtype),
                                          per_rank, gpn)
            extra["dtype"] = dtype
        else:
            per_rank = parse_bytes(nbytes)
            traffic_matrix = None
            if matrix is not None:
                if name != "all-to-all":
                    fail("--matrix applies to all-to-all only")
                traffic_matrix = read_matrix(matrix, members_n)
                per_rank = float(traffic_matrix.sum(axis=1).mean())
            program = net.collective(name, members, per_rank, traffic_matrix)
            result = net.result(program, members_n, per_rank)
    except (TopologyError, ValueError) as err:  # ScenarioError (a size guard) is a ValueError too
        fail(str(err))
    out = {"collective": name, "topology": topology, "fidelity": fidelity, "gpus": members_n,
           "time_us": result.time_s * 1e6, "bytes_per_rank": per_rank, "algbw_gbps": result.algbw_gbps,
           "link_bytes": result.link_bytes, "bottleneck": result.bottleneck, "flows": result.flows,
           "steps": result.steps, "nic_efficiency": nic_efficiency, "nvlink_efficiency": nvlink_efficiency,
           **extra}
    if as_json:
        print(json.dumps(out, indent=1))
        return
    print_collective(out)


def link_efficiencies(is_ep: bool, nic: float | None, nvlink: float | None) -> tuple[float, float]:
    """The NIC and NVLink fractions to price with: the user's, else 0.8 / 0.8, or for an EP collective what
    DeepEP's kernels reach alone (derived from its published table, :mod:`moesim.calibration.deepep`)."""
    if is_ep and (nic is None or nvlink is None):
        from moesim.calibration.deepep import isolated_efficiencies

        ep_nic, ep_nvlink = isolated_efficiencies()
        return (ep_nic if nic is None else nic), (ep_nvlink if nvlink is None else nvlink)
    return (NIC_EFFICIENCY if nic is None else nic), (NVLINK_EFFICIENCY if nvlink is None else nvlink)


def ep_collective(net: GraphNetwork, members: list[str], name: str, expert_ids, experts: int, tokens: int,
                  token_bytes: float, per_rank: float, gpus_per_node: int | None = None):
    """Price a DeepEP dispatch or combine of tokens routed to ``expert_ids``: its notify (token counts to every
    peer) then its transfers; and DeepEP's figures for that time (:func:`moesim.calibration.deepep.deepep_figures`)."""
    from moesim.calibration.deepep import deepep_figures
    from moesim.workloads.routing import EpTraffic, ep_counts

    gpn = gpus_per_node or topology_defaults()["gpus_per_node"]
    counts = ep_counts(expert_ids, experts, len(members), gpn)
    traffic = EpTraffic(counts.remote_nodes, counts.nvl_forwards, 1.0)
    notify_s = net.time_s(net.collective("all-to-all", members, experts * NOTIFY_BYTES_PER_EXPERT))
    program = net.ep(members, tokens, token_bytes, traffic, combine=name == "ep-combine")
    transfer = net.result(program, len(members), per_rank)
    time_s = notify_s + transfer.time_s
    result = replace(transfer, time_s=time_s, algbw_gbps=per_rank / time_s / GB if time_s > 0 else 0.0)
    extra = {"tokens": tokens, "notify_us": notify_s * 1e6, "nodes_per_token": counts.nodes,
             "ib_nodes_per_token": counts.remote_nodes, "ranks_per_token": counts.ranks,
             "nvl_copies_per_token": counts.nvl_forwards,
             # DeepEP's test: RDMA = every node a token reaches (its own too), NVL = rows each rank receives.
             **deepep_figures(counts, tokens, token_bytes, time_s)}
    return result, extra


def deepep_comparison(name: str, topology: str, fidelity: str, nic: float | None, nvlink: float | None,
                      seed: int) -> list[dict]:
    """Every row of DeepEP's published table priced as its test runs it, beside the published figure."""
    from moesim.calibration.deepep import calibrates, deepep_test_routing, load_table, token_bytes as deepep_token_bytes

    table = load_table()
    kind = "combine" if name == "ep-combine" else "dispatch"
    nic, nvlink = link_efficiencies(True, nic, nvlink)
    rows = []
    for row in table.rows:
        nodes = table.nodes(row.ep)
        g = build(spec_from_options(topology, None, None, row.ep, None, "h800", None, None, None))
        net = GraphNetwork(g, fidelity, nvlink, nic)
        ids = deepep_test_routing(table.tokens, table.experts, table.top_k, nodes,
                                  min(nodes, table.groups_per_token_max), seed)
        tb = deepep_token_bytes(table.hidden, kind)
        result, extra = ep_collective(net, net.members(row.ep), name, ids, table.experts, table.tokens, tb,
                                      table.tokens * table.top_k * tb)
        published = row.dispatch_gbps if kind == "dispatch" else row.combine_gbps
        figure = extra[f"{row.figure}_gbps"]
        rows.append({"ep": row.ep, "figure": row.figure, "published_gbps": published, "moesim_gbps": figure,
                     "error": figure / published - 1, "time_us": result.time_s * 1e6,
                     "bottleneck": result.bottleneck, "held_out": not calibrates(table, row.ep)})
    return rows


def print_deepep(name: str, fidelity: str, rows: list[dict]) -> None:
    from moesim.calibration.deepep import load_table

    t = load_table()
    console.print(f"[bold]{name}[/] as DeepEP's benchmark runs it ({t.tokens} tokens, hidden {t.hidden}, "
                  f"top-{t.top_k} of {t.experts} experts, FP8 dispatch / BF16 combine; {fidelity} fidelity)",
                  highlight=False)
    table = Table()
    for col in ("EP", "figure", "DeepEP GB/s", "moesim GB/s", "error", "time µs", "bound by", "row"):
        table.add_column(col, justify="right" if col not in ("figure", "bound by", "row") else "left")
    for r in rows:
        table.add_row(str(r["ep"]), r["figure"].upper(), f"{r['published_gbps']:.0f}", f"{r['moesim_gbps']:.1f}",
                      f"{r['error']:+.1%}", f"{r['time_us']:,.0f}", r["bottleneck"],
                      "held out" if r["held_out"] else "calibrates")
    console.print(table)
    console.print("DeepEP: docs/legacy.md (H800, CX7 400 Gb/s); figures computed as its tests compute them.",
                  highlight=False)


def read_matrix(path: Path, size: int):
    """A size × size matrix of bytes from a JSON list of rows or a CSV file; one-line errors otherwise (a value
    that is not a finite number ≥ 0 is named by its row and column)."""
    import numpy as np

    from moesim.workloads.documents import decode, parse_document
    from moesim.workloads.errors import ScenarioError
    from moesim.workloads.files import check_input

    where = f"--matrix {path}"
    try:
        raw = check_input(path, MAX_MATRIX_BYTES, where).read_bytes()
        if path.suffix == ".json":
            rows = parse_document(raw, where, "json")
        else:
            rows = [line.split(",") for line in decode(raw, where).splitlines() if line.strip()]
    except ScenarioError as err:
        fail(str(err))
    except OSError as err:
        fail(f"{where}: cannot read: {err.strerror or err}")
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        fail(f"{where}: give a list of rows (JSON [[...], ...] or CSV lines), bytes from member i to member j")
    if len(rows) != size or any(len(r) != size for r in rows):
        got = f"{len(rows)} rows of {sorted({len(r) for r in rows})} values" if rows else "no rows"
        fail(f"{where}: {got} but --gpus is {size}; give a {size}x{size} matrix")
    m = np.zeros((size, size))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            m[i, j] = _matrix_bytes(value, where, i, j)
    return m


MAX_MATRIX_BYTES = 200_000_000  # 1,000 × 1,000 members of 20-character numbers, with room to spare
MAX_MATRIX_ENTRY = 1e15  # bytes one GPU sends another in one collective: a PB is far beyond any HBM


def _matrix_bytes(value, where: str, i: int, j: int) -> float:
    """One entry of a traffic matrix: a finite number of bytes in [0, MAX_MATRIX_ENTRY]."""
    text = value.strip() if isinstance(value, str) else value
    try:
        number = float(text) if isinstance(text, str) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    if number is None or not 0 <= number <= MAX_MATRIX_ENTRY:  # NaN fails both comparisons
        fail(f"{where}: row {i} column {j} is {str(value).strip()[:30]!r}; give bytes as a finite number from 0 to "
             f"{MAX_MATRIX_ENTRY:g}")
    return number


def print_collective(out: dict) -> None:
    console.print(f"[bold]{out['collective']}[/] over {out['gpus']} GPUs on {out['topology']} "
                  f"({out['fidelity']} fidelity)", highlight=False)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("time", f"{out['time_us']:,.1f} µs")
    table.add_row("algorithm bandwidth", f"{out['algbw_gbps']:,.1f} GB/s (bytes per rank / time)")
    if "rdma_gbps" in out:
        table.add_row("of which notify", f"{out['notify_us']:,.1f} µs")
        table.add_row("RDMA as DeepEP counts it", f"{out['rdma_gbps']:,.1f} GB/s (nodes reached, own too)")
        table.add_row("NVL as DeepEP counts it", f"{out['nvl_gbps']:,.1f} GB/s (rows received, own too)")
        table.add_row("per token", f"{out['nodes_per_token']:.2f} nodes ({out['ib_nodes_per_token']:.2f} over IB), "
                                   f"{out['ranks_per_token']:.2f} GPUs ({out['nvl_copies_per_token']:.2f} over "
                                   f"NVLink), {out['dtype']}")
    table.add_row("bottleneck link class", out["bottleneck"])
    table.add_row("flows × steps", f"{out['flows']:,} in {out['steps']:,} steps")
    for cls, b in out["link_bytes"].items():
        table.add_row(f"bytes on {cls} links", f"{b / 1e9:,.3f} GB")
    console.print(table)
