"""``moesim topology list|describe|route``: build a cluster graph, summarise it, draw it, show a route."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from moesim.simulator.cli import app, console, fail
from moesim.topologies.registry import TOPOLOGIES, build
from moesim.topologies.spec import TopologyError, make_spec
from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import check_target, write_atomic
from moesim.workloads.quantities import BANDWIDTH_GBYTES_PER_S, OVERSUBSCRIPTION

topology_app = typer.Typer(no_args_is_help=True, help="Build, describe and draw cluster topologies.")
app.add_typer(topology_app, name="topology")

RADIX = typer.Option(None, "--radix", min=2, max=4096, help="Switch ports (default 64).")
PLANES = typer.Option(None, "--planes", min=1, max=1024, help="Planes of a multi-plane fat-tree (default 8).")
GPUS = typer.Option(None, "--gpus", min=1, max=1_000_000,
                    help="GPUs (whole nodes); default: the largest the radix allows.")
OVERSUB = typer.Option(None, "--oversubscription", parser=OVERSUBSCRIPTION.parser(),
                       help="Leaf down:up port ratio (default 1).")
GPU = typer.Option(None, "--gpu", help="GPU catalogue key for NVLink, e.g. h800, b200, gb200 (default h800).")
GPN = typer.Option(None, "--gpus-per-node", min=1, max=1024, help="GPUs per node (default 8).")
NPN = typer.Option(None, "--nics-per-node", min=1, max=1024, help="NICs per node (default 8).")
NIC = typer.Option(None, "--nic-gbytes-per-s", parser=BANDWIDTH_GBYTES_PER_S.parser(),
                   help="NIC and switch-port rate per direction: GB/s, or with a unit (400Gb/s = 50GB/s; default 50).")
P = typer.Option(None, "--p", min=1, max=4096, help="Dragonfly endpoints per router.")
A = typer.Option(None, "--a", min=1, max=4096, help="Dragonfly routers per group.")
H = typer.Option(None, "--h", min=1, max=4096, help="Dragonfly global links per router.")
GROUPS = typer.Option(None, "--groups", min=1, max=100_000, help="Dragonfly groups.")
Q = typer.Option(None, "--q", min=2, max=4096, help="Slim Fly prime q.")
RACK = typer.Option(None, "--rack", help="Rack-scale NVLink domain, each node one domain: nvl72 or nvl36x2 "
                    "(topologies/data/racks.yaml).")


def spec_from_options(kind, radix, planes, gpus, oversubscription, gpu, gpus_per_node, nics_per_node,
                      nic_gbps, p=None, a=None, h=None, groups=None, q=None, rack=None):
    if kind not in TOPOLOGIES:
        fail(f"unknown topology {kind!r}; choose one of {', '.join(TOPOLOGIES)}")
    return make_spec(kind, radix=radix, planes=planes, gpus=gpus, oversubscription=oversubscription, gpu=gpu,
                     gpus_per_node=gpus_per_node, nics_per_node=nics_per_node, nic_gbps=nic_gbps,
                     switch_gbps=nic_gbps, p=p, a=a, h=h, groups=groups, q=q, rack=rack)


@topology_app.command("list")
def topology_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The registered topologies."""
    rows = [{"name": t.name, "description": t.description} for t in TOPOLOGIES.values()]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table("topology", "description")
    for row in rows:
        table.add_row(row["name"], row["description"])
    console.print(table)


