"""Pipeline schedules as programs run by the real engine: validity, textbook bubbles, overlap, memory, CLI."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.simulator.cli import app
from moesim.simulator.engine import PipelineEngine, TailSpec
from moesim.simulator.memory import MemoryLayoutError
from moesim.simulator.metrics import rank_breakdowns
from moesim.simulator.pricing import Segment, StagePrice
from moesim.simulator.schedules import SCHEDULES, Schedule, ScheduleError, Step, get_schedule
from moesim.simulator.simulate import simulate
from tests.conftest import tiny_dense
from moesim.workloads.ops import Phase, Stream

NO_TAIL = TailSpec(0.0, 0.0, 0.0)
ALL = ["gpipe", "1f1b", "interleaved", "zb-h1", "dualpipe", "dualpipev"]


def uniform(stages: int, f: float, b: float, w: float) -> list[StagePrice]:
    def seg(phase: Phase, t: float) -> tuple[Segment, ...]:
        return (Segment(phase.value, Stream.COMPUTE, t, phase),)
    return [StagePrice({Phase.F: seg(Phase.F, f), Phase.B: seg(Phase.B, b), Phase.W: seg(Phase.W, w)},
                       0.0, 0.0, 1.0) for _ in range(stages)]


def allowed(name: str, pp: int, m: int, v: int) -> bool:
    """The layouts each schedule documents it can run."""
    return {
        "gpipe": v == 1, "1f1b": v == 1, "zb-h1": v == 1,
        "interleaved": v >= 2 and m % pp == 0,
        "dualpipe": v == 1 and pp % 2 == 0 and m % 2 == 0 and m >= 2 * pp,
        "dualpipev": v == 2 and m >= 2 * pp,
    }[name]


def run(name: str, pp: int, m: int, v: int = 1, f=1.0, b=1.0, w=1.0, send=0.0, pair_s=None):
    schedule = get_schedule(name)(pp, m, v)
    timeline = PipelineEngine(schedule, uniform(schedule.stages, f, b, w), send, NO_TAIL, pair_s=pair_s).run()
    return schedule, timeline


def check_timeline(schedule: Schedule, timeline) -> None:
    """Every chunk's every segment once, on its rank; F before B before W on every stage; F flows down the
    stages, B flows back up."""
    spans: dict[tuple, list] = defaultdict(list)
    for rank, stream, start, end, label, phase, mb, stage in timeline.records:
        if phase in ("F", "B", "W") and not label.startswith("send"):
            assert rank == schedule.rank_of(mb, stage)
            spans[(mb, stage, phase)].append((label, start, end))
    expected = {(mb, s, ph.value) for mb in range(schedule.micro_batches) for s in range(schedule.stages)
                for ph in Phase}
    assert set(spans) == expected
    for key, segments in spans.items():
        labels = [label for label, _, _ in segments]
        assert len(labels) == len(set(labels)), f"a segment of {key} ran twice"
    first = {k: min(start for _, start, _ in v) for k, v in spans.items()}
    last = {k: max(end for _, _, end in v) for k, v in spans.items()}
    eps = 1e-9
    for mb in range(schedule.micro_batches):
        for s in range(schedule.stages):
            assert last[(mb, s, "F")] <= first[(mb, s, "B")] + eps
            assert first[(mb, s, "B")] <= first[(mb, s, "W")] + eps
            if s > 0:
                assert last[(mb, s - 1, "F")] <= first[(mb, s, "F")] + eps
            if s < schedule.stages - 1:
                assert last[(mb, s + 1, "B")] <= first[(mb, s, "B")] + eps


def moe_prices(stages: int, layers: int, attn: float, mlp: float, dispatch: float, combine: float,
               weight: float) -> list[StagePrice]:
    """Stages of ``layers`` MoE layers, each component its own segment, as the pricer lays them out."""
    def comp(phase, name, layer, t):
        stream = Stream.COMM if name in ("DISPATCH", "COMBINE") else Stream.COMPUTE
        return Segment(f"{name}{layer}", stream, t, phase, name, layer)
    prices = []
    for stage in range(stages):
        ids = [stage * layers + i for i in range(layers)]
        f = tuple(comp(Phase.F, n, i, t) for i in ids
                  for n, t in (("ATTN", attn), ("DISPATCH", dispatch), ("MLP", mlp), ("COMBINE", combine)))
        b = tuple(comp(Phase.B, n, i, t) for i in reversed(ids)
                  for n, t in (("COMBINE", combine), ("MLP", mlp), ("DISPATCH", dispatch), ("ATTN", attn)))
        w = tuple(comp(Phase.W, n, i, weight) for i in reversed(ids) for n in ("MLP", "ATTN"))
        components = {Phase.F: f, Phase.B: b, Phase.W: w}
        prices.append(StagePrice(components, 0.0, 0.0, 1.0, components))
    return prices


@pytest.mark.parametrize("name", ALL)
def test_every_allowed_layout_is_valid_and_runs_without_deadlock(name):
    """Over small pipelines and micro-batch counts: a schedule refuses exactly the layouts it documents, and
    every layout it accepts passes the static check and runs to completion in the engine in a valid order."""
    for v in (1, 2, 3):
        for pp in range(1, 7):
            for m in range(1, 15):
                if not allowed(name, pp, m, v):
                    with pytest.raises(ScheduleError) as err:
                        get_schedule(name)(pp, m, v)
                    assert "\n" not in str(err.value) and name in str(err.value)
                    continue
                schedule, timeline = run(name, pp, m, v, f=1.0, b=1.3, w=0.6, send=0.05)
                schedule.validate()
                check_timeline(schedule, timeline)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(ALL), pp=st.integers(1, 8), extra=st.integers(0, 10),
       f=st.floats(0.1, 3), b=st.floats(0.1, 3), w=st.floats(0.0, 3), send=st.floats(0, 1),
       overlap_gain=st.floats(0.3, 1.0))
def test_random_chunk_times_never_deadlock(name, pp, extra, f, b, w, send, overlap_gain):
    v = {"interleaved": 2, "dualpipev": 2}.get(name, 1)
    pp = pp + pp % 2 if name == "dualpipe" else pp
    m = {"interleaved": pp * (1 + extra % 3), "dualpipe": 2 * pp + 2 * extra, "dualpipev": 2 * pp + extra}.get(
        name, 1 + extra)
    schedule, timeline = run(name, pp, m, v, f, b, w, send, pair_s=overlap_gain * (f + b + w))
    check_timeline(schedule, timeline)


@settings(max_examples=40, deadline=None)
@given(name=st.sampled_from(ALL), pp=st.integers(1, 6), extra=st.integers(0, 6), layers=st.integers(1, 3),
       attn=st.floats(0.1, 2), mlp=st.floats(0.1, 2), dispatch=st.floats(0, 2), combine=st.floats(0, 2),
       weight=st.floats(0, 1), send=st.floats(0, 0.5))
def test_component_level_pairs_never_deadlock(name, pp, extra, layers, attn, mlp, dispatch, combine, weight,
                                              send):
    """Chunks priced per component with all-to-alls on the comm stream, as a MoE scenario is: every schedule
    still runs to completion in a valid order, every component of every chunk once."""
    v = {"interleaved": 2, "dualpipev": 2}.get(name, 1)
    pp = pp + pp % 2 if name == "dualpipe" else pp
    m = {"interleaved": pp * (1 + extra % 3), "dualpipe": 2 * pp + 2 * extra, "dualpipev": 2 * pp + extra}.get(
        name, 1 + extra)
    schedule = get_schedule(name)(pp, m, v)
    prices = moe_prices(schedule.stages, layers, attn, mlp, dispatch, combine, weight)
    timeline = PipelineEngine(schedule, prices, send, NO_TAIL).run()
    check_timeline(schedule, timeline)


def test_static_validation_catches_a_broken_program():
    schedule = get_schedule("1f1b")(2, 2)
    programs = schedule.programs()
    programs[0] = programs[0] + programs[0][:1]  # rank 0 runs its first forward twice
    with pytest.raises(ScheduleError, match="F0@0 runs 2 times"):
        schedule.validate(programs)
    programs = schedule.programs()
    programs[1] = list(reversed(programs[1]))
    with pytest.raises(ScheduleError, match="before its F"):
        schedule.validate(programs)


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("pp,m", [(2, 2), (4, 8), (5, 7), (8, 20), (6, 3)])
def test_textbook_bubble(name, pp, m):
    """GPipe and 1F1B with uniform chunks t = f + b + w and free sends. The last micro-batch's backward cannot
    start on rank 0 before its forward has crossed all p ranks and its backward has crossed back p − 1 of
    them, and in between every rank runs its m chunks back to back, so the step is (m + p − 1)·t; each rank is
    busy m·t of it, so its bubble is (p − 1)·t (the fraction (p − 1)/(m + p − 1))."""
    f, b, w = 1.0, 1.5, 0.5
    t = f + b + w
    _, timeline = run(name, pp, m, f=f, b=b, w=w)
    assert timeline.makespan_s == pytest.approx((m + pp - 1) * t)
    for r in rank_breakdowns(timeline, [1.0] * pp):
        assert r.bubble_s == pytest.approx((pp - 1) * t)


@pytest.mark.parametrize("pp,m,v", [(4, 8, 2), (4, 12, 3), (8, 16, 2)])
def test_interleaved_divides_the_bubble_by_the_virtual_stages(pp, m, v):
    """With the model cut into p·v chunks of t/v each, fill and drain cross p − 1 ranks of one small chunk."""
    t = 3.0
    _, timeline = run("interleaved", pp, m, v, f=1 / v, b=1 / v, w=1 / v)
    for r in rank_breakdowns(timeline, [1.0] * pp * v):
        assert r.bubble_s == pytest.approx((pp - 1) * t / v)


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (8, 20)])
def test_zero_bubble_and_dualpipe_bubbles_match_their_papers_and_beat_1f1b(pp, m):
    """At equal work (F = B = W = 1, no overlap gain): 1F1B's bubble is 3(p − 1); ZB-H1's (p − 1)(F + B − W)
    = p − 1 (Qi et al. 2024); DualPipe's (p/2 − 1)(F&B + B − 3W) = p/2 − 1 (DeepSeek-V3 TR Table 2)."""
    bubbles = {}
    for name, v in (("1f1b", 1), ("zb-h1", 1), ("dualpipe", 1)):
        _, timeline = run(name, pp, m, v)
        bubbles[name] = max(r.bubble_s for r in rank_breakdowns(timeline, [1.0] * pp))
    assert bubbles["1f1b"] == pytest.approx(3 * (pp - 1))
    assert bubbles["zb-h1"] == pytest.approx(pp - 1)
    assert bubbles["dualpipe"] == pytest.approx(pp / 2 - 1)
    assert bubbles["zb-h1"] < bubbles["1f1b"] and bubbles["dualpipe"] < bubbles["1f1b"]
    # TR Table 2: DualPipe holds PP + 1 micro-batches of activations (each rank, both directions together).
    _, timeline = run("dualpipe", pp, m)
    assert {r.peak_inflight for r in rank_breakdowns(timeline, [1.0] * pp)} == {pp + 1}
    # DualPipeV: the same pipeline depth over pp/2 ranks holding two half-size stages each.
    _, timeline = run("dualpipev", pp // 2 if pp > 2 else 1, m, 2, 0.5, 0.5, 0.5)
    assert max(r.bubble_s for r in rank_breakdowns(timeline, [1.0] * pp)) < bubbles["1f1b"]


def test_zero_bubble_keeps_1f1b_peak_in_flight():
    pp, m = 6, 18
    _, zb = run("zb-h1", pp, m)
    _, ofob = run("1f1b", pp, m)
    peak = lambda tl: max(r.peak_inflight for r in rank_breakdowns(tl, [1.0] * pp))  # noqa: E731
    assert peak(zb) == peak(ofob) == pp


def test_an_overlapped_pair_hides_one_chunks_communication_behind_the_others_compute():
    """One rank, one stage: F0; then F1 overlapped with B0 (W0 in it); then B1 with its W. F and B are each
    compute 2, comm 1, compute 2, comm 1 (F: ATTN, DISPATCH, MLP, COMBINE; B the reverse); W is MLP 1, ATTN 1.

    Derived by hand (compute | comm stream):
      F0: aF0 0-2 | dF0 2-3 (exposed) | mF0 3-5 | cF0 5-6, hidden under aF1, which needs nothing: 5-7.
      pair, in the trace's order: cB0 6-7 (after F0) | mB0 7-9 | dF1 7-8 | dB0 9-10 and mW0 9-10 |
        mF1 10-12 | aB0 12-14 | cF1 12-13 | aW0 14-15 — the compute stream never waits from 5 to 15.
      B1: cB1 13-14 (hidden under aB0) | mB1 15-17 | dB1 17-18 (exposed) | aB1 18-20 | mW1 20-21 | aW1 21-22.
    Makespan 22 against 6 + 14 + 8 = 28 with nothing overlapped; 2 of the 8 units of communication exposed."""

    class ThreeSteps(Schedule):
        name = "three-steps"
        splits_backward = True

        def programs(self):
            return [[Step(0, 0, Phase.F), Step(1, 0, Phase.F, overlap=Step(0, 0, Phase.B, with_weight=True)),
                     Step(1, 0, Phase.B, with_weight=True)]]

    def comps(phase, names):
        return tuple(Segment(f"{n}0", Stream.COMM if n in ("DISPATCH", "COMBINE") else Stream.COMPUTE, t, phase,
                             n, 0) for n, t in names)
    components = {
        Phase.F: comps(Phase.F, [("ATTN", 2), ("DISPATCH", 1), ("MLP", 2), ("COMBINE", 1)]),
        Phase.B: comps(Phase.B, [("COMBINE", 1), ("MLP", 2), ("DISPATCH", 1), ("ATTN", 2)]),
        Phase.W: comps(Phase.W, [("MLP", 1), ("ATTN", 1)]),
    }
    price = StagePrice(components, 0.0, 0.0, 1.0, components)
    schedule = ThreeSteps(1, 2)
    schedule.validate()
    timeline = PipelineEngine(schedule, [price], 0.0, NO_TAIL).run()
    assert timeline.makespan_s == pytest.approx(22)
    spans = {(r[5], r[6], r[4]): (r[2], r[3]) for r in timeline.records}
    assert spans[("B", 0, "COMBINE0")] == pytest.approx((6, 7))
    assert spans[("F", 1, "DISPATCH0")] == pytest.approx((7, 8))
    assert spans[("W", 0, "MLP0")] == pytest.approx((9, 10))
    assert spans[("F", 1, "COMBINE0")] == pytest.approx((12, 13))
    assert spans[("W", 0, "ATTN0")] == pytest.approx((14, 15))
    (rank,) = rank_breakdowns(timeline, [1.0])
    assert rank.forward_s == pytest.approx(8) and rank.backward_input_s == pytest.approx(8)
    assert rank.backward_weight_s == pytest.approx(4)
    assert rank.exposed_comm_s == pytest.approx(2) and rank.bubble_s == pytest.approx(0)


def test_dualpipe_holds_two_parameter_copies_and_memory_is_per_rank():
    one = simulate(tiny_dense(**{"parallelism.global_batch": 8}), check_memory=False)
    two = simulate(tiny_dense(**{"parallelism.global_batch": 8, "schedule": "dualpipe"}), check_memory=False)
    for r in range(4):
        mirror = 3 - r
        assert two.stages[r].weights_gb == pytest.approx(one.stages[r].weights_gb + one.stages[mirror].weights_gb)
        assert two.stages[r].optimizer_states_gb == pytest.approx(
            one.stages[r].optimizer_states_gb + one.stages[mirror].optimizer_states_gb)
    # 1F1B rank r holds pp − r micro-batches of its stage's activations (ranks 1 and 2 hold equal stages).
    assert [s.peak_inflight for s in one.stages] == [4, 3, 2, 1]
    assert one.stages[1].activations_gb == pytest.approx(one.stages[2].activations_gb * 3 / 2)
    # DualPipe: rank 1 holds stages 1 and 2, whose micro-batches it keeps between their F and their W.
    assert two.stages[1].activations_gb == pytest.approx(
        two.stages[1].peak_inflight * one.stages[2].activations_gb / 2)


def test_recomputation_lowers_activation_memory_under_dualpipe():
    from moesim.workloads.loader import load_scenario
    kept = simulate(load_scenario(preset="deepseek-v2-lite-h800", overrides=["schedule=dualpipe"]))
    recomputed = simulate(load_scenario(preset="deepseek-v2-lite-h800", overrides=[
        "schedule=dualpipe", "training.recompute.mla_up_proj=true"]))
    assert [s.peak_inflight for s in kept.stages] == [s.peak_inflight for s in recomputed.stages]
    assert all(r.activations_gb < k.activations_gb for r, k in zip(recomputed.stages, kept.stages))
    assert all(r.weights_gb == k.weights_gb for r, k in zip(recomputed.stages, kept.stages))


def test_zero_stage_shards_optimizer_states_and_gradients():
    base = {"cluster.gpus": 8, "parallelism.dp": 2, "parallelism.global_batch": 16}
    z0 = simulate(tiny_dense(**base, **{"parallelism.zero_stage": 0}))
    z1 = simulate(tiny_dense(**base, **{"parallelism.zero_stage": 1}))
    z2 = simulate(tiny_dense(**base, **{"parallelism.zero_stage": 2}))
    assert z1.stages[0].optimizer_states_gb == pytest.approx(z0.stages[0].optimizer_states_gb / 2)
    assert z1.stages[0].gradients_gb == pytest.approx(z0.stages[0].gradients_gb)
    assert z2.stages[0].gradients_gb == pytest.approx(z0.stages[0].gradients_gb / 2)


def test_a_layout_over_hbm_fails_saying_by_how_much(runner):
    s = tiny_dense(**{"parallelism.seq_len": 65536, "parallelism.micro_batch_size": 4,
                      "parallelism.global_batch": 32, "schedule": "gpipe"})
    with pytest.raises(MemoryLayoutError, match=r"GB over"):
        simulate(s)
    assert not simulate(s, check_memory=False).fits_in_memory
    result = runner.invoke(app, ["simulate", "--preset", "llama3-405b-h100", "--set", "schedule=gpipe",
                                 "--set", "parallelism.virtual_stages=1",
                                 "--set", f"parallelism.stage_layers={[7] + [8] * 14 + [7]}"])
    assert result.exit_code == 2
    assert "GB over" in result.output and "Traceback" not in result.output


def test_every_schedule_runs_from_the_scenario():
    for name in ALL:
        v = 2 if name in ("interleaved", "dualpipev") else 1
        s = tiny_dense(**{"schedule": name, "parallelism.virtual_stages": v, "parallelism.global_batch": 8})
        result = simulate(s)
        assert result.schedule == name and result.step_time_s > 0


@pytest.mark.parametrize("args,message", [
    (["--set", "schedule=dualpipe", "--set", "cluster.gpus=8", "--set", "parallelism.dp=2",
      "--set", "parallelism.global_batch=16"], None),
    (["--set", "schedule=dualpipe", "--set", "cluster.gpus=3", "--set", "parallelism.pp=3",
      "--set", "model.layers=6", "--set", "parallelism.global_batch=12"], "needs an even pp"),
    (["--set", "schedule=dualpipe", "--set", "parallelism.global_batch=4"], "micro-batches ≥ 2·pp = 8"),
    (["--set", "schedule=dualpipev"], "parallelism.virtual_stages=2"),
    (["--set", "schedule=interleaved", "--set", "parallelism.virtual_stages=2",
      "--set", "parallelism.global_batch=6"], "multiple of pp=4"),
])
def test_simulate_set_schedule(runner, args, message):
    tiny = ["--preset", "mixtral-8x7b-h100"] + [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    result = runner.invoke(app, ["simulate", *tiny, *args])
    if message is None:
        assert result.exit_code == 0, result.output
        assert "schedule dualpipe" in result.output
    else:
        assert result.exit_code == 2 and message in result.output
        assert "\n" not in result.output.strip()


TINY = {"cluster.gpus": 4, "cluster.gpu": "h100", "model.moe": "null", "model.layers": 8, "model.hidden": 1024,
        "model.vocab": 32000, "model.ffn_intermediate": 4096, "model.mtp_depth": 0,
        "model.attention": '{"kind": "gqa", "heads": 8, "kv_heads": 2, "head_dim": 128}',
        "parallelism.dp": 1, "parallelism.tp": 1, "parallelism.pp": 4, "parallelism.ep": 1,
        "parallelism.stage_layers": "null", "parallelism.global_batch": 8, "parallelism.seq_len": 1024}


def test_deepseek_preset_runs_dualpipe_and_hides_more_communication_than_1f1b():
    from moesim.workloads.loader import load_scenario
    dual = simulate(load_scenario(preset="deepseek-v2-lite-h800", overrides=["schedule=dualpipe"]))
    ofob = simulate(load_scenario(preset="deepseek-v2-lite-h800"))
    assert dual.step_time_s < ofob.step_time_s
    assert sum(s.exposed_comm_s for s in dual.stages) < sum(s.exposed_comm_s for s in ofob.stages)
    assert load_scenario(preset="deepseek-v3-h800").schedule == "dualpipe"


def test_schedule_command_json(runner):
    result = runner.invoke(app, ["schedule", "1f1b", "--pp", "4", "--microbatches", "8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["makespan"] == pytest.approx((8 + 3) * 3)
    assert [r["peak_inflight"] for r in report["ranks"]] == [4, 3, 2, 1]
    assert all(r["bubble"] == pytest.approx(9) and r["busy"] == pytest.approx(24) for r in report["ranks"])
    gain = json.loads(runner.invoke(app, ["schedule", "dualpipe", "--pp", "4", "-m", "8", "--fb", "2",
                                          "--json"]).output)
    plain = json.loads(runner.invoke(app, ["schedule", "dualpipe", "--pp", "4", "-m", "8", "--json"]).output)
    assert gain["makespan"] < plain["makespan"]


def test_schedule_command_text_errors_and_p2p(runner):
    result = runner.invoke(app, ["schedule", "zb-h1", "--pp", "4", "-m", "8"])
    assert result.exit_code == 0 and "peak in flight" in result.output
    slow = json.loads(runner.invoke(app, ["schedule", "gpipe", "--pp", "4", "-m", "6", "--p2p", "0.25",
                                          "--json"]).output)
    assert slow["makespan"] == pytest.approx((6 + 3) * 3 + 2 * 3 * 0.25)
    for args, message in ((["dualpipe", "--pp", "7"], "even pp (got 7); set --pp"),
                          (["dualpipev", "--pp", "4", "-m", "6"], "≥ 2·pp = 8"),
                          (["nonesuch"], "unknown schedule"), (["1f1b", "--f", "-1"], "must be ≥ 0 s, got -1 s"),
                          (["1f1b", "--pp", "0"], "must be ≥ 1"), (["1f1b", "--set", "schedule=x"], "--set needs"),
                          (["1f1b", "--preset", "deepseek-v3-h800", "--pp", "4"], "use --set parallelism.pp")):
        result = runner.invoke(app, ["schedule", *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_schedule_command_on_a_preset(runner):
    result = runner.invoke(app, ["schedule", "dualpipe", "--preset", "deepseek-v2-lite-h800", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["pp"] == 2 and report["micro_batches"] == 16 and len(report["ranks"]) == 2
    assert all(r["busy"] > 0 and r["bubble"] >= 0 for r in report["ranks"])


def test_schedule_command_html_gantt_and_no_overwrite(runner, tmp_path):
    out = tmp_path / "pipe.html"
    result = runner.invoke(app, ["schedule", "dualpipe", "--pp", "4", "-m", "8", "--html", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "plotly" in page.lower() and "rank 3 compute" in page
    out.write_text("mine")
    result = runner.invoke(app, ["schedule", "1f1b", "--html", str(out)])
    assert result.exit_code == 2 and "--force" in result.output and out.read_text() == "mine"
    result = runner.invoke(app, ["schedule", "1f1b", "--html", str(out), "--force"])
    assert result.exit_code == 0 and out.read_text() != "mine"


def test_registry_lists_every_schedule():
    assert set(ALL) <= set(SCHEDULES)
    assert all(SCHEDULES[n].description for n in ALL)
