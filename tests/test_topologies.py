"""Topology builders, their sizes and statistics, and routing (ECMP, in-node forwarding, failures)."""

from __future__ import annotations

import json

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.simulator.cli import app
from moesim.topologies.graph import nodes_of_kind
from moesim.topologies.registry import TOPOLOGIES, build_topology
from moesim.topologies.routing import Router, RoutingError, fail
from moesim.topologies.spec import TopologyError
from moesim.topologies.stats import describe


def switch_count(g):
    return len(nodes_of_kind(g, "switch"))


def test_registry_names():
    assert set(TOPOLOGIES) == {"ft2", "ft3", "mpft", "mrft", "rail", "dragonfly", "slimfly"}


def test_largest_instances_match_insights_table_3():
    # "Insights into DeepSeek-V3" Table 3, 64-port switches: FT2 2,048 endpoints / 96 switches,
    # MPFT 16,384 / 768.
    ft2 = describe(build_topology("ft2"), with_bisection=False)
    assert (ft2["endpoints"], ft2["switches"], ft2["switch_links"]) == (2048, 96, 2048)
    mpft = describe(build_topology("mpft"), with_bisection=False)
    assert (mpft["endpoints"], mpft["switches"], mpft["planes"]) == (16384, 768, 8)
    assert mpft["switches_per_tier"] == {"leaf": 512, "spine": 256}


def test_ft3_is_k_cubed_over_4():
    stats = describe(build_topology("ft3", radix=16))
    assert stats["endpoints"] == 16 ** 3 // 4
    assert stats["switches"] == 5 * 16 ** 2 // 4
    assert stats["diameter"] == 4
    assert stats["bisection_gbps"] == pytest.approx(16 ** 3 // 8 * 50.0)  # full bisection at 1:1


def test_small_ft2_hand_counted():
    # 64 GPUs on 64-port switches: two leaves of 32, one spine reached by 32 parallel cables from each.
    g = build_topology("ft2", gpus=64)
    stats = describe(g)
    assert stats["switches_per_tier"] == {"leaf": 2, "spine": 1}
    assert stats["switch_links"] == 64 and stats["endpoint_links"] == 64
    assert stats["bisection_gbps"] == pytest.approx(32 * 50.0)
    assert stats["diameter"] == 2


def test_oversubscription_cuts_bisection():
    full = describe(build_topology("ft2", gpus=128, radix=16))
    assert full["bisection_gbps"] == pytest.approx(64 * 50.0)
    # 3:1 leaves (12 down, 4 up): the first half is 8 full leaves, 32 uplinks of 50 GB/s.
    over = describe(build_topology("ft2", gpus=192, radix=16, oversubscription=3))
    assert over["bisection_gbps"] == pytest.approx(8 * 4 * 50.0)


def test_slimfly_mms_graphs():
    for q, degree in ((5, 7), (3, 5), (7, 11)):
        g = build_topology("slimfly", q=q, radix=2 * degree)
        fabric = nx.Graph(g.subgraph(nodes_of_kind(g, "switch")))
        assert fabric.number_of_nodes() == 2 * q * q
        assert {d for _, d in fabric.degree()} == {degree}
        assert nx.diameter(fabric) == 2


def test_dragonfly_canonical():
    g = build_topology("dragonfly", radix=16)  # p = h = 4, a = 8, groups = a·h + 1 = 33
    routers = nodes_of_kind(g, "switch")
    assert len(routers) == 33 * 8
    fabric = nx.Graph(g.subgraph(routers))
    global_pairs = {tuple(sorted((u.split(".")[0], v.split(".")[0]))) for u, v in fabric.edges()
                    if u.split(".")[0] != v.split(".")[0]}
    assert len(global_pairs) == 33 * 32 // 2  # every pair of groups joined exactly once
    assert max(d for _, d in fabric.degree()) == 7 + 4
    assert describe(g)["diameter"] == 3


def test_gpu_variants_set_nvlink():
    h800 = build_topology("ft2", gpus=8, gpu="h800")
    h200 = build_topology("ft2", gpus=8, gpu="h200")
    assert h800.edges["n0.gpu0", "n0.nvs"]["capacity_gbps"] == 200
    assert h200.edges["n0.gpu0", "n0.nvs"]["capacity_gbps"] == 450


@pytest.mark.parametrize("kind,gpus", [("ft2", 4096), ("rail", 1024), ("mpft", 32768)])
def test_too_big_for_radix_is_one_clear_line(kind, gpus):
    with pytest.raises(TopologyError) as err:
        build_topology(kind, gpus=gpus)
    assert "--radix" in str(err.value) and "\n" not in str(err.value)


def test_mpft_cross_plane_traffic_is_forwarded_inside_the_node():
    r = Router(build_topology("mpft", gpus=128, radix=8))
    same_plane = r.path_links("n0.gpu2", "n9.gpu2")
    assert all(r.g.edges[u, v]["link"] != "nvlink" for u, v, _ in same_plane)
    assert {r.g.nodes[v]["plane"] for u, v, _ in same_plane if r.g.nodes[v]["kind"] == "switch"} == {2}
    cross = r.path_links("n0.gpu2", "n9.gpu5")
    assert ("n0.gpu2", "n0.nvs", 1.0) in cross and ("n0.nvs", "n0.gpu5", 1.0) in cross
    assert {r.g.nodes[v]["plane"] for u, v, _ in cross if r.g.nodes[v]["kind"] == "switch"} == {5}


def test_rail_only_crosses_rails_over_nvlink():
    r = Router(build_topology("rail", gpus=64))
    links = r.path_links("n0.gpu1", "n3.gpu6")
    assert ("n0.nvs", "n0.gpu6", 1.0) in links and ("n0.nic6", "rail6", 1.0) in links


def test_ecmp_splits_evenly_over_spines():
    r = Router(build_topology("ft2", gpus=128, radix=16))  # 16 leaves of 8, 8 spines
    links = r.path_links("n0.gpu0", "n15.gpu0")
    up = [w for u, v, w in links if u == "leaf0"]
    assert len(up) == 8 and all(w == pytest.approx(1 / 8) for w in up)
    assert r.route("n0.gpu0", "n15.gpu0").latency_us == pytest.approx(3.7)  # "Insights" Table 5
    assert r.route("n0.gpu0", "n0.gpu1").latency_us == pytest.approx(3.33)


def test_failures_recompute_routes():
    g = build_topology("ft2", gpus=128, radix=16)
    broken = fail(g, switches=["spine0"])
    links = Router(broken).path_links("n0.gpu0", "n15.gpu0")
    up = [w for u, v, w in links if u == "leaf0"]
    assert len(up) == 7 and sum(up) == pytest.approx(1.0)
    assert "spine0" in g  # the original is untouched
    cut = fail(g, switches=[f"spine{i}" for i in range(8)])
    with pytest.raises(RoutingError):
        Router(cut).route("n0.gpu0", "n15.gpu0")


def test_failed_lane_of_a_bundle_keeps_the_rest():
    g = build_topology("ft2", gpus=64)  # leaf0-spine0 folds 32 cables
    broken = fail(g, links=[("leaf0", "spine0")])
    assert broken.edges["leaf0", "spine0"]["lanes"] == 31
    assert broken.edges["spine0", "leaf0"]["capacity_gbps"] == pytest.approx(31 * 50.0)


def _conserved(router: Router, src: str, dst: str) -> None:
    balance: dict[str, float] = {}
    for u, v, w in router.path_links(src, dst):
        balance[u] = balance.get(u, 0.0) - w
        balance[v] = balance.get(v, 0.0) + w
    assert balance.pop(src) == pytest.approx(-1.0)
    assert balance.pop(dst) == pytest.approx(1.0)
    assert all(abs(x) < 1e-9 for x in balance.values())


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["mpft", "ft3", "dragonfly", "slimfly", "mrft"]), a=st.integers(0, 10 ** 6),
       b=st.integers(0, 10 ** 6))
