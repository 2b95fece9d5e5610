"""Where a fitted curve was measured: its FLOPs and per-dimension shape ranges, dtype, pass and SMs.

A curve (:class:`moesim.calibration.fit.ClassModel`) prices well between its points and nowhere else: the H800 in-situ
profile's only BF16 dense GEMMs are the router gate (4096×256×7168), and a curve through them says nothing about
a 4096×129,280×7168 output head. :class:`MeasuredDomain` records the box its points span, computed from the
points at load time, and :meth:`MeasuredDomain.outside` says in words why an op lies outside it (``n=129280 >
7168 measured``), or ``None`` when the op is covered.

A point that is an in-situ class total (``launches`` > 1: several trace kernels summed, see
:mod:`moesim.calibration.from_trace`) records only its largest kernel's shape, not the shapes of the others it summed
(their orientations differ: fprop, dgrad), so it vouches for FLOPs per kernel up to that kernel's and bounds no
single dimension. A single-kernel point vouches for its shape in every dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

# How far outside the measured box (as a factor on each bound) an op is still priced by the curve: a quarter
# either way. The curve's interpolation works in log2 of the shape; a quarter is a third of an octave, less than
# the spacing of the published tables' shapes (×2 to ×8), so it admits measurement-to-use drift (a scenario
# pricing on 132 SMs with points taken on 112, a few % more expert rows) and never a new regime.
DOMAIN_MARGIN = 1.25

DIMENSIONS = {"gemm": ("m", "n", "k"), "grouped_gemm": ("groups", "m", "n", "k"),
              "attention": ("batch", "heads", "seq", "dqk", "dv"), "elementwise": ()}


@dataclass(frozen=True)
class MeasuredDomain:
    """The measured box of one curve: ``flops`` (per kernel; bytes for elementwise classes) and per named
    dimension a (low, high) range (``None`` low: not bounded below), SMs as a (low, high) range."""

    op: str
    dtype: str
    gemm_pass: str
    work: tuple[float | None, float]
    dims: tuple[tuple[str, float | None, float | None], ...]
    sms: tuple[int, int]
    work_unit: str = "FLOPs"

    def outside(self, shape, groups: int, work: float, sms: int, margin: float = DOMAIN_MARGIN) -> str | None:
        """Why an op of this ``shape`` (as the curve's points store it: (m, n, k), grouped (m, n, k) with
        ``groups``, attention (b, h, s, dqk, dv)), ``work`` (FLOPs or bytes) and ``sms`` lies outside the
        domain with ``margin``, or None when it is inside."""
        values = dict(zip(DIMENSIONS[self.op], (groups, *shape[-3:]) if self.op == "grouped_gemm" else shape))
        for name, low, high in self.dims:
            value = values.get(name)
            if value is None:
                continue
            if high is not None and value > high * margin:
                return f"{name}={value:g} > {high:g} measured"
            if low is not None and value < low / margin:
                return f"{name}={value:g} < {low:g} measured"
        low, high = self.work
        if work > high * margin:
            return f"{self.work_unit}={work:.3g} > {high:.3g} measured"
        if low is not None and 0 < work < low / margin:
            return f"{self.work_unit}={work:.3g} < {low:.3g} measured"
        if not self.sms[0] / margin <= sms <= self.sms[1] * margin:
            return f"SMs={sms} outside {self.sms[0]}-{self.sms[1]} measured"
        return None

    def describe(self) -> str:
        """The domain in one line: ``m 64-4096, n 2112-32768, …, FLOPs 1.9e9-9.6e11, SMs 132``."""
        parts = []
        for name, low, high in self.dims:
            if high is None:
                continue
            parts.append(f"{name} ≤{high:g}" if low is None else
                         f"{name} {low:g}" if low == high else f"{name} {low:g}-{high:g}")
        low, high = self.work
        parts.append(f"{self.work_unit} ≤{high:.3g}" if low is None else f"{self.work_unit} {low:.3g}-{high:.3g}")
        parts.append(f"SMs {self.sms[0]}" if self.sms[0] == self.sms[1] else f"SMs {self.sms[0]}-{self.sms[1]}")
        return ", ".join(parts)


def measured_domain(op: str, dtype: str, gemm_pass: str, points, work, total_sms: float) -> MeasuredDomain:
    """The domain of ``points`` (:class:`moesim.calibration.profile.KernelPoint`) whose per-point ``work`` (FLOPs, or
    bytes for elementwise classes: all the point's launches together) is given; ``total_sms`` for points
    that ran on the whole device (``sms`` None)."""
    per_kernel = [w / p.launches for p, w in zip(points, work)]
    summed = [p.launches > 1 for p in points]
    largest = [w if not s else _largest_kernel_work(op, p, w) for p, w, s in zip(points, per_kernel, summed)]
    work_low = None if any(summed) else min(per_kernel)
    dims = []
    single = [p for p, s in zip(points, summed) if not s]
    names = DIMENSIONS[op]
    for i, name in enumerate(names):
        if any(summed) or not single:  # a class total bounds no single dimension
            dims.append((name, None, None))
            continue
        values = [_dims(op, p)[i] for p in single]
        dims.append((name, min(values), max(values)))
    sms = [int(p.sms or total_sms) for p in points]
    return MeasuredDomain(op, dtype, gemm_pass, (work_low, max(largest)), tuple(dims), (min(sms), max(sms)),
                          "bytes" if op == "elementwise" else "FLOPs")


def _dims(op: str, p) -> tuple:
    return (p.groups, *p.shape[-3:]) if op == "grouped_gemm" else tuple(p.shape)


def _largest_kernel_work(op: str, p, mean_work: float) -> float:
    """FLOPs of the largest kernel a class total summed (its recorded shape), at least the mean per launch."""
    if op in ("gemm", "grouped_gemm"):
        m, n, k = p.shape[-3:]
        return max(mean_work, 2.0 * p.groups * m * n * k)
    return mean_work
