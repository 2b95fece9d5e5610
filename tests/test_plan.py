"""Capacity planning: unit parsing, model names, the search, and the known-best layout of a hand-built case."""

from __future__ import annotations

import json

import pytest

from simulator.cli import app
from simulator.plan import (PlanRequest, pareto_front, parse_days, parse_tokens, ranked, resolve_model, search,
                            stage_split)
from simulator.simulate import simulate
from simulator.sweep.executors import LocalExecutor
from topologies.gpus import gpu_spec
from workloads.errors import ScenarioError
from tests.conftest import tiny_dense


@pytest.mark.parametrize("text,tokens", [("14.8T", 14.8e12), ("500B", 5e11), ("2.5t", 2.5e12), ("1e12", 1e12),
                                         ("750M", 7.5e8), (" 3 T ", 3e12)])
def test_parse_tokens(text, tokens):
    assert parse_tokens(text) == pytest.approx(tokens)


@pytest.mark.parametrize("text", ["14.8X", "", "T", "-3T", "0T", "1.2.3T"])
def test_parse_tokens_errors(text):
    with pytest.raises(ScenarioError, match=r"--tokens .*e\.g\. 14\.8T"):
        parse_tokens(text)


@pytest.mark.parametrize("text,days", [("60d", 60), ("8w", 56), ("36h", 1.5), ("45", 45), ("2.5d", 2.5)])
def test_parse_days(text, days):
    assert parse_days(text) == pytest.approx(days)


@pytest.mark.parametrize("text", ["60 days", "0d", "-1d", "d", "3m"])
def test_parse_days_errors(text):
    with pytest.raises(ScenarioError, match="--deadline .*60d"):
        parse_days(text)


@pytest.mark.parametrize("name,preset", [("deepseek-v3", "deepseek-v3-h800"), ("DeepSeek-V3", "deepseek-v3-h800"),
                                         ("llama3-405b", "llama3-405b-h100"), ("mixtral-8x7b", "mixtral-8x7b-h100"),
                                         ("deepseek-v2-lite", "deepseek-v2-lite-h800"),
                                         ("mixtral-8x7b-h100", "mixtral-8x7b-h100")])
def test_model_names(name, preset):
    assert resolve_model(name) == preset


def test_unknown_model_lists_known():
    with pytest.raises(ScenarioError, match="--model 'gpt-5' is unknown; known: .*deepseek-v3"):
        resolve_model("gpt-5")


def test_stage_split():
    assert stage_split(61, 16, None) == [3] + [4] * 13 + [3, 3]  # 13 extra layers on the 14 middle stages
    assert sum(stage_split(61, 8, None)) == 61
    assert stage_split(64, 8, None) is None  # even split: the scenario's default
    assert stage_split(61, 2, [30, 31]) == [30, 31]  # the preset's own split when it fits this pp


# The hand-built case: a small dense model on 4 GPUs, every (tp, pp, micro-batch, schedule) a 4-GPU cluster can
# take. Each layout is simulated directly here, without the planner, to know the answer.
HAND_LAYOUTS = [(tp, pp, mbs, schedule) for tp in (1, 2, 4) for pp in (1, 2, 4) if tp * pp <= 4
                for mbs in (1, 2) for schedule in ("gpipe", "1f1b")]


def hand_results(hbm_gb: float):
    out = {}
    for tp, pp, mbs, schedule in HAND_LAYOUTS:
        sc = tiny_dense(**{"cluster.gpu": {**gpu_spec("h100"), "hbm_gb": hbm_gb}, "parallelism.tp": tp,
                           "parallelism.pp": pp, "parallelism.dp": 4 // (tp * pp),
                           "parallelism.micro_batch_size": mbs, "schedule": schedule})
        out[(tp, pp, mbs, schedule)] = simulate(sc, check_memory=False)  # the test needs fits_in_memory
    return out