def test_routes_conserve_bytes(kind, a, b):
    router = _ROUTERS[kind]
    src, dst = router.gpus[a % len(router.gpus)], router.gpus[b % len(router.gpus)]
    if src != dst:
        _conserved(router, src, dst)


_ROUTERS = {
    "mpft": Router(build_topology("mpft", gpus=256, radix=8)),
    "ft3": Router(build_topology("ft3", radix=8)),
    "dragonfly": Router(build_topology("dragonfly", radix=8)),
    "slimfly": Router(build_topology("slimfly", q=5, radix=12)),
    "mrft": Router(build_topology("mrft", radix=16)),
}


def test_cli_describe_json(runner):
    out = runner.invoke(app, ["topology", "describe", "mpft", "--radix", "16", "--json"])
    assert out.exit_code == 0, out.output
    stats = json.loads(out.output)
    for key in ("endpoints", "switches", "switch_links", "endpoint_links", "bisection_gbps", "diameter"):
        assert key in stats
    assert stats["endpoints"] == 8 * 16 * 8


def test_cli_describe_bad_size_and_draw(runner, tmp_path):
    out = runner.invoke(app, ["topology", "describe", "ft2", "--gpus", "4096"])
    assert out.exit_code == 2 and "at most 2048" in out.output and "Traceback" not in out.output
    page = tmp_path / "t.html"
    out = runner.invoke(app, ["topology", "describe", "ft2", "--gpus", "32", "--radix", "8", "--draw", str(page)])
    assert out.exit_code == 0, out.output
    assert "plotly" in page.read_text()
    page.write_text("mine")
    out = runner.invoke(app, ["topology", "describe", "ft2", "--gpus", "32", "--radix", "8", "--draw", str(page)])
    assert out.exit_code == 2 and page.read_text() == "mine"
