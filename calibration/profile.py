"""Profiles: measured kernel points and stated efficiencies for one device, saved as JSON with provenance.

A point is one kernel timing: op class (``gemm``, ``grouped_gemm``, ``attention``, ``elementwise``), the
kernel it ran (``fp8_gemm_1d2d``, ``mla_fwd``, ``rmsnorm`` …), dtype, shape, achieved TFLOPS (and memory
GB/s where known), the SMs (or CPU threads) it ran on, and its source. ``efficiency`` holds the fallback
fraction of peak for op classes without points, each with the measurement it comes from. ``collectives``
holds bus bandwidths of communication kernels; ``fit`` the fitted cost curves (see :mod:`moesim.calibration.fit`).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from moesim.calibration.host import HostCosts
from moesim.workloads.files import write_atomic


class KernelPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: str  # op class: gemm, grouped_gemm, attention, elementwise
    dtype: str
    shape: list[int]  # (m, n, k); grouped GEMMs: m is the mean per group; attention (b, heads, seq, dqk, dv)
    groups: int = 1
    layout: str = "normal"
    kernel: str = ""  # what ran, e.g. "fp8_gemm_1d2d", "mla_bwd", "rmsnorm", "fp8_gemm (bf16 stand-in)"
    # The GEMM pass the kernel computes: forward and input-gradient GEMMs run the same kernels, weight-gradient
    # GEMMs their own (accumulating into an fp32 gradient); elementwise and attention points leave it "fprop".
    gemm_pass: str = "fprop"
    # The kernel generation (library) measured: "deepgemm", "cutlass" (the internal CUTLASS-based kernels that
    # preceded DeepGEMM), ...; "" for kernels every generation shares (norms, casts, attention).
    library: str = ""
    launches: int = Field(default=1, ge=1)  # kernels the point's time covers (an in-situ class total: several)
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


class LaunchGap(BaseModel):
    """Idle time between two kernels queued back to back on one stream (launch and scheduling), in µs."""

    model_config = ConfigDict(extra="forbid")

    value_us: float = Field(ge=0)
    source: str


class Profile(BaseModel):
    """Kernel measurements of one device plus that device's peaks (to turn TFLOPS into efficiency)."""

    model_config = ConfigDict(extra="forbid")

    device: str
    origin: str = "measured"  # "published", "measured", "in-situ" (a trace) or "projected from <device> …"
    name: str = ""  # how notes name this profile's measurements (default: "<device> <origin>")
    peaks: dict[str, float]  # bf16_tflops, fp8_tflops, hbm_tbps, sms
    points: list[KernelPoint] = []
    collectives: list[CollectivePoint] = []
    efficiency: dict[str, Efficiency] = {}
    fit: list[ClassFit] = []
    provenance: dict[str, str] = {}
    launch_gap: LaunchGap | None = None
    host: HostCosts | None = None  # CPU launch and sync costs (moesim.calibration.host), measured in a trace
    # In-situ profiles: which trace kernels (short names) fed each op class.
    class_kernels: dict[str, list[str]] = {}

    @model_validator(mode="after")
    def _within_physical_limits(self) -> "Profile":
        """Refuse a point faster than the device can run: it is a typo or a wrong unit, and a curve fitted through
        it would price everything near it too fast. A CPU profile's peaks are estimates from the OS-reported
        clock (moesim.calibration.device.cpu_peaks: boost may exceed it), so they bound nothing."""
        if self.provenance.get("cuda") == "none":
            return self
        for i, point in enumerate(self.points):
            problem = beyond_peak(point, self.peaks, in_situ="in-situ" in self.origin)  # a projection of one says so too
            if problem:
                raise ValueError(f"points[{i}] ({point.op} {point.kernel or '?'} {'×'.join(map(str, point.shape))}"
                                 f"{f' ×{point.groups} groups' if point.groups > 1 else ''} {point.dtype}): {problem}; "
                                 f"fix the point (tflops, time_us, memory_gbps) or the profile's peaks")
        return self

    @property
    def label(self) -> str:
        return self.name or f"{self.device} {self.origin}"

    def save(self, path: str | Path, force: bool = True) -> None:
        """Write atomically (a temporary file renamed over the target); ``force=False`` keeps an existing file."""
        write_atomic(path, self.model_dump_json(indent=1, exclude_none=True) + "\n", force=force)

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        """A profile JSON file, read by moesim's one document reader (:mod:`moesim.workloads.documents`)."""
        from moesim.workloads.documents import read_document
        return cls.model_validate(read_document(path, "profile file", MAX_PROFILE_FILE_BYTES, "json"))

    def device_spec(self) -> "DeviceSpec":
        """The profile's own device as a spec the cost model can price on."""
        p = self.peaks
        return DeviceSpec(self.device, int(p["sms"]), p["bf16_tflops"], p["fp8_tflops"], p["hbm_tbps"])


