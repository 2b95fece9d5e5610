"""Tensor-parallel communication overlapped with its GEMM (training.tp_comm_overlap, simulator/tp_overlap.py)."""

from __future__ import annotations

import pytest

from moesim.simulator.network import AnalyticNetwork
from moesim.simulator.pricing import Pricer
from moesim.simulator.simulate import cost_model_for, simulate
from moesim.simulator.tp_overlap import COMM_SMS, SPLITS, chunked, overlap_pairs, overlapped_s
from tests.conftest import tiny_dense
from moesim.workloads.loader import load_scenario
from moesim.workloads.model import build_stages
from moesim.workloads.ops import Kind, Phase, Stream


class FixedPricer:
    """Prices a GEMM chunk at ``gemm_s`` and a collective chunk at ``comm_s``; records the SMs asked for."""

    def __init__(self, gemm_s: float, comm_s: float):
        self.gemm_s, self.comm_s, self.sms = gemm_s, comm_s, []

    def op_time_s(self, op, sms=None):
        self.sms.append(sms)
        return self.comm_s if op.comm is not None else self.gemm_s


def tp_scenario(overlap: bool):
    return tiny_dense(**{"cluster.gpus": 8, "parallelism.tp": 2, "parallelism.pp": 4,
                         "training.tp_comm_overlap": overlap})


def first_stage(scenario):
    pricer = Pricer(scenario, cost_model_for(scenario), AnalyticNetwork(scenario))
    return pricer, next(s for s in build_stages(scenario) if s.layers)


def test_the_pipeline_of_four_chunks_by_hand():
    """Four GEMM chunks of 1 ms and four collective chunks of 2 ms: 1 + 3·max(1, 2) + 2 = 9 ms; of 3 ms and
    0.5 ms: 3 + 3·3 + 0.5 = 12.5 ms. The GEMM chunks run on the SMs the userbuffers leave."""
    scenario = tp_scenario(True)
    _, stage = first_stage(scenario)
    (i, (j, g)), *_ = overlap_pairs(stage.forward).items()
    gemm, collective = stage.forward.components[j].ops[g], stage.forward.components[i].ops
    pricer = FixedPricer(1e-3, 2e-3)
    assert SPLITS == 4 and overlapped_s(pricer, gemm, collective, 132) == pytest.approx(9e-3, rel=1e-12)
    assert pricer.sms[0] == 132 - COMM_SMS
    assert overlapped_s(FixedPricer(3e-3, 0.5e-3), gemm, collective, 132) == pytest.approx(12.5e-3, rel=1e-12)


def test_the_collective_overlaps_the_row_parallel_gemm_next_to_it():
    """Forward: each TP all-reduce pairs with the last GEMM before it (o_proj, ffn.down); backward: with that
    GEMM's input gradient, in the component after it. A chunk of a GEMM is a quarter of its rows and FLOPs."""
    _, stage = first_stage(tp_scenario(True))
    for chunk in (stage.forward, stage.backward):
        pairs = overlap_pairs(chunk)
        assert len(pairs) == 2 * len(stage.layers)
        names = {chunk.components[j].ops[g].name for j, g in pairs.values()}
        assert names == {f"o_proj.{chunk.phase.value}", f"ffn.down.{chunk.phase.value}"}
        for i, (j, _) in pairs.items():
            assert j == (i - 1 if chunk.phase is Phase.F else i + 1)
    gemm = next(op for c in stage.forward.components for op in c.ops if op.name == "o_proj.F")
    part = chunked(gemm, SPLITS)
    assert part.shape[0] * SPLITS == gemm.shape[0] and part.flops * SPLITS == pytest.approx(gemm.flops, rel=1e-12)


def test_overlap_moves_tp_collectives_off_the_comm_stream():
    """With the overlap the chunk has no TP collective on the communication stream: each is a compute segment
    that meets its TP group, and the GEMM it overlaps has left its component."""
    pricer, stage = first_stage(tp_scenario(True))
    segments = pricer.component_segments(stage.forward)
    assert not [s for s in segments if s.stream is Stream.COMM]
    overlapped = [s for s in segments if s.component in ("ATTN_TP", "MLP_TP")]
    assert len(overlapped) == 2 * len(stage.layers) and {s.group for s in overlapped} == {"tp"}
    plain_pricer, plain = first_stage(tp_scenario(False))
    assert [s for s in plain_pricer.component_segments(plain.forward) if s.stream is Stream.COMM]
    gemms = sum(op.kind is Kind.GEMM for c in stage.forward.components for op in c.ops)
    assert gemms == sum(op.kind is Kind.GEMM for c in plain.forward.components for op in c.ops)


def test_overlap_shortens_a_tensor_parallel_step_of_large_gemms_and_is_off_by_default():
    """Llama 3 405B's layers at TP 8 hide most of their all-reduces behind the row-parallel GEMMs. (A small
    model's GEMMs are too short to gain from being cut in four: each chunk of the collective pays its latency.)"""
    assert tiny_dense().training.tp_comm_overlap is False

    def llama(overlap: bool):
        return load_scenario(preset="llama3-405b-h100", overrides=[
            "cluster.gpus=32", "parallelism.dp=1", "parallelism.pp=4", "parallelism.virtual_stages=1",
            "parallelism.stage_layers=null", "model.layers=8", "parallelism.global_batch=8", "schedule=1f1b",
            f"training.tp_comm_overlap={str(overlap).lower()}"])

    plain, overlapped = simulate(llama(False)), simulate(llama(True))
    assert overlapped.step_time_s < plain.step_time_s
    assert sum(s.exposed_comm_s for s in overlapped.stages) < 0.2 * sum(s.exposed_comm_s for s in plain.stages)
