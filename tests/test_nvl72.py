"""Rack-scale NVLink domains (GB200 NVL72, NVL36x2): the parts `topology describe` counts against NVIDIA's rack
description, and expert parallelism inside a domain (NVLink only) or across domains (DeepEP-style forwarding)."""

from __future__ import annotations

import json

import pytest

from moesim.simulator.cli import app
from moesim.topologies.registry import build_topology
from moesim.topologies.spec import TopologyError
from moesim.topologies.stats import describe
from moesim.workloads.loader import load_scenario


def test_nvl72_counts_follow_the_published_rack_description():
    # NVIDIA's Grace-Blackwell tuning guide, 72x1: one rack of 18 compute trays of 4 GPUs and 9 NVLink Switch
    # trays; the NVL72 page: 36 Grace CPUs and 130 TB/s of NVLink per rack; the Blackwell brief: 18 NVLink links
    # per GPU, 72-port switch chips, two per tray.
    stats = describe(build_topology("mpft", rack="nvl72", gpu="gb200", gpus=144), with_bisection=False)
    domain = stats["nvlink_domain"]
    assert (stats["gpus"], stats["nodes"], stats["endpoints"]) == (144, 2, 144)  # one ConnectX-7 per GPU
    assert (domain["racks"], domain["compute_trays"], domain["cpus"]) == (2, 36, 72)
    assert (domain["nvlink_switch_trays"], domain["nvlink_switch_chips"]) == (18, 36)
    assert domain["gpu_nvlink_links"] == 2 * 72 * 18 == 36 * 72  # every switch-chip port serves one GPU link
    assert domain["cross_rack_nvlink_links"] == 0
    rack_tbps = 72 * domain["nvlink_gbps_per_gpu"] * 2 / 1000  # bidirectional, as NVIDIA quotes it
    assert abs(rack_tbps - 130) <= 0.5  # "130 TB/s" rounded from 72 × 1.8 TB/s


def test_nvl36x2_is_two_racks_per_domain():
    # Tuning guide, 36x2: per rack 9 (2RU) compute trays of 4 GPUs and 9 NVLink Switch trays; two racks per domain.
    stats = describe(build_topology("mpft", rack="nvl36x2", gpu="gb200", gpus=72), with_bisection=False)
    domain = stats["nvlink_domain"]
    assert (stats["nodes"], domain["racks"], domain["compute_trays"], domain["nvlink_switch_trays"]) == (1, 2, 18, 18)
    # 36 chips × 72 ports = 1,296 GPU links + 2 ends × 648 cross-rack links (derived, not published).
    assert (domain["nvlink_switch_chips"], domain["gpu_nvlink_links"], domain["cross_rack_nvlink_links"]) == \
        (36, 1296, 648)


def test_rack_refuses_more_gpus_per_node_than_a_domain_and_unknown_racks():
    with pytest.raises(TopologyError, match="exceeds the 72 GPUs of one nvl72"):
        build_topology("mpft", rack="nvl72", gpus_per_node=80, gpus=160)
    with pytest.raises(TopologyError, match="unknown rack 'nvl144'; known: nvl36x2, nvl72"):
        build_topology("mpft", rack="nvl144")


def _ep(runner, *args):
    result = runner.invoke(app, ["collective", "ep-dispatch", "--rack", "nvl72", "--gpu", "gb200", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_ep_inside_one_nvlink_domain_uses_no_nic_bytes(runner):
    out = _ep(runner, "--ep", "64")
    assert out["link_bytes"]["nic"] == 0.0 and out["link_bytes"]["pcie"] == 0.0
    assert out["ib_nodes_per_token"] == 0.0 and out["bottleneck"] == "nvlink"


def test_ep_across_domains_crosses_the_fabric_once_per_remote_domain(runner):
    # EP144 over two NVL72 domains (288 experts, a token reaches at most 2 domains): DeepEP-style forwarding sends a
    # token over InfiniBand once per remote domain, then over NVLink; NIC links carry it out and in (two traversals).
    out = _ep(runner, "--ep", "144", "--experts", "288", "--max-nodes", "2")
    token_bytes = 7168 + 7168 // 128 * 4  # FP8 hidden + one FP32 scale per 128 channels
    expected = 2 * 144 * 4096 * token_bytes * out["ib_nodes_per_token"]
    assert out["link_bytes"]["nic"] == pytest.approx(expected, rel=1e-9)
    assert 0 < out["ib_nodes_per_token"] <= 1.0


def test_ep_straddling_nvlink_domains_is_refused():
    from moesim.workloads.errors import ScenarioError

    with pytest.raises(ScenarioError, match="parallelism.ep=64 does not divide cluster.node.gpus_per_node=72"):
        load_scenario(preset="deepseek-v3-h800", overrides=[
            "cluster.gpu=gb200", "cluster.node.gpus_per_node=72", "cluster.node.nics_per_node=72",
            "cluster.gpus=2304", "parallelism.dp=576", "parallelism.pp=4"])