# Measured rates may exceed a nominal peak by this much before a point is refused: timer resolution on µs kernels
# and clocks a little above the datasheet's (the peaks are at boost clock, hardware.md), never a real excess.
PEAK_TOLERANCE = 1.02


def beyond_peak(point: KernelPoint, peaks: dict[str, float], in_situ: bool = False) -> str | None:
    """Why ``point`` is faster than a device of ``peaks`` can run (None: it is not): its TFLOPS above the dtype's
    tensor peak on the SMs it ran on, or its GB/s above the HBM bandwidth. In-situ points' bytes are the bytes the
    simulator counts for the op, not measured traffic (a fused or L2-resident kernel moves fewer), so their GB/s
    are not checked."""
    sms = peaks.get("sms") or 1.0
    share = (point.sms or sms) / sms
    if point.op != "elementwise":
        key = "bf16_tflops" if point.dtype in ("bf16", "fp32") else f"{point.dtype}_tflops"
        if key in peaks:
            peak = peaks[key] / (2 if point.dtype == "fp32" else 1) * share
            rate = max(point.tflops, point.flops_executed() / point.seconds() / 1e12 if point.time_us else 0.0)
            if rate > peak * PEAK_TOLERANCE:
                return (f"{rate:.1f} TFLOPS is faster than the {point.dtype} peak of {peak:.1f} TFLOPS "
                        f"(peaks.{key} on {point.sms or sms:g} of {sms:g} SMs)")
    if point.memory_gbps is not None and not in_situ and "hbm_tbps" in peaks:
        if point.memory_gbps > peaks["hbm_tbps"] * 1e3 * PEAK_TOLERANCE:
            return (f"{point.memory_gbps:.0f} GB/s is faster than the HBM peak of {peaks['hbm_tbps'] * 1e3:.0f} GB/s "
                    f"(peaks.hbm_tbps)")
    return None


@dataclass(frozen=True)
class DeviceSpec:
    """The fields of :class:`moesim.workloads.scenario.GpuSpec` that the cost model reads (TFLOPS, TB/s)."""

    name: str
    sms: int
    bf16_tflops: float
    fp8_tflops: float
    hbm_tbps: float


MAX_PROFILE_FILE_BYTES = 50_000_000  # a profile with every kernel point of a full calibration run is a few MB
BUILTIN_PROFILES = {"h800": "h800.json", "h800-trace": "h800-trace.json", "h100": "h100.json", "cpu": "cpu.json"}
DEFAULT_PROFILE = "h800"
# What prices a GPU when no profile is given, by GPU: its own measurements first (in-situ trace kernels, then
# microbenchmarks), then the H800's published points as fractions of its peaks for classes those lack. An
# H200 is an H100 with more and faster HBM: the H100's measurements, as fractions of its own peaks.
DEFAULT_STACKS = {"h800": ("h800-trace", "h800"), "h100": ("h100", "h800"), "h200": ("h100", "h800")}
# GPUs with no shipped measurements (Blackwell, A100, H20) are priced from the H800's stack, its points carried over
# as fractions of the H800's peaks (the cost model says which classes, CostModel.projected).
DEFAULT_STACKS.update({key: ("h800-trace", "h800") for key in ("gb200", "gb300", "b200", "b300", "a100", "h20")})


