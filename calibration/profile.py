"""Profiles: measured kernel points and stated efficiencies for one device, saved as JSON with provenance.

A point is one kernel timing: op class (``gemm``, ``grouped_gemm``, ``attention``, ``elementwise``), dtype,
shape, achieved TFLOPS (and memory GB/s where known) and its source. ``efficiency`` holds the fallback
fraction of peak for op classes without points, each with the measurement it comes from.
"""

from __future__ import annotations

import csv
import io
import json
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from workloads.files import write_atomic


class KernelPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: str
    dtype: str
    shape: list[int]  # (m, n, k); for grouped GEMMs m is per group
    groups: int = 1
    layout: str = "normal"
    tflops: float = Field(gt=0)
    memory_gbps: float | None = None
    sms: int | None = None  # SMs the kernel ran on (None: all)
    source: str


class Efficiency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: float = Field(gt=0, le=1)
    source: str


class Profile(BaseModel):
    """Kernel measurements of one device plus that device's peaks (to turn TFLOPS into efficiency)."""

    model_config = ConfigDict(extra="forbid")

    device: str
    origin: str = "measured"  # "published", "measured" or "projected from <device>"
    peaks: dict[str, float]  # bf16_tflops, fp8_tflops, hbm_tbps, sms
    points: list[KernelPoint] = []
    efficiency: dict[str, Efficiency] = {}
    provenance: dict[str, str] = {}

    def save(self, path: str | Path, force: bool = True) -> None:
        """Write atomically (a temporary file renamed over the target); ``force=False`` keeps an existing file."""
        write_atomic(path, self.model_dump_json(indent=1), force=force)

    @classmethod
    def load(cls, path: str | Path) -> "Profile":
        return cls.model_validate_json(Path(path).read_text())


BUILTIN_PROFILES = {"h800": "h800.json"}


def builtin_profile(name: str = "h800") -> Profile:
    """A profile shipped in ``calibration/profiles``."""
    text = resources.files("calibration").joinpath("profiles", BUILTIN_PROFILES[name]).read_text()
    return Profile.model_validate(json.loads(text))


def load_profile(name_or_path: str | None) -> Profile:
    """A built-in profile by name (``h800``) or a profile JSON file by path."""
    if name_or_path is None:
        return builtin_profile()
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
            op="grouped_gemm" if grouped else "gemm", dtype="fp8",
            shape=[int(row["m"]), int(row["n"]), int(row["k"])], groups=int(row["groups"]),
            layout=row["layout"], tflops=float(row["tflops"]),
            memory_gbps=float(row["memory_gbps"]) if row["memory_gbps"] else None, source=source))
    return points
