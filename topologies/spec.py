"""What to build: a :class:`FabricSpec` (pydantic) with defaults from ``data/topologies.yaml``.

A size or shape that cannot be built raises :class:`TopologyError` with one line naming the parameter and
the fix; the CLI prints it and exits 2.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, ValidationError

from moesim.topologies.bundled import bundled_yaml

Kind = Literal["ft2", "ft3", "mpft", "mrft", "rail", "dragonfly", "slimfly"]


class TopologyError(ValueError):
    """A topology that cannot be built as asked; ``str(err)`` is one line naming the parameter and the fix."""


@cache
def topology_defaults() -> dict:
    """The defaults of every builder parameter (``data/topologies.yaml``)."""
    return bundled_yaml(resources.files("moesim.topologies").joinpath("data/topologies.yaml").read_text())


class FabricSpec(BaseModel):
    """A cluster: nodes of ``gpus_per_node`` GPUs on an NVSwitch, their NICs, and a scale-out fabric.

    ``gpus=None`` asks for the largest instance the radix allows. Dragonfly takes ``p`` (endpoints per
    router), ``a`` (routers per group), ``h`` (global links per router) and ``groups``; Slim Fly takes ``q``
    (a prime). Unset, they follow from the radix.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: Kind
    radix: PositiveInt = 64
    planes: PositiveInt = 8
    oversubscription: float = Field(1.0, ge=1.0)
    gpus: PositiveInt | None = None
    gpu: str = "h800"
    gpus_per_node: PositiveInt = 8
    nics_per_node: PositiveInt = 8
    nic_gbps: PositiveFloat = 50.0
    switch_gbps: PositiveFloat = 50.0
    pcie_gbps: PositiveFloat = 63.0
    nvlink_gbps: PositiveFloat | None = None  # per direction; default: the GPU catalogue's figure
    nic_latency_us: float = Field(1.4, ge=0)
    switch_latency_us: float = Field(0.45, ge=0)
    nvlink_latency_us: float = Field(1.665, ge=0)
    pcie_latency_us: float = Field(0.0, ge=0)
    # A rack-scale NVLink domain design (topologies/data/racks.yaml, e.g. nvl72): each node is one domain.
    rack: str | None = None
    p: PositiveInt | None = None
    a: PositiveInt | None = None
    h: PositiveInt | None = None
    groups: PositiveInt | None = None
    q: PositiveInt | None = None


def make_spec(kind: str, **params) -> FabricSpec:
    """A :class:`FabricSpec` of ``kind`` from the data-file defaults and ``params`` (None values ignored)."""
    values = {k: v for k, v in topology_defaults().items()}
    values.update({k: v for k, v in params.items() if v is not None})
    if params.get("rack") is not None:
        from moesim.topologies.racks import rack_spec

        rack = rack_spec(params["rack"])
        domain = rack["gpus_per_domain"]
        values["gpus_per_node"] = params.get("gpus_per_node") or domain
        values["nics_per_node"] = params.get("nics_per_node") or values["gpus_per_node"] * rack["nics_per_gpu"]
        if values["gpus_per_node"] > domain:
            raise TopologyError(f"gpus_per_node={values['gpus_per_node']} exceeds the {domain} GPUs of one "
                                f"{params['rack']} NVLink domain; use at most {domain}")
    try:
        spec = FabricSpec(kind=kind, **values)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or "topology"
        raise TopologyError(f"{field}: {first['msg']}") from None
    if spec.nics_per_node % spec.gpus_per_node and spec.gpus_per_node % spec.nics_per_node:
        raise TopologyError(f"nics_per_node={spec.nics_per_node} and gpus_per_node={spec.gpus_per_node}: one "
                            "must divide the other")
    if spec.gpus is not None and spec.gpus % spec.gpus_per_node and spec.gpus > spec.gpus_per_node:
        raise TopologyError(f"gpus={spec.gpus} is not a whole number of {spec.gpus_per_node}-GPU nodes; "
                            f"use a multiple of {spec.gpus_per_node}")
    return spec


def split_ports(radix: int, oversubscription: float) -> tuple[int, int]:
    """(down, up) ports of a leaf with ``radix`` ports and down:up = ``oversubscription``:1."""
    up = int(round(radix / (1.0 + oversubscription)))
    if up < 1 or up >= radix:
        raise TopologyError(f"oversubscription={oversubscription:g} leaves no up or down ports on a "
                            f"{radix}-port switch; lower it")
    return radix - up, up
