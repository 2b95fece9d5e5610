"""Routing models, EP load (traffic, per-GPU rows, busiest links), redundant experts, and what skew costs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moesim.simulator.cli import app
from moesim.simulator.network import AnalyticNetwork
from moesim.simulator.pricing import Pricer
from moesim.simulator.simulate import simulate
from moesim.workloads.ep_load import ep_load, place_experts, scenario_ep_load
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import load_scenario
from moesim.workloads.model import build_stages
from moesim.workloads.ops import Kind, Phase
from moesim.workloads.routing import (BALANCED_CHUNK_TOKENS, RoutingInputs, group_limited_topk, load_routing_file,
                               routing_names, sample_balanced, sample_routing, zipf_popularity)

V3 = RoutingInputs(experts=256, top_k=8, groups=8, groups_per_token=4, gating="sigmoid", hidden=7168)
SMALL = RoutingInputs(experts=64, top_k=6, groups=8, groups_per_token=3, gating="sigmoid", hidden=64, seed=3)


def lite(*overrides: str):
    """DeepSeek-V2-Lite-like on 16 H800 (EP8 on one node): fast to simulate."""
    return load_scenario(preset="deepseek-v2-lite-h800", overrides=list(overrides))


def test_registry():
    assert routing_names() == ["balanced", "file", "gate", "zipf"]
    with pytest.raises(ScenarioError, match="unknown routing model 'nope'"):
        sample_routing("nope", V3)


@pytest.mark.parametrize("name", ["balanced", "zipf", "gate"])
def test_models_respect_the_group_limit(name):
    inputs = SMALL
    ids = sample_routing(name, inputs, tokens=2048)[0]
    assert ids.shape == (min(2048, ids.shape[0]), inputs.top_k)
    assert ids.min() >= 0 and ids.max() < inputs.experts
    assert all(len(set(row)) == inputs.top_k for row in ids)  # k distinct experts per token
    groups = ids // (inputs.experts // inputs.groups)
    assert max(len(set(row)) for row in groups) <= inputs.groups_per_token
    again = sample_routing(name, inputs, tokens=2048)[0]
    assert np.array_equal(ids, again)  # deterministic for a seed


def test_group_limited_topk_by_hand():
    # 2 groups of 2 experts; keep 1 group. Group 0 sums 0.9+0.1, group 1 sums 0.6+0.5: group 1 wins.
    scores = np.array([[0.9, 0.1, 0.6, 0.5]])
    assert group_limited_topk(scores, 2, 2, 1).tolist() == [[2, 3]]
    assert group_limited_topk(scores, 2, 2, 2).tolist() == [[0, 2]]


def test_torch_gate_matches_a_by_hand_gate():
    torch = pytest.importorskip("torch")
    from moesim.workloads.gate import route
    scores = torch.tensor([[0.0, -3.0, 2.0, 1.0, 1.5, 1.4]])  # 3 groups of 2; sigmoid keeps order
    # Group sums of sigmoid: g0 0.5+0.047, g1 0.881+0.731, g2 0.818+0.802 → keep g1, g2; top-2: experts 2, 4.
    assert route(scores, 2, 3, 2, "sigmoid", torch).tolist() == [[2, 4]]
    assert route(scores, 2, 3, 1, "softmax", torch).tolist() == [[2, 3]]  # softmax groups by their max


def test_zipf_skews_and_alpha_zero_is_balanced():
    flat = ep_load(sample_routing("zipf", RoutingInputs(**{**V3.__dict__, "zipf_alpha": 0.0})), 256, 64, 8)
    skewed = ep_load(sample_routing("zipf", RoutingInputs(**{**V3.__dict__, "zipf_alpha": 1.0})), 256, 64, 8)
    assert flat.gemm_factor < 1.15  # only sampling noise
    assert skewed.gemm_factor > 3.0
    assert skewed.stats.nvl_link_factor > flat.stats.nvl_link_factor
    assert skewed.stats.ib_link_factor > flat.stats.ib_link_factor
    # At a moderate skew the busiest GPU is the one whose 4 experts are the most popular together (at
    # alpha 1 the top expert saturates: a token picks it at most once, and group limits reshuffle the rest).
    mild = ep_load(sample_routing("zipf", RoutingInputs(**{**V3.__dict__, "zipf_alpha": 0.5})), 256, 64, 8)
    per_gpu = zipf_popularity(256, 0.5, V3.seed).reshape(64, 4).sum(axis=1)
    assert mild.busiest_gpu == int(np.argmax(per_gpu))
    assert 1.0 < mild.gemm_factor < skewed.gemm_factor


def test_traffic_matrix_and_rows_are_consistent():
    ids = sample_routing("zipf", RoutingInputs(**{**V3.__dict__, "zipf_alpha": 0.6}))
    load = ep_load(ids, 256, 64, 8)
    assert load.traffic.shape == (64, 64) and np.all(np.diag(load.traffic) == 0)
    assert load.gpu_rows.mean() == pytest.approx(1.0)
    # Rows are picks per GPU: recount them directly from the ids.
    picks = np.bincount(ids[0].ravel() // 4, minlength=64)
    assert np.allclose(load.gpu_rows, picks / picks.mean())
    # Tokens reaching a GPU: at least one of its experts among the token's 8.
    reach = np.array([(np.any(ids[0] // 4 == g, axis=1)).mean() for g in range(64)])
    assert np.allclose(load.gpu_reach, reach)
    assert load.traffic[1].sum() == pytest.approx(reach.sum() - reach[1])
    assert load.expert_share.sum() == pytest.approx(1.0)


def test_balanced_load_is_exactly_balanced():
    load = scenario_ep_load(load_scenario(preset="deepseek-v3-h800"))
    assert load.gemm_factor == 1.0 and load.stats.ib_link_factor == 1.0 and load.stats.nvl_link_factor == 1.0
    assert 3.0 < load.stats.ib_nodes < 4.0  # node-limited to 4 nodes, one of them often the source's own


def test_redundant_experts_stay_in_their_node_and_flatten_the_load():
    ids = sample_routing("zipf", RoutingInputs(**{**V3.__dict__, "zipf_alpha": 0.8}))
    plain = ep_load(ids, 256, 64, 8)
    balanced = ep_load(ids, 256, 64, 8, redundant=32)
    assert balanced.placement.redundant == 32
    for e, gpus in enumerate(balanced.placement.copies):
        assert gpus[0] == e // 4
        assert {g // 8 for g in gpus} == {e // 32}  # copies within the home node
        assert len(set(gpus)) == len(gpus)
    assert balanced.gemm_factor < plain.gemm_factor
    assert np.allclose(balanced.node_reach, plain.node_reach, atol=0.02)  # node-limited traffic unchanged
    hottest = int(np.argmax(plain.expert_share))
    assert len(balanced.placement.copies[hottest]) > 1


def test_place_experts_without_redundancy_is_the_home_placement():
    placement = place_experts(np.full(16, 1 / 16), ep=4, gpus_per_node=8, redundant=0)
    assert placement.copies == tuple((e // 4,) for e in range(16))


def test_file_round_trip_and_errors(tmp_path):
    ids = sample_routing("zipf", RoutingInputs(**{**SMALL.__dict__, "zipf_alpha": 0.7}), tokens=512)
    path = tmp_path / "ids.npy"
    np.save(path, ids.transpose(1, 0, 2))  # tokens × layers × top_k
    loaded = load_routing_file(path, 64, 6)
    assert np.array_equal(loaded, ids)
    js = tmp_path / "ids.json"
    js.write_text(json.dumps({"expert_ids": ids.transpose(1, 0, 2).tolist()}))
    assert np.array_equal(load_routing_file(js, 64, 6), ids)
    with pytest.raises(ScenarioError, match="outside 0..31"):
        load_routing_file(path, 32, 6)
    with pytest.raises(ScenarioError, match="top_k is 8"):
        load_routing_file(path, 64, 8)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    with pytest.raises(ScenarioError, match="cannot read"):
        load_routing_file(bad, 64, 6)
    with pytest.raises(ScenarioError, match="not found"):
        load_routing_file(tmp_path / "none.npy", 64, 6)


def test_skewed_routing_slows_the_step():
    base = lite()
    skew = lite("routing.name=zipf", "routing.zipf_alpha=1.0")
    fixed = lite("routing.name=zipf", "routing.zipf_alpha=1.0", "routing.redundant_experts=16")
    t_base, t_skew, t_fixed = (simulate(s).step_time_s for s in (base, skew, fixed))
    assert t_skew > 1.2 * t_base
    assert t_base < t_fixed < t_skew
    # Both the expert GEMMs (busiest GPU) and the all-to-all (busiest link) get slower.
    def prices(scenario):
        network = AnalyticNetwork(scenario)
        from moesim.calibration.cost_model import CostModel
        from moesim.calibration.profile import load_profile
        pricer = Pricer(scenario, CostModel(load_profile(None), scenario.cluster.gpu), network)
        stage = build_stages(scenario)[1]
        ops = list(stage.chunk(Phase.F).ops())
        gemm = sum(pricer.op_time_s(o) for o in ops if o.kind is Kind.GROUPED_GEMM)
        comm = sum(pricer.op_time_s(o) for o in ops if o.comm is not None)
        return gemm, comm
    (g0, c0), (g1, c1) = prices(base), prices(skew)
    assert g1 > 1.5 * g0 and c1 > c0


def test_skew_does_not_inflate_model_flops():
    base, skew = simulate(lite()), simulate(lite("routing.name=zipf", "routing.zipf_alpha=1.0"))
    # MFU counts useful FLOPs: the same work in a longer step.
    ratio = base.step_time_s / skew.step_time_s
    assert skew.tflops_per_gpu_causal == pytest.approx(base.tflops_per_gpu_causal * ratio, rel=1e-6)


def test_routing_cli_shows_the_slow_gpu(tmp_path, runner):
    """Representative mode prices the slowest GPU; ``moesim routing`` names it and its load."""
    out = runner.invoke(app, ["routing", "--preset", "deepseek-v2-lite-h800", "--set", "routing.name=zipf",
                              "--set", "routing.zipf_alpha=1.0", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    rows = np.array(data["gpu_rows"])
    assert len(rows) == 8 and data["busiest_gpu"] == int(np.argmax(rows)) and rows.max() > 1.5
    assert data["step_time_s"] > data["balanced_step_time_s"]
    # Absolute counts per micro-batch: 2 × 4096 tokens per GPU, top-6 picks, over the EP group of 8.
    mean_rows = data["tokens_per_gpu_per_micro_batch"] * 6
    assert data["tokens_per_gpu_per_micro_batch"] == 8192
    assert sum(data["expert_tokens_per_micro_batch"]) == pytest.approx(mean_rows * 8, rel=1e-3)
    assert max(data["gpu_expert_rows_per_micro_batch"]) == pytest.approx(rows.max() * mean_rows, rel=1e-3)
    saved = tmp_path / "ids.npy"
    out = runner.invoke(app, ["routing", "--preset", "deepseek-v2-lite-h800", "--set", "routing.name=zipf",
                              "--save", str(saved)])
    assert out.exit_code == 0 and "busiest GPU" in out.output
    replayed = runner.invoke(app, ["routing", "--preset", "deepseek-v2-lite-h800", "--set", "routing.name=file",
                                   "--set", f"routing.file={saved}", "--json"])
    assert json.loads(replayed.output)["gpu_rows"] == pytest.approx(
        json.loads(runner.invoke(app, ["routing", "--preset", "deepseek-v2-lite-h800", "--set", "routing.name=zipf",
                                       "--json"]).output)["gpu_rows"])
    out = runner.invoke(app, ["routing", "--preset", "deepseek-v2-lite-h800", "--save", str(saved)])
    assert out.exit_code == 2 and "--force" in out.output


@pytest.mark.parametrize("sets, message", [
    (["routing.name=file"], "needs routing.file"),
    (["routing.name=zipf", "routing.zipf_alpha=-1"], "routing.zipf_alpha"),
    (["routing.redundant_experts=999"], "exceeds model.moe.routed_experts"),
    (["routing.name=file", "routing.file=/nonexistent.npy"], "not found"),
])
def test_bad_routing_input_is_one_line(runner, sets, message):
    args = ["simulate", "--preset", "deepseek-v2-lite-h800"]
    for s in sets:
        args += ["--set", s]
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output


def test_dense_models_refuse_routing():
    with pytest.raises(ScenarioError, match="only MoE models route tokens"):
        load_scenario(preset="llama3-405b-h100", overrides=["routing.name=zipf"])


def test_gate_routing_from_loaded_weights(tmp_path):
    pytest.importorskip("torch")
    scenario = lite()
    moe, hidden = scenario.model.moe, scenario.model.hidden
    weights = np.random.default_rng(0).normal(size=(moe.routed_experts, hidden)) / hidden ** 0.5
    weights[moe.routed_experts - 1] *= 6.0  # a large-norm row wins the top-k far more often: a hot expert
    path = tmp_path / "gate.npy"
    np.save(path, weights.astype(np.float32))
    hot = lite("routing.name=gate", f"routing.gate_weights={path}")
    load = scenario_ep_load(hot)
    assert load.busiest_gpu == scenario.parallelism.ep - 1  # the hot expert's home GPU
    assert load.gemm_factor > 1.2
    random_gate = scenario_ep_load(lite("routing.name=gate"))
    assert 1.0 < random_gate.gemm_factor < load.gemm_factor
    assert simulate(hot).step_time_s > simulate(scenario).step_time_s
    np.save(path, weights[:, :10].astype(np.float32))
    with pytest.raises(ScenarioError, match="expected \\(routed_experts, hidden\\)"):
        scenario_ep_load(lite("routing.name=gate", f"routing.gate_weights={path}"))  # rewritten: read again


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), redundant=st.integers(0, 24), nodes=st.sampled_from([1, 2, 4]))
def test_placement_invariants(seed, redundant, nodes):
    ep, experts = 8 * nodes if nodes > 1 else 4, 32
    share = np.random.default_rng(seed).dirichlet(np.full(experts, 0.3))
    placement = place_experts(share, ep, 8, redundant)
    assert placement.redundant == redundant
    per_gpu, per_node = experts // ep, min(ep, 8)
    for e, gpus in enumerate(placement.copies):
        assert gpus[0] == e // per_gpu
        assert {g // per_node for g in gpus} == {gpus[0] // per_node}
    ids = np.random.default_rng(seed).choice(experts, size=(1, 512, 2), p=share)
    load = ep_load(ids, experts, ep, 8, redundant, seed)
    assert load.gpu_rows.mean() == pytest.approx(1.0)
    assert np.all((load.gpu_reach >= 0) & (load.gpu_reach <= 1))
    assert load.gemm_factor >= 1.0 and load.stats.nvl_link_factor >= 1.0 and load.stats.ib_link_factor >= 1.0


@pytest.mark.parametrize("tokens", [1, BALANCED_CHUNK_TOKENS, BALANCED_CHUNK_TOKENS + 1, 4096, 5000])
def test_the_balanced_sample_drawn_in_pieces_is_the_sample_drawn_at_once(tokens):
    """sample_balanced draws and routes a few hundred tokens at a time: the ids are those of one draw of every
    token's affinities routed at once."""
    at_once = group_limited_topk(np.random.default_rng(7).random((tokens, 256)), 8, 8, 4)
    assert np.array_equal(sample_balanced(256, 8, 8, 4, tokens, 7), at_once)


