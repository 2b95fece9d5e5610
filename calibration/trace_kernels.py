"""Kernel times from DeepSeek's published profiler trace, for validation (deepseek-ai/profile-data train.json).

The trace is one DualPipe forward chunk overlapped with one backward chunk of DeepSeek-V3 training on an
H800 (4 MoE layers, EP64, TP1, one 4096-token sequence per micro-batch, routing forced to balance). Kernels
are tied to the phase annotation (``attn(F)``, ``mlp(F)``, ``attn(B)``) whose CPU time range holds their
launch, then identified by kernel name and order: FlashAttention-3 forward and backward at the MLA shape;
in ``attn(F)`` the three FP8 GEMMs with a 112-block grid are q_b, kv_b and o_proj in launch order (their
durations match those shapes' FLOPs); in ``mlp(F)`` the first and second grouped GEMMs are the experts' up
and down projections, over the tokens this rank received (one block per token in the grid of the fused
SwiGLU+cast kernel between them). The extract is committed as ``profiles/h800-trace-kernels.csv``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from moesim.workloads.documents import read_document
from moesim.workloads.errors import one_line
from moesim.workloads.traces import MAX_TRACE_BYTES, TraceError

TRACE_PATH = Path("shared/data/deepseek-profile-data/train.json")
SOURCE = ("deepseek-ai/profile-data commit 4496024, train.json (sha256 d7b7232e…), H800, DeepSeek-V3 "
          "EP64 TP1 seq 4096")
FIELDS = ("kernel", "phase", "layer", "op", "layout", "dtype", "groups", "shape", "duration_us")
HIDDEN, HEADS, Q_LORA, KV_LORA, NOPE, ROPE, V_DIM, EXPERT_INTER = 7168, 128, 1536, 512, 128, 64, 128, 2048
TOKENS, LOCAL_EXPERTS = 4096, 4  # one 4096-token sequence; 256 experts over EP64


@dataclass(frozen=True)
class TraceKernel:
    kernel: str
    phase: str
    layer: int
    op: str
    layout: str
    dtype: str
    groups: int
    shape: tuple
    duration_us: float


def find_trace(repo_root: Path) -> Path | None:
    """The trace under the ``shared/`` folder beside the checkout (also in it, or beside a worktree folder)."""
    root = repo_root.resolve()
    for base in (root.parent, root, root.parent.parent):
        if (base / TRACE_PATH).is_file():
            return base / TRACE_PATH
    return None


def extract(trace_path: Path) -> list[TraceKernel]:
    """Identify the validation kernels in the trace (see the module docstring for how); a file read by moesim's
    one document reader, and a :class:`TraceError` (one line) where it is not laid out as DeepSeek's."""
    data = read_document(trace_path, "trace file", MAX_TRACE_BYTES, "json", error=TraceError)
    try:
        return _identify(data["traceEvents"])
    except (KeyError, TypeError, IndexError, AttributeError) as err:
        raise TraceError(f"{trace_path}: not laid out as DeepSeek's profile-data trace "
                         f"({type(err).__name__}: {one_line(str(err))[:80]})") from None


def _identify(events: list[dict]) -> list[TraceKernel]:
    launches = {e["args"]["correlation"]: e["ts"] for e in events
                if e.get("cat") == "cuda_runtime" and "correlation" in e.get("args", {})}
    phases = sorted((e for e in events if e.get("cat") == "user_annotation" and "(" in e["name"]),
                    key=lambda e: e["ts"])
    by_phase: dict[tuple[str, int], list[dict]] = {}
    counters: dict[str, int] = {}
    spans = []
    for a in phases:
        layer = counters.get(a["name"], 0)
        counters[a["name"]] = layer + 1
        spans.append((a["ts"], a["ts"] + a["dur"], a["name"], layer))
    for k in sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"]):
        at = launches.get(k["args"].get("correlation"))
        for start, end, name, layer in spans:
            if at is not None and start <= at <= end:
                by_phase.setdefault((name, layer), []).append(k)
                break
    found: list[TraceKernel] = []
    dqk = NOPE + ROPE
    for (phase, layer), kernels in sorted(by_phase.items()):
        names = [k["name"] for k in kernels]
        if phase == "attn(F)":
            for k in kernels:
                if "flash::compute_attn_ws" in k["name"]:
                    found.append(TraceKernel("flash_attn_fwd", phase, layer, "attention", "causal_fwd", "bf16", 1,
                                             (1, HEADS, TOKENS, dqk, V_DIM), k["dur"]))
            dense = [k for k in kernels if "fp8_ptp128c::GemmKernel" in k["name"] and "m_grouped" not in k["name"]
                     and k["args"].get("grid") == [112, 1, 1]]
            shapes = [("q_b", (TOKENS, HEADS * dqk, Q_LORA)), ("kv_b", (TOKENS, HEADS * (NOPE + V_DIM), KV_LORA)),
                      ("o_proj", (TOKENS, HIDDEN, HEADS * V_DIM))]
            for k, (name, shape) in zip(dense, shapes):
                found.append(TraceKernel(f"fp8_gemm {name}", phase, layer, "gemm", "normal", "fp8", 1, shape,
                                         k["dur"]))
        elif phase == "mlp(F)":
            grouped = [k for k in kernels if "m_grouped_fp8_ptp128c" in k["name"]]
            swiglu = [k for k in kernels if "swiglu" in k["name"]]
            if len(grouped) >= 2 and swiglu:
                received = swiglu[0]["args"]["grid"][0]
                per_expert = received // LOCAL_EXPERTS
                found.append(TraceKernel("fp8_grouped_gemm up", phase, layer, "grouped_gemm", "contiguous", "fp8",
                                         LOCAL_EXPERTS, (per_expert, 2 * EXPERT_INTER, HIDDEN), grouped[0]["dur"]))
                found.append(TraceKernel("fp8_grouped_gemm down", phase, layer, "grouped_gemm", "contiguous",
                                         "fp8", LOCAL_EXPERTS, (per_expert, HIDDEN, EXPERT_INTER),
                                         grouped[1]["dur"]))
        elif phase == "attn(B)":
            for k, name in zip(kernels, names):
                if "FlashAttnBwd<" in name and "Preprocess" not in name and "Postprocess" not in name:
                    found.append(TraceKernel("flash_attn_bwd", phase, layer, "attention", "causal_bwd", "bf16", 1,
                                             (1, HEADS, TOKENS, dqk, V_DIM), k["dur"]))
    return found


def to_csv(kernels: list[TraceKernel]) -> str:
    out = io.StringIO()
    out.write(f"# {SOURCE}\n# extracted by calibration/trace_kernels.py (how: see its docstring)\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for k in kernels:
        writer.writerow([k.kernel, k.phase, k.layer, k.op, k.layout, k.dtype, k.groups,
                         "x".join(map(str, k.shape)), f"{k.duration_us:g}"])
    return out.getvalue()


def from_csv(text: str) -> list[TraceKernel]:
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return [TraceKernel(r["kernel"], r["phase"], int(r["layer"]), r["op"], r["layout"], r["dtype"],
                        int(r["groups"]), tuple(int(x) for x in r["shape"].split("x")), float(r["duration_us"]))
            for r in rows]


def committed_excerpt() -> list[TraceKernel]:
    return from_csv(resources.files("moesim.calibration").joinpath("profiles", "h800-trace-kernels.csv").read_text())
