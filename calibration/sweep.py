"""The shapes to benchmark, derived from the operations the presets really run (moesim.workloads.model.build_stages).

Every distinct GEMM, grouped GEMM and attention shape of every preset becomes a case; elementwise cases come
from the same scenarios' token counts and widths. On a CPU the shapes are scaled down (the largest free
dimension halved until the case fits the budget; head dimensions and grouped-GEMM widths kept) and, with
``quick``, thinned to a few cases per class spread over problem size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from moesim.workloads.loader import load_scenario
from moesim.workloads.model import build_stages
from moesim.workloads.ops import Kind, Phase
from moesim.workloads.presets import preset_names

OP_CLASSES = ("gemm", "grouped_gemm", "attention", "elementwise")
SIZE_COMPRESSION = 0.5


@dataclass(frozen=True)
class Case:
    """One benchmark: op class, dtype wanted, shape, groups, layout (attention: causal_fwd/causal_bwd;
    elementwise: the kernel), and where the shape came from."""

    op: str
    dtype: str
    shape: tuple
    groups: int = 1
    layout: str = "normal"
    origin: str = ""

    def work(self) -> float:
        """FLOPs (bytes for elementwise): the size used to scale and to spread cases."""
        if self.op in ("gemm", "grouped_gemm"):
            m, n, k = self.shape
            return 2.0 * self.groups * m * n * k
        if self.op == "attention":
            b, h, s, dqk, dv = self.shape
            return 2.0 * b * h * (dqk + dv) * s * (s + 1) / 2 * (2.5 if self.layout == "causal_bwd" else 1.0)
        rows, width = self.shape
        return rows * width * 6.0


def preset_cases(names: list[str] | None = None) -> list[Case]:
    """Distinct cases of the presets' ops (forward, dgrad and wgrad shapes; both grouped layouts)."""
    seen: dict[tuple, Case] = {}
    for name in names or preset_names():
        scenario = load_scenario(preset=name)
        for stage in build_stages(scenario):
            for phase in Phase:
                for op in stage.chunk(phase).ops():
                    for case in _op_cases(op, name):
                        seen.setdefault((case.op, case.dtype, case.shape, case.groups, case.layout), case)
        for case in _elementwise_cases(scenario, name):
            seen.setdefault((case.op, case.dtype, case.shape, case.groups, case.layout), case)
    return list(seen.values())


def _op_cases(op, preset: str) -> list[Case]:
    origin = f"{preset}: {op.name}"
    if op.kind is Kind.GEMM:
        return [Case("gemm", op.dtype, tuple(op.shape), origin=origin)]
    if op.kind is Kind.GROUPED_GEMM:
        groups, *mnk = op.shape
        return [Case("grouped_gemm", op.dtype, tuple(mnk), groups, layout, origin)
                for layout in ("contiguous", "masked")]
    if op.kind is Kind.ATTENTION:
        layout = "causal_bwd" if op.phase is Phase.B else "causal_fwd"
        return [Case("attention", op.dtype, tuple(op.shape), layout=layout, origin=origin)]
    return []


def _elementwise_cases(scenario, preset: str) -> list[Case]:
    par, model = scenario.parallelism, scenario.model
    tokens = par.micro_batch_size * par.seq_len // par.cp
    heads = model.attention.heads // par.tp
    rope = model.attention.qk_rope_head_dim if model.attention.kind == "mla" else model.attention.head_dim
    inter = model.moe.expert_intermediate if model.moe else model.ffn_intermediate // par.tp
    widths = {"fp8_cast": (tokens, model.hidden), "rmsnorm": (tokens, model.hidden),
              "swiglu": (tokens, inter), "rope": (tokens * heads, rope), "add": (tokens, model.hidden)}
    return [Case("elementwise", "bf16", shape, layout=kernel, origin=f"{preset}: {kernel}")
            for kernel, shape in widths.items()]


def scale_down(case: Case, max_work: float) -> Case:
    """Halve the largest free dimension until the case's work is within ``max_work``."""
    while case.work() > max_work:
        shape = list(case.shape)
        if case.op == "attention":
            free = [2, 1, 0]  # sequence, heads, batch: MLA head dims stay real
        elif case.op == "grouped_gemm":
            free = [0, 1, 2]
        else:
            free = list(range(len(shape)))
        # torch._grouped_mm needs 16-byte strides: grouped n and k stay multiples of 8 (they start as such).
        halvable = [j for j in free if shape[j] > 8 and (case.op != "grouped_gemm" or j == 0 or shape[j] % 16 == 0)]
        i = max(halvable, key=lambda j: shape[j], default=None)
        if i is None and case.op == "grouped_gemm" and case.groups > 1:
            case = replace(case, groups=case.groups // 2)
            continue
        if i is None:
            break
        shape[i] //= 2
        case = replace(case, shape=tuple(shape))
    return case


def plan(cases: list[Case], max_work: dict[str, float] | None, per_class: int | None,
         ops: list[str] | None = None) -> list[Case]:
    """Filter by op class, scale to the budget, drop duplicates, keep at most ``per_class`` per class.

    Scaling compresses sizes on a log scale (the largest case of a class lands on ``max_work``, the others
    by the square root of their ratio to it), so the scaled cases still span a range of problem sizes.
    """
    cases = [c for c in cases if not ops or c.op in ops]
    largest = {}
    for case in cases:
        largest[case.op] = max(largest.get(case.op, 0.0), case.work())
    chosen: dict[tuple, Case] = {}
    for case in cases:
        if max_work:
            target = max_work[case.op] * (case.work() / largest[case.op]) ** SIZE_COMPRESSION
            case = scale_down(case, min(case.work(), target))
        chosen.setdefault((case.op, case.dtype, case.shape, case.groups, case.layout), case)
    by_class: dict[tuple, list[Case]] = {}
    for case in chosen.values():
        by_class.setdefault((case.op, case.dtype, case.layout), []).append(case)
    planned = []
    for group in by_class.values():
        group.sort(key=Case.work)
        if per_class and len(group) > per_class:
            step = (len(group) - 1) / (per_class - 1) if per_class > 1 else 0
            group = [group[round(i * step)] for i in range(per_class)]
        planned.extend(group)
    return planned
