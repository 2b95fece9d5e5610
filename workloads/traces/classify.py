"""Kernel classes from kernel names: what a profiler trace's GPU time was spent on.

Names are matched case-insensitively against patterns seen in PyTorch, cuBLAS, CUTLASS, DeepGEMM,
FlashAttention and DeepEP kernels (the DeepSeek-V3 trace uses all of them). The first rule that matches wins,
so the more specific patterns come first. ``COMM`` classes run on the communication SMs; within them the
``notify`` kernels are DeepEP's handshakes (token counts and barriers), whose time is mostly waiting.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache


class KernelClass(str, Enum):
    GEMM = "gemm"
    GROUPED_GEMM = "grouped_gemm"
    ATTENTION_FWD = "attention_fwd"
    ATTENTION_BWD = "attention_bwd"
    DISPATCH = "dispatch"
    COMBINE = "combine"
    COLLECTIVE = "collective"  # NCCL all-reduce, all-gather, send/recv, ...
    QUANTIZE = "quantize"  # FP8 casts and cast-backs, transposes fused with casts
    NORM = "norm"
    MEMORY = "memory"  # memcpy, memset, copies
    OTHER = "other"


COMM_CLASSES = frozenset({KernelClass.DISPATCH, KernelClass.COMBINE, KernelClass.COLLECTIVE})

# Each rule looks at the name without its parameter list: with template arguments ("full": CUTLASS and
# FlashAttention kernels are all ``cutlass::device_kernel<...>``) or without them ("short": an elementwise
# kernel's template may mention a cast it does not do).
_RULES: list[tuple[KernelClass, str, re.Pattern]] = [(cls, where, re.compile(p, re.I)) for cls, where, p in [
    # DeepEP (dpsk::ep / deep_ep): dispatch and its layout/notify kernels; combine and its cached_notify.
    (KernelClass.DISPATCH, "short", r"(ep::|deep_?ep).*dispatch"),
    (KernelClass.COMBINE, "short", r"(ep::|deep_?ep).*(combine|cached_notify)"),
    (KernelClass.COLLECTIVE, "short", r"nccl|all_?reduce|all_?gather|reduce_?scatter|alltoall|sendrecv"),
    (KernelClass.ATTENTION_BWD, "full", r"(flash|fmha|attn|mla)\w*(bwd|backward)|(bwd|backward)\w*(flash|fmha|attn)"),
    (KernelClass.ATTENTION_FWD, "full", r"flash|fmha|attn_fwd|compute_attn|mla_fwd|sdpa"),
    (KernelClass.OTHER, "short", r"utils::|tensormap"),  # GEMM libraries' helper kernels
    (KernelClass.GROUPED_GEMM, "full", r"m_grouped|k_grouped|grouped_gemm_kernel|moe\w*gemm"),
    (KernelClass.GEMM, "full", r"gemm|xmma|cublas|matmul"),
    (KernelClass.QUANTIZE, "short", r"cast|fp8|quant"),
    (KernelClass.NORM, "short", r"layer_?norm|rms_?norm|ln_(fwd|bwd)"),
    (KernelClass.MEMORY, "full", r"memcpy|memset|copy"),
]]
_NOTIFY = re.compile(r"notify|get_dispatch_layout|barrier", re.I)


@lru_cache(maxsize=65536)  # a trace repeats a few hundred distinct names thousands of times
def classify(name: str) -> KernelClass:
    """The class of a kernel with this (demangled) name."""
    texts = {"full": _without_parameters(name), "short": short_name(name)}
    for cls, where, pattern in _RULES:
        if pattern.search(texts[where]):
            return cls
    return KernelClass.OTHER


def kernel_class(name: str, args: dict | None = None) -> KernelClass:
    """The class an event declares in ``args["class"]`` (moesim's own exports do), else :func:`classify`."""
    declared = (args or {}).get("class")
    if declared is not None:
        try:
            return KernelClass(declared)
        except ValueError:
            pass
    return classify(name)


def is_notify(name: str) -> bool:
    """A communication kernel that exchanges metadata or synchronises rather than moving token data."""
    return bool(_NOTIFY.search(name))


@lru_cache(maxsize=65536)
def short_name(name: str) -> str:
    """A kernel name without its template arguments and parameter list, e.g. ``dpsk::ep::internode::combine``."""
    name = re.sub(r"^void ", "", name)
    depth, out = 0, []
    for ch in name:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append(ch)
    return "".join(out).strip() or name[:60]


def _without_parameters(name: str) -> str:
    """The name up to its parameter list (the first ``(`` outside template brackets)."""
    depth = 0
    for i, ch in enumerate(name):
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "(" and depth == 0 and i > 0:
            return name[:i]
    return name


# The op class (moesim.workloads.ops.OpClass) each kernel of an FP8 MoE step runs as, from its name: what a profile
# fitted from a trace prices (calibration/from_trace.py). Patterns as above: "short" is the name without
# template arguments and parameters, "full" keeps the template (CUTLASS kernels are all cutlass::device_kernel).
# GEMM kernels are matched as a family; the phase they ran in gives the pass (see gemm_family).
_OP_RULES: list[tuple[str, str, re.Pattern]] = [(cls, where, re.compile(p, re.I)) for cls, where, p in [
    ("ep.notify", "short", r"(ep::|deep_?ep).*(notify|get_dispatch_layout)"),
    ("ep.dispatch", "short", r"(ep::|deep_?ep).*dispatch"),
    ("ep.combine", "short", r"(ep::|deep_?ep).*combine"),
    ("collective", "short", r"nccl|all_?reduce|all_?gather|reduce_?scatter|alltoall|sendrecv"),
    ("attention.bwd_pre", "full", r"flash\w*bwd\w*preprocess"),
    ("attention.bwd_post", "full", r"flash\w*bwd\w*postprocess"),
    ("attention.bwd", "full", r"flash\w*bwd|flash\w*backward"),
    ("attention.fwd", "full", r"flash|fmha|compute_attn"),
    ("gemm:wgrad", "full", r"fp8_dptp128c_acc|wgrad|k_grouped"),
    ("grouped_gemm:fwd", "full", r"m_grouped"),
    ("gemm:fwd", "full", r"fp8_ptp128c|fp8_gemm"),
    ("gemm:bf16", "full", r"xmma_gemm|cublas|sm90_gemm|ampere_\w*gemm"),
    ("swiglu.bwd", "short", r"swiglu\w*backward"),
    ("swiglu", "short", r"swiglu"),
    ("moe.permute", "short", r"expand_to_fused"),
    ("moe.unpermute", "short", r"reduce_fused"),
    ("moe.index", "short", r"get_fused_mapping|clean_and_count_expert"),
    ("router", "short", r"topk|aux_fi|unique_group|DistributionNormal|scatter|gather"),
    ("fp8.quant_t", "short", r"per_channel_cast_and_transpose"),
    ("fp8.dequant", "short", r"cast_back"),
    ("fp8.weight_t", "short", r"batched_transpose"),
    ("fp8.quant", "short", r"per_token_cast|utils::transpose|tensormap"),
    ("norm.bwd", "short", r"ln_bwd|layer_?norm\w*bwd|rms_?norm\w*bwd"),
    ("norm", "short", r"ln_fwd|layer_?norm|rms_?norm"),
    ("rope", "short", r"rotary|rope"),
    ("add", "short", r"elementwise|reduce_kernel|copy|fill|memset|memcpy|arange"),
]]


@lru_cache(maxsize=65536)
def op_class_name(name: str) -> str | None:
    """The op class of a kernel name (``gemm:fwd``/``gemm:wgrad``/``grouped_gemm:fwd``/``gemm:bf16`` for the
    GEMM families), or None for a kernel no rule knows."""
    texts = {"full": _without_parameters(name), "short": short_name(name)}
    for cls, where, pattern in _OP_RULES:
        if pattern.search(texts[where]):
            return cls
    return None