def default_stack(gpu_name: str) -> tuple[str, ...]:
    """Built-in profile names that price ``gpu_name`` (a catalogue key, a spec name such as ``H800-SXM5`` or a
    device name such as ``NVIDIA H100 80GB HBM3``), in pricing order; the H800's for a GPU without its own."""
    name = gpu_name.lower().replace("nvidia", "").strip()
    return next((stack for key, stack in DEFAULT_STACKS.items() if name.startswith(key)), (DEFAULT_PROFILE,))


def builtin_profile(name: str = DEFAULT_PROFILE) -> Profile:
    """A profile shipped in ``calibration/profiles``."""
    text = resources.files("moesim.calibration").joinpath("profiles", BUILTIN_PROFILES[name]).read_text()
    return Profile.model_validate(json.loads(text))


# The shipped profiles measured on GPUs (the 'cpu' profile's peaks are estimates, not a GPU's).
GPU_PROFILES = ("h800", "h800-trace", "h100")


@lru_cache(maxsize=None)
def _same_design(sms: int, bf16_tflops: float) -> tuple[Profile, ...]:
    return tuple(prof for prof in map(builtin_profile, GPU_PROFILES)
                 if int(prof.peaks["sms"]) == sms and prof.peaks["bf16_tflops"] == bf16_tflops)


def same_design_profiles(gpu) -> tuple[Profile, ...]:
    """Shipped GPU profiles measured on a GPU of ``gpu``'s SM design (the same SM count and BF16 tensor peak: an
    H800, H100 and H200 have the same SMs at the same clocks), whose kernels reach the same fractions of peak."""
    return _same_design(int(gpu.sms), float(gpu.bf16_tflops))


def load_profile(name_or_path: str | None) -> Profile:
    """A built-in profile by name (``h800``, ``h800-trace``, ``h100``, ``cpu``) or a profile JSON file by path."""
    if name_or_path is None:
        return builtin_profile()
    if name_or_path in BUILTIN_PROFILES:
        return builtin_profile(name_or_path)
    return Profile.load(name_or_path)


def load_profiles(spec: str | None, gpu: str = "h800") -> list[Profile]:
    """Profiles in pricing order from a comma list of names or files (``trace.json,h800``); the first profile
    with points for an op class prices it. ``None``: the GPU's default stack (h800: its in-situ trace profile,
    then the published microbenchmarks)."""
    names = spec.split(",") if spec else list(default_stack(gpu))
    return [load_profile(name.strip()) for name in names if name.strip()]


def csv_rows(text: str) -> list[dict[str, str]]:
    """Rows of a reference CSV whose comment lines start with ``#``."""
    return list(csv.DictReader(io.StringIO("\n".join(l for l in text.splitlines() if not l.startswith("#")))))


def points_from_deepgemm_csv(text: str, source: str) -> list[KernelPoint]:
    """Read the DeepGEMM README table (reference/h800-kernels.csv) into FP8 GEMM points."""
    points = []
    for row in csv_rows(text):
        grouped = row["kernel"] == "fp8_grouped_gemm"
        points.append(KernelPoint(
            op="grouped_gemm" if grouped else "gemm", dtype="fp8", kernel=row["kernel"],
            shape=[int(row["m"]), int(row["n"]), int(row["k"])], groups=int(row["groups"]),
            layout=row["layout"], tflops=float(row["tflops"]),
            memory_gbps=float(row["memory_gbps"]) if row["memory_gbps"] else None, library="deepgemm",
            source=source))
    return points