def plan_tiny(hbm_gb: float, **request):
    base = tiny_dense(**{"cluster.gpu": {**gpu_spec("h100"), "hbm_gb": hbm_gb}}).model_dump()
    req = PlanRequest(tokens=base["training"]["tokens"], gpu="h100", gpu_counts=[4], tp=[1, 2, 4], pp=[1, 2, 4],
                      micro_batch_sizes=[1, 2], schedules=["gpipe", "1f1b"], **request)
    return req, search(base, req, lambda points: LocalExecutor(workers=1).run(base, None, points))


def layout_of(cand):
    lay = cand.layout
    return (lay["parallelism.tp"], lay["parallelism.pp"], lay["parallelism.micro_batch_size"], lay["schedule"])


def test_planner_picks_the_known_best_layout():
    roomy = hand_results(80.0)
    fastest = min(roomy, key=lambda k: roomy[k].training_days)
    # Shrink HBM just below what the unconstrained fastest layout needs: the planner must pick another one.
    tight_gb = max(s.peak_memory_gb for s in roomy[fastest].stages) * 0.999
    tight = hand_results(tight_gb)
    fitting = {k: r for k, r in tight.items() if r.fits_in_memory}
    assert fastest not in fitting and fitting, "the hand-built case must exclude the fastest layout"
    expected = min(fitting, key=lambda k: (fitting[k].training_days, k))

    request, candidates = plan_tiny(tight_gb)
    best = ranked(candidates)
    assert len(candidates) == len(HAND_LAYOUTS)
    assert {layout_of(c) for c in best} == set(fitting)
    assert layout_of(best[0]) == expected
    assert best[0].days == pytest.approx(tight[expected].training_days)
    assert best[0].cost_usd == pytest.approx(4 * tight[expected].training_days * 24 * 2.0)
    rejected = {layout_of(c): c.reason for c in candidates if c.rejected}
    assert "peak memory" in rejected[fastest] and f"of {tight_gb:g} GB" in rejected[fastest]


def test_deadline_budget_and_pareto_front():
    roomy = hand_results(80.0)
    days = sorted({round(r.training_days, 6) for r in roomy.values()})
    deadline = (days[2] + days[3]) / 2  # between the third and fourth distinct training times
    in_time = sum(r.training_days <= deadline for r in roomy.values())
    request, candidates = plan_tiny(80.0, deadline_days=deadline)
    assert 3 <= len(ranked(candidates)) == in_time < len(HAND_LAYOUTS)
    assert all(c.days <= deadline for c in ranked(candidates))
    assert sum(c.rejected == "deadline" for c in candidates) == len(HAND_LAYOUTS) - in_time
    # On one GPU count cost is proportional to time, so the front is the single fastest layout.
    front = pareto_front(candidates)
    assert [layout_of(c) for c in front] == [layout_of(ranked(candidates)[0])]
    cheapest = min(c.cost_usd for c in candidates)
    _, over = plan_tiny(80.0, budget_usd=cheapest * 0.5)
    assert ranked(over) == [] and all(c.rejected == "budget" for c in over)


def test_pareto_front_over_gpu_counts():
    """Across cluster sizes, more GPUs finish sooner but cost more: the front keeps only the undominated."""
    base = tiny_dense(**{"cluster.gpus": 4, "parallelism.pp": 1, "parallelism.dp": 4,
                         "parallelism.global_batch": 32}).model_dump()
    req = PlanRequest(tokens=1e12, gpu="h100", gpu_counts=[1, 2, 4], tp=[1], pp=[1], micro_batch_sizes=[1],
                      schedules=["1f1b"])
    candidates = search(base, req, lambda points: LocalExecutor(workers=1).run(base, None, points))
    front = pareto_front(candidates)
    assert [c.days for c in front] == sorted(c.days for c in front)
    assert [c.cost_usd for c in front] == sorted((c.cost_usd for c in front), reverse=True)
    for c in candidates:  # nothing off the front beats a front member on both axes
        assert c in front or any(f.days <= c.days and f.cost_usd <= c.cost_usd for f in front)
    assert front[0].layout["cluster.gpus"] == 4


