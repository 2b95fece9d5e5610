"""Tensor-parallel communication overlapped with its GEMM, as Megatron-LM's ``--tp-comm-overlap`` runs it.

With ``training.tp_comm_overlap`` Transformer Engine's userbuffers split the tensor-parallel collective of a
transformer block into chunks and run them on a stream of their own beside the chunks of the row-parallel GEMM
they belong to (TE ``initialize_ub``: ``pipeline`` for ``proj_fprop`` / ``fc2_fprop``, ``ring_exchange`` for
``proj_dgrad`` / ``fc2_dgrad``; ``num_splits`` 4, ``num_sm`` 16 SMs for the communication kernels). moesim prices
that from the kernels themselves: the GEMM (the attention output projection, the dense FFN's down projection) in
``SPLITS`` row chunks on the SMs the communication leaves, the collective in ``SPLITS`` chunks of its bytes on
the network model, pipelined: chunk i's collective runs beside chunk i+1's GEMM, so the pair takes

    g + (SPLITS − 1) · max(g, c) + c      (g, c: one GEMM chunk, one collective chunk, launch gaps included)

on the compute stream, a rendezvous of the tensor-parallel group like the collective it replaces. The GEMM is the
one next to the collective in the chunk: the last GEMM of the compute component before it in forward (the
row-parallel GEMM whose output it reduces), of the one after it in backward (that GEMM's input gradient). A
time-shared network (``run.network: flow``) prices the overlapped collective in closed form, as here.
"""

from __future__ import annotations

from dataclasses import replace

from moesim.workloads.ops import Chunk, Component, Kind, Op, Phase, Stream

SPLITS = 4  # TE initialize_ub add_ub(num_splits=4): chunks of the GEMM and of the collective
COMM_SMS = 16  # TE initialize_ub add_ub(num_sm=16): SMs the userbuffers communication kernels take


def _tp_collective(component: Component) -> bool:
    return bool(component.ops) and all(op.comm is not None and op.comm.group == "tp" for op in component.ops)


def _last_gemm(component: Component) -> int | None:
    return next((i for i in range(len(component.ops) - 1, -1, -1) if component.ops[i].kind is Kind.GEMM), None)


def overlap_pairs(chunk: Chunk) -> dict[int, tuple[int, int]]:
    """Per index of a tensor-parallel collective component of ``chunk``: (index of the compute component whose
    GEMM it overlaps, index of that GEMM in the component's ops)."""
    components = chunk.components
    step = -1 if chunk.phase is Phase.F else 1
    pairs = {}
    for i, component in enumerate(components):
        j = i + step
        if not _tp_collective(component) or not 0 <= j < len(components):
            continue
        partner = components[j]
        gemm = _last_gemm(partner) if partner.stream is Stream.COMPUTE else None
        if gemm is not None and j not in {p for p, _ in pairs.values()}:
            pairs[i] = (j, gemm)
    return pairs


def chunked(op: Op, parts: int) -> Op:
    """One of ``parts`` row chunks of a GEMM (the token dimension, m) or of a collective (its bytes)."""
    if op.comm is not None:
        return replace(op, comm=replace(op.comm, bytes_per_rank=op.comm.bytes_per_rank / parts))
    m, *rest = op.shape
    return replace(op, shape=(max(1, round(m / parts)), *rest), flops=op.flops / parts, bytes=op.bytes / parts)


def overlapped_s(pricer, gemm: Op, collective: list[Op], sms: int) -> float:
    """Seconds of ``gemm`` with the ``collective`` ops pipelined beside it (module docstring), the GEMM's chunks
    on ``sms`` SMs less the userbuffers' ``COMM_SMS``."""
    g = pricer.op_time_s(chunked(gemm, SPLITS), max(1, sms - COMM_SMS))
    c = sum(pricer.op_time_s(chunked(op, SPLITS)) for op in collective)
    return g + (SPLITS - 1) * max(g, c) + c
