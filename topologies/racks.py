"""Rack-scale NVLink domains (GB200 NVL72, NVL36x2) from ``data/racks.yaml``: what one domain holds, and the parts
a cluster of such domains counts (racks, compute and NVLink Switch trays, switch chips, NVLink links).

In the cluster graph a domain is one node whose GPUs meet at one logical NVSwitch, each GPU's link carrying its
whole NVLink rate (``nvlink_links_per_gpu`` × ``nvlink_link_gbps``): NVLink traffic is spread over all the GPU's
links, one per switch chip, and the switch chips are non-blocking, so the one logical switch moves the same bytes
in the same time. The physical parts are counted here, from the published rack description.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from moesim.topologies.bundled import bundled_yaml
from moesim.topologies.spec import TopologyError


@cache
def rack_catalog() -> dict[str, dict]:
    return bundled_yaml(resources.files("moesim.topologies").joinpath("data/racks.yaml").read_text())


def rack_spec(name: str) -> dict:
    """The description of rack design ``name`` (e.g. ``nvl72``); an unknown name is a TopologyError naming the
    known ones."""
    catalog = rack_catalog()
    if name not in catalog:
        raise TopologyError(f"unknown rack {name!r}; known: {', '.join(sorted(catalog))}")
    return dict(catalog[name])


def domain_parts(name: str, domains: int) -> dict:
    """What ``domains`` NVLink domains of rack design ``name`` hold: racks, compute trays, NVLink Switch trays and
    chips, GPU–switch NVLink links (one per GPU per chip-facing port) and switch–switch links between racks."""
    r = rack_spec(name)
    gpus = domains * r["gpus_per_domain"]
    racks = domains * r["racks_per_domain"]
    chips = racks * r["nvlink_switch_trays_per_rack"] * r["nvlink_switch_chips_per_tray"]
    gpu_links = gpus * r["nvlink_links_per_gpu"]
    cross = domains * r["cross_rack_nvlink_links"]
    if gpu_links + 2 * cross != chips * r["nvlink_switch_chip_ports"]:
        raise TopologyError(f"rack {name}: {gpu_links} GPU links and {cross} cross-rack links do not fill the "
                            f"{chips} switch chips' ports; fix data/racks.yaml")
    return {"rack": name, "nvlink_domains": domains, "gpus_per_domain": r["gpus_per_domain"], "racks": racks,
            "compute_trays": racks * r["compute_trays_per_rack"],
            "cpus": racks * r["compute_trays_per_rack"] * r["cpus_per_compute_tray"],
            "nvlink_switch_trays": racks * r["nvlink_switch_trays_per_rack"], "nvlink_switch_chips": chips,
            "gpu_nvlink_links": gpu_links, "cross_rack_nvlink_links": cross,
            "nvlink_gbps_per_gpu": r["nvlink_links_per_gpu"] * r["nvlink_link_gbps"]}