def test_plan_cli_json_and_table(runner):
    args = ["plan", "--model", "deepseek-v2-lite", "--tokens", "5.7T", "--gpu", "h800", "--gpus", "16", "--tp", "1",
            "--pp", "1", "--micro-batch-sizes", "2", "--schedules", "1f1b", "--deadline", "200d", "-w", "1"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["preset"] == "deepseek-v2-lite-h800" and plan["layouts"] == 2  # ep 8 (one node) and ep 16
    assert plan["best"][0]["layout"]["gpus"] == 16 and plan["best"][0]["reasons"]
    assert plan["best"][0]["training_days"] <= 200
    assert {b["layout"]["ep"] for b in plan["best"]} == {8, 16}
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "time/cost Pareto front" in result.output and "fastest of" in result.output


@pytest.mark.parametrize("args,message", [
    (["--tokens", "14.8X"], "--tokens '14.8X'"),
    (["--deadline", "soon"], "--deadline 'soon'"),
    (["--gpu", "a100"], "--gpu 'a100' is unknown; known: h100, h200, h800"),
    (["--model", "gpt-5"], "--model 'gpt-5' is unknown"),
    (["--tp", "1,x"], "--tp '1,x': expected comma-separated whole numbers"),
    (["--budget-usd", "-5"], "'--budget-usd': must be > 0, got -5"),
    (["--schedules", "zigzag"], "unknown schedule 'zigzag'"),
])
def test_plan_cli_bad_input(runner, args, message):
    base = {"--model": "deepseek-v2-lite", "--tokens": "1T"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    result = runner.invoke(app, ["plan", *[x for kv in base.items() for x in kv]])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_plan_reports_when_nothing_meets_the_deadline(runner):
    result = runner.invoke(app, ["plan", "--model", "deepseek-v2-lite", "--tokens", "5.7T", "--gpus", "16",
                                 "--tp", "1", "--pp", "2", "--micro-batch-sizes", "2", "--schedules", "1f1b",
                                 "--deadline", "60d", "-w", "1"])
    assert result.exit_code == 1
    assert "no layout meets every constraint; the fastest that fits is 16 GPUs" in result.output


def test_clusters_too_small_for_the_deadline_are_not_simulated():
    base = tiny_dense().model_dump()
    req = PlanRequest(tokens=1e12, gpu="h100", gpu_counts=[1, 2, 4], tp=[1], pp=[1], micro_batch_sizes=[1],
                      schedules=["1f1b"], deadline_days=1e9)
    simulated = []

    def run_points(points):
        simulated.extend(points)
        return LocalExecutor(workers=1).run(base, None, points)

    days = {c.layout["cluster.gpus"]: c.days for c in search(base, req, run_points)}
    assert len(simulated) == 3
    # A deadline between the 4-GPU and 2-GPU peak-FLOPS bounds: only the 4-GPU cluster is worth simulating.
    from simulator.simulate import SECONDS_PER_DAY
    from workloads.model import parameter_counts
    sc = tiny_dense()
    bound = {g: 6 * parameter_counts(sc.model).activated * 1e12 / (g * sc.cluster.gpu.fp8_tflops * 1e12)
             / SECONDS_PER_DAY for g in (1, 2, 4)}
    assert all(days[g] >= bound[g] for g in days)  # the bound never exceeds what the simulator finds
    req = req.model_copy(update={"deadline_days": (bound[2] + bound[4]) / 2})
    simulated.clear()
    candidates = search(base, req, run_points)
    assert [p.overrides["cluster.gpus"] for p in simulated] == [4]
    assert {c.layout["cluster.gpus"]: c.rejected for c in candidates if "peak" in c.reason} == \
        {1: "deadline", 2: "deadline"}