def test_group_limited_topk_is_the_masked_gates_stable_sort():
    """The gate's definition — experts outside the best groups at -inf, then the first top_k of a stable
    descending sort — and the picks group_limited_topk makes from the kept groups alone are the same, ties
    (equal scores, -inf scores, fewer finite candidates than top_k) included."""
    rng = np.random.default_rng(11)
    for trial in range(2000):
        groups, size = int(rng.choice([1, 2, 4, 8])), int(rng.integers(1, 9))
        experts, per_token = groups * size, int(rng.integers(1, groups + 1))
        top_k, tokens = int(rng.integers(1, experts + 2)), int(rng.integers(1, 30))
        kind = trial % 4
        if kind == 0:
            scores = rng.random((tokens, experts))
        elif kind == 1:
            scores = rng.integers(0, 3, (tokens, experts)).astype(float)  # many ties
        elif kind == 2:
            scores = rng.random((tokens, experts))
            scores[rng.random(scores.shape) < 0.3] = -np.inf
        else:  # Zipf's form: log popularity plus Gumbel noise
            scores = np.log(rng.random((tokens, experts))) + rng.gumbel(size=(tokens, experts))
        masked = scores
        if groups > 1 and per_token < groups:
            best_two = np.sort(scores.reshape(tokens, groups, size), axis=2)[:, :, -min(2, size):].sum(axis=2)
            kept = np.argsort(-best_two, axis=1)[:, :per_token]
            mask = np.zeros((tokens, groups), dtype=bool)
            np.put_along_axis(mask, kept, True, axis=1)
            masked = np.where(np.repeat(mask, size, axis=1), scores, -np.inf)
        expected = np.argsort(-masked, axis=1, kind="stable")[:, :top_k]
        got = group_limited_topk(scores, top_k, groups, per_token)
        assert got.dtype == expected.dtype and np.array_equal(got, expected), trial


def test_stable_top_k_is_the_stable_sorts_head():
    """Partial selection gives exactly the first k columns of a stable descending sort, ties (equal scores,
    masked -inf groups) broken by column as the sort breaks them."""
    from moesim.workloads.routing import stable_top_k

    rng = np.random.default_rng(7)
    for trial in range(150):
        rows, cols = int(rng.integers(1, 40)), int(rng.integers(1, 60))
        k = int(rng.integers(1, cols + 3))
        if trial % 3 == 0:
            scores = rng.random((rows, cols))
        elif trial % 3 == 1:
            scores = rng.integers(0, 4, (rows, cols)).astype(float)  # many ties
        else:
            scores = rng.random((rows, cols))
            scores[rng.random((rows, cols)) < 0.5] = -np.inf
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        got = stable_top_k(scores, k)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
