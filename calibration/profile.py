"""Profiles: measured kernel points and stated efficiencies for one device, saved as JSON with provenance.

A point is one kernel timing: op class (``gemm``, ``grouped_gemm``, ``attention``, ``elementwise``), the
kernel it ran (``fp8_gemm_1d2d``, ``mla_fwd``, ``rmsnorm`` …), dtype, shape, achieved TFLOPS (and memory
GB/s where known), the SMs (or CPU threads) it ran on, and its source. ``efficiency`` holds the fallback
fraction of peak for op classes without points, each with the measurement it comes from. ``collectives``
holds bus bandwidths of communication kernels; ``fit`` the fitted cost curves (see :mod:`calibration.fit`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from workloads.files import write_atomic


class KernelPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: str  # op class: gemm, grouped_gemm, attention, elementwise
    dtype: str
    shape: list[int]  # (m, n, k); grouped GEMMs: m is the mean per group; attention (b, heads, seq, dqk, dv)
    groups: int = 1
    layout: str = "normal"
    kernel: str = ""  # what ran, e.g. "fp8_gemm_1d2d", "mla_bwd", "rmsnorm", "fp8_gemm (bf16 stand-in)"
    tflops: float = Field(ge=0)  # 0 for memory-bound kernels (elementwise), which report memory_gbps
    memory_gbps: float | None = None
    time_us: float | None = None  # median measured time (None for published rates given as TFLOPS only)
    flops: float | None = None
    bytes: float | None = None
    sms: int | None = None  # SMs (CPU: threads) the kernel ran on (None: all)
    source: str

    def flops_executed(self) -> float:
        """FLOPs of the point: stored, or 2·groups·m·n·k for (grouped) GEMMs."""
        if self.flops is not None:
            return self.flops
        m, n, k = self.shape[-3:]
        return 2.0 * self.groups * m * n * k

    def seconds(self) -> float:
        """The point's kernel time: measured, or FLOPs over the published rate."""
        if self.time_us is not None:
            return self.time_us * 1e-6
        return self.flops_executed() / (self.tflops * 1e12)


class CollectivePoint(BaseModel):
    """One collective timing: pattern, ranks, bytes per rank and the nccl-tests style bus bandwidth."""

    model_config = ConfigDict(extra="forbid")

    pattern: str  # all_reduce, all_gather, reduce_scatter, all_to_all
    backend: str  # nccl, gloo
    ranks: int
    bytes_per_rank: float
    time_us: float
    bus_gbps: float
    source: str


class Efficiency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: float = Field(gt=0, le=1)
    source: str


class ClassFit(BaseModel):
    """time = overhead + work / rate (+ bytes / memory rate) for one op class (work: FLOPs, or bytes for
    elementwise kernels); a rate of None means the data carried no such term."""

    model_config = ConfigDict(extra="forbid")

    op: str
    dtype: str
    basis: str  # "flops" or "bytes"
    overhead_us: float
    rate: float | None = None  # TFLOPS for basis "flops", GB/s for basis "bytes"
    memory_gbps: float | None = None  # the bandwidth term of FLOP-counted classes
    points: int
    curve_rms_error: float  # relative time error of the curve alone on the points
    curve_max_error: float
    loo_rms_error: float | None = None  # leave-one-out error of the full model (curve × point correction)
    loo_max_error: float | None = None


class Profile(BaseModel):
    """Kernel measurements of one device plus that device's peaks (to turn TFLOPS into efficiency)."""

    model_config = ConfigDict(extra="forbid")

    device: str
    origin: str = "measured"  # "published", "measured" or "projected from <device> by specifications"
    peaks: dict[str, float]  # bf16_tflops, fp8_tflops, hbm_tbps, sms
    points: list[KernelPoint] = []
    collectives: list[CollectivePoint] = []
    efficiency: dict[str, Efficiency] = {}
    fit: list[ClassFit] = []
    provenance: dict[str, str] = {}

    def save(self, path: str | Path, force: bool = True) -> None:
        """Write atomically (a temporary file renamed over the target); ``force=False`` keeps an existing file."""
        write_atomic(path, self.model_dump_json(indent=1, exclude_none=True) + "\n", force=force)

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        return cls.model_validate_json(Path(path).read_text())

    def device_spec(self) -> "DeviceSpec":
        """The profile's own device as a spec the cost model can price on."""
        p = self.peaks
        return DeviceSpec(self.device, int(p["sms"]), p["bf16_tflops"], p["fp8_tflops"], p["hbm_tbps"])


@dataclass(frozen=True)
class DeviceSpec:
    """The fields of :class:`workloads.scenario.GpuSpec` that the cost model reads (TFLOPS, TB/s)."""

    name: str
    sms: int
    bf16_tflops: float
    fp8_tflops: float
    hbm_tbps: float


BUILTIN_PROFILES = {"h800": "h800.json", "h100": "h100.json", "cpu": "cpu.json"}
DEFAULT_PROFILE = "h800"


def builtin_profile(name: str = DEFAULT_PROFILE) -> Profile:
    """A profile shipped in ``calibration/profiles``."""
    text = resources.files("calibration").joinpath("profiles", BUILTIN_PROFILES[name]).read_text()
    return Profile.model_validate(json.loads(text))


def profile_for_gpu(gpu_name: str) -> Profile:
    """The built-in profile measured on this kind of GPU, by catalogue key or spec name (``h100``,
    ``H100-SXM5`` → ``h100``); the H800 profile for a GPU without one of its own."""
    name = gpu_name.lower().replace("nvidia", "").strip()
    for key in BUILTIN_PROFILES:
        if key != "cpu" and name.startswith(key):
            return builtin_profile(key)
    return builtin_profile(DEFAULT_PROFILE)


def load_profile(name_or_path: str | None, gpu_name: str | None = None) -> Profile:
    """A built-in profile by name (``h800``, ``h100``, ``cpu``) or a profile JSON file by path; ``None``: the
    built-in profile of ``gpu_name`` (see :func:`profile_for_gpu`), or the H800 one."""
    if name_or_path is None:
        return profile_for_gpu(gpu_name) if gpu_name else builtin_profile()
    if name_or_path in BUILTIN_PROFILES:
        return builtin_profile(name_or_path)
    return Profile.load(name_or_path)


def points_from_deepgemm_csv(text: str, source: str) -> list[KernelPoint]:
    """Read the DeepGEMM README table (reference/h800-kernels.csv) into FP8 GEMM points."""
    rows = csv.DictReader(io.StringIO("\n".join(l for l in text.splitlines() if not l.startswith("#"))))
    points = []
    for row in rows:
        grouped = row["kernel"] == "fp8_grouped_gemm"
        points.append(KernelPoint(
            op="grouped_gemm" if grouped else "gemm", dtype="fp8", kernel=row["kernel"],
            shape=[int(row["m"]), int(row["n"]), int(row["k"])], groups=int(row["groups"]),
            layout=row["layout"], tflops=float(row["tflops"]),
            memory_gbps=float(row["memory_gbps"]) if row["memory_gbps"] else None, source=source))
    return points