@topology_app.command("describe")
def describe(kind: str = typer.Argument(..., help=f"One of {', '.join(TOPOLOGIES)}."),
             radix: Optional[int] = RADIX, planes: Optional[int] = PLANES, gpus: Optional[int] = GPUS,
             oversubscription: Optional[float] = OVERSUB, gpu: Optional[str] = GPU,
             gpus_per_node: Optional[int] = GPN, nics_per_node: Optional[int] = NPN,
             nic_gbps: Optional[float] = NIC, p: Optional[int] = P, a: Optional[int] = A, h: Optional[int] = H,
             groups: Optional[int] = GROUPS, q: Optional[int] = Q, rack: Optional[str] = RACK,
             as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
             draw: Optional[Path] = typer.Option(None, "--draw", help="Write an interactive plotly HTML picture."),
             force: bool = typer.Option(False, "--force", help="Overwrite the --draw file if it exists.")) -> None:
    """Endpoints, switches per tier, links, bisection bandwidth and diameter of a topology."""
    from moesim.topologies.stats import describe as summarise

    try:
        if draw is not None:
            check_target(draw, force, "--draw")
        spec = spec_from_options(kind, radix, planes, gpus, oversubscription, gpu, gpus_per_node, nics_per_node,
                                 nic_gbps, p, a, h, groups, q, rack)
        g = build(spec)
    except (TopologyError, KeyError, ScenarioError) as err:
        fail(str(err).strip("'\""))
    if draw is not None:
        from moesim.simulator.report.page import standalone_html
        from moesim.simulator.report.topology_view import topology_figure
        try:
            fig = topology_figure(g, f"{kind}: {g.graph['nodes']} nodes, radix {spec.radix}")
        except ValueError as err:
            fail(str(err))
        try:  # plotly.js inlined: the picture opens offline
            write_atomic(draw, standalone_html(fig, fig.layout.title.text or "moesim topology"), force, "--draw")
        except ScenarioError as err:
            fail(str(err))
    if as_json:
        stats = summarise(g)
    else:  # the largest dragonfly takes tens of seconds for bisection and diameter
        with console.status(f"measuring {g.number_of_nodes():,} nodes: bisection (max flow) and diameter"):
            stats = summarise(g)
    if as_json:
        print(json.dumps(stats, indent=1))
        return
    console.print(f"[bold]{kind}[/] — {TOPOLOGIES[kind].description}; radix {spec.radix}"
                  + (f", {stats['planes']} planes" if stats["planes"] > 1 else ""), highlight=False)
    tiers = ", ".join(f"{k} {v:,}" for k, v in stats["switches_per_tier"].items())
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("GPUs", f"{stats['gpus']:,} ({stats['nodes']:,} nodes of {spec.gpus_per_node})"),
        ("endpoints (NICs on the fabric)", f"{stats['endpoints']:,}"),
        ("switches", f"{stats['switches']:,} ({tiers})" if tiers else "0"),
        ("switch-to-switch links", f"{stats['switch_links']:,}"),
        ("endpoint links", f"{stats['endpoint_links']:,}"),
        ("bisection bandwidth", f"{stats['bisection_gbps']:,.0f} GB/s per direction"),
        ("diameter", f"{stats['diameter']} switch-to-switch hops"
         + ("" if stats["diameter_exact"] else " (from a sample of sources)")),
    ]
    domain = stats.get("nvlink_domain")
    if domain is not None:
        rows += [
            ("NVLink domains", f"{domain['nvlink_domains']:,} × {domain['rack']} ({domain['gpus_per_domain']} GPUs "
                               f"each, {domain['gpus_used_per_domain']} in use, {domain['racks']:,} racks)"),
            ("compute trays", f"{domain['compute_trays']:,} ({domain['cpus']:,} Grace CPUs)"),
            ("NVLink Switch trays", f"{domain['nvlink_switch_trays']:,} ({domain['nvlink_switch_chips']:,} "
                                    "switch chips)"),
            ("GPU–switch NVLink links", f"{domain['gpu_nvlink_links']:,} ({domain['nvlink_gbps_per_gpu']:g} GB/s "
                                        "per GPU per direction)"),
            ("cross-rack NVLink links", f"{domain['cross_rack_nvlink_links']:,}"),
        ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if draw is not None:
        console.print(f"wrote {draw}", highlight=False)


@topology_app.command("route")
def route(kind: str = typer.Argument(..., help=f"One of {', '.join(TOPOLOGIES)}."),
          src: str = typer.Option(..., "--src", help="Source GPU, e.g. n0.gpu0."),
          dst: str = typer.Option(..., "--dst", help="Destination GPU, e.g. n9.gpu3."),
          radix: Optional[int] = RADIX, planes: Optional[int] = PLANES, gpus: Optional[int] = GPUS,
          oversubscription: Optional[float] = OVERSUB,
          fail_link: Optional[list[str]] = typer.Option(None, "--fail-link", help="Cable u:v to remove (repeatable)."),
          fail_switch: Optional[list[str]] = typer.Option(None, "--fail-switch", help="Switch to remove."),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """The links a transfer from ``--src`` to ``--dst`` loads, with the ECMP fraction on each."""
    from moesim.topologies.routing import Router, fail as fail_elements

    try:
        g = build(spec_from_options(kind, radix, planes, gpus, oversubscription, None, None, None, None))
        g = fail_elements(g, parse_links(fail_link), fail_switch or [])
        router = Router(g)
        for name in (src, dst):
            if name not in router.gpus:
                fail(f"--src/--dst {name!r} is not a GPU of this topology; GPUs are named like n0.gpu0")
        links = router.path_links(src, dst)
        latency = router.route(src, dst).latency_us
    except TopologyError as err:
        fail(str(err))
    if as_json:
        print(json.dumps({"latency_us": latency, "links": [{"from": u, "to": v, "fraction": w}
                                                          for u, v, w in links]}, indent=1))
        return
    table = Table("from", "to", "class", "fraction", title=f"{src} → {dst}: {latency:.2f} µs", title_justify="left")
    for u, v, w in links:
        table.add_row(u, v, g.edges[u, v]["link"], f"{w:.3f}")
    console.print(table)


def parse_links(values: Optional[list[str]]) -> list[tuple[str, str]]:
    out = []
    for value in values or []:
        if ":" not in value:
            fail(f"--fail-link {value!r}: write a cable as u:v, e.g. p0.leaf0:p0.spine0")
        u, v = value.split(":", 1)
        out.append((u, v))
    return out
