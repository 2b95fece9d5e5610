"""Fuzzing the whole command line, in-process, as a user would type it: simulate with --set, scenario files,
schedule, collective, routing, topology, trace, replay, sweep specs, plan and report inputs.

Every generated input must end in one of three ways: success (exit 0; plan may exit 1 for "no layout meets
every constraint"), or exit 2 with exactly one line on stderr starting ``error:``. Never a traceback, a
numpy warning, another exit code, or an output file left behind (whole or half-written) by a failed run.
Seeds are fixed (``derandomize``) so a CI run is repeatable; each example has a deadline, so a hang fails.
1,045 inputs in all (the max_examples below), about a minute on 2 cores.
"""

from __future__ import annotations

import io
import json
import sys
import traceback
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moesim.simulator.cli import main
from tests.conftest import tiny_dense

FUZZ = settings(derandomize=True, deadline=20_000, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.filter_too_much])

# Numbers as users mistype them: signs, zero, huge, tiny, inf/nan, units (right and wrong), words, empties.
NUMBERS = st.one_of(
    st.sampled_from(["0", "-1", "1", "2", "3", "7", "8", "64", "1e-300", "1e300", "1e400", "inf", "-inf", "nan",
                     ".inf", "100000000", "0.5", "400Gb/s", "50GB/s", "400gbps", "1ms", "2h", "64MiB", "1MB",
                     "abc", "", " ", "[]", "{}", "null", "true", "1,2", "0x10", "١"]),
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8),
)


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Run ``moesim ARGS`` in this process: (exit code, stdout, stderr); numpy warnings fail the input."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["moesim", *args]
    try:
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except Exception:  # what a user would see as a traceback
                raise AssertionError(f"moesim {args}: traceback\n{traceback.format_exc()}") from None
    finally:
        sys.argv = argv
    runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not runtime, f"moesim {args}: warning {runtime[0].message}"
    return code, out.getvalue(), err.getvalue()


def check(args: list[str], outputs: tuple[Path, ...] = (), ok_codes=(0,)) -> int:
    """Run and assert the contract; ``outputs`` must not exist after a failure (nor temporaries beside them)."""
    existed = {p: p.exists() for p in outputs}
    code, out, err = run_cli(args)
    assert code in (*ok_codes, 2), f"moesim {args}: exit {code}\n{out}\n{err}"
    assert "Traceback" not in out + err, f"moesim {args}:\n{err}"
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), f"moesim {args}: stderr {err!r}"
        for path in outputs:
            if not existed[path]:
                assert not path.exists(), f"moesim {args}: failed but left {path}"
    for path in outputs:
        assert not list(path.parent.glob(f".{path.name}.*")), f"moesim {args}: a temporary file was left"
    return code


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a tiny scenario (4 GPUs, dense, milliseconds to simulate)."""
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(json.loads(tiny_dense().model_dump_json())))
    return folder


def _leaves(data, prefix=""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1]


TINY_FIELDS = sorted(set(_leaves(json.loads(tiny_dense().model_dump_json())))) + [
    "cluster.network.nic_gbps", "faults.stragglers", "routing.zipf_alpha", "nonsense", "model.moe.top_k"]


@settings(FUZZ, max_examples=220)
@given(field=st.sampled_from(TINY_FIELDS), value=NUMBERS, out=st.sampled_from([False] * 7 + [True]))
def test_simulate_set(work, field, value, out):
    target = work / "sim.html"
    target.unlink(missing_ok=True)
    args = ["simulate", str(work / "tiny.yaml"), "--set", f"{field}={value}", "--json"]
    check(args + (["--report", str(target)] if out else []), (target,))
    target.unlink(missing_ok=True)


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_scenario_files(work, data):
    """A valid tiny scenario with one leaf replaced, dropped or retyped, as a YAML or JSON file."""
    scenario = json.loads(tiny_dense().model_dump_json())
    path = data.draw(st.sampled_from(TINY_FIELDS[:-5])).split(".")
    node = scenario
    for part in path[:-1]:
        node = node[part] if isinstance(node.get(part), dict) else node.setdefault(part, {})
    action = data.draw(st.sampled_from(["replace", "drop", "yaml"]))
    if action == "drop":
        node.pop(path[-1], None)
    else:
        node[path[-1]] = data.draw(st.one_of(NUMBERS, st.none(), st.lists(st.integers(-3, 3), max_size=3)))
    suffix = data.draw(st.sampled_from([".yaml", ".json"]))
    file = work / f"fuzz{suffix}"
    text = json.dumps(scenario) if suffix == ".json" else yaml.safe_dump(scenario)
    if data.draw(st.booleans()):
        text = text[:data.draw(st.integers(0, len(text)))]  # a file cut short
    file.write_text(text)
    check(["simulate", str(file), "--json"])


@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(["1f1b", "gpipe", "dualpipe", "dualpipev", "interleaved", "zb-h1", "nope", ""]),
       pp=NUMBERS, mb=NUMBERS, f=NUMBERS, extra=st.sampled_from([[], ["--fb", "0.5"], ["--p2p", "inf"],
                                                                  ["--virtual-stages", "2"], ["--json"]]))
def test_schedule(name, pp, mb, f, extra):
    check(["schedule", name, "--pp", pp, "--microbatches", mb, "--f", f, *extra])


@settings(FUZZ, max_examples=140)
@given(name=st.sampled_from(["all-to-all", "all-reduce", "all-gather", "ep-dispatch", "ep-combine", "x"]),
       option=st.sampled_from(["--gpus", "--bytes", "--nic-efficiency", "--nvlink-efficiency", "--topk", "--ep",
                               "--tokens", "--radix", "--planes", "--oversubscription", "--max-nodes",
                               "--experts", "--hidden", "--cluster-gpus"]),
       value=NUMBERS, fidelity=st.sampled_from(["analytic", "flow"]))
def test_collective(name, option, value, fidelity):
    base = ["--gpus", "16", "--ep", "16", "--tokens", "64"] if option not in ("--gpus", "--ep") else []
    check(["collective", name, "--fidelity", fidelity, *base, option, value, "--json"])


@settings(FUZZ, max_examples=100)
@given(option=st.sampled_from(["--radix", "--planes", "--gpus", "--oversubscription", "--nic-gbytes-per-s",
                               "--gpus-per-node", "--nics-per-node", "--q", "--groups"]),
       value=NUMBERS, kind=st.sampled_from(["ft2", "ft3", "mpft", "rail", "dragonfly", "slimfly", "bogus"]))
def test_topology(option, value, kind):
    base = ["--radix", "8"] if option != "--radix" else []
    check(["topology", "describe", kind, *base, option, value, "--json"])


@settings(FUZZ, max_examples=40)
@given(top=NUMBERS, field=st.sampled_from(["routing.zipf_alpha", "routing.name", "routing.redundant_experts",
                                           "parallelism.ep", "routing.file"]), value=NUMBERS)
def test_routing(top, field, value):
    check(["routing", "-p", "mixtral-8x7b-h100", "--top", top, "--set", "routing.name=zipf",
           "--set", f"{field}={value}", "--json"])


TRACE = Path(__file__).parent / "data" / "deepseek-train-excerpt.json"


@settings(FUZZ, max_examples=45)
@given(data=st.data())
def test_trace_files(work, data):
    """The real trace excerpt, cut short or with one event's field replaced; summarize and replay."""
    text = TRACE.read_text()
    if data.draw(st.booleans()):
        text = text[:data.draw(st.integers(0, len(text)))]
    else:
        trace = json.loads(text)
        events = trace["traceEvents"]
        event = events[data.draw(st.integers(0, len(events) - 1))]
        event[data.draw(st.sampled_from(["ts", "dur", "ph", "name", "args", "cat"]))] = data.draw(
            st.one_of(NUMBERS, st.none(), st.floats(allow_nan=True)))
        text = json.dumps(trace)
    file = work / "fuzz-trace.json"
    file.write_text(text)
    if data.draw(st.integers(0, 19)) == 0:  # replay prices a whole step (seconds): the slow path, a few of them
        check(["replay", str(file), "-p", "deepseek-v2-lite-h800", "--json"])
    else:
        check(["trace", "summarize", str(file), "--json"])


SPEC_KEYS = ["parallelism.pp", "parallelism.dp", "schedule", "training.tokens", "cluster.network.nic_gbytes_per_s",
             "run.seed", "bogus"]


@settings(FUZZ, max_examples=80)
@given(grid=st.dictionaries(st.sampled_from(SPEC_KEYS), st.lists(NUMBERS, min_size=1, max_size=2), max_size=2),
       name=st.one_of(st.just("fuzz"), NUMBERS), base=st.sampled_from(["tiny.yaml", "missing.yaml", "."]))
def test_sweep_specs(work, grid, name, base):
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "base": {"scenario": base}, "grid": grid}))
    out = work / "sweep.csv"
    for path in (out, work / "sweep.csv.partial.jsonl"):
        path.unlink(missing_ok=True)
    check(["sweep", str(spec), "-o", str(out), "--workers", "1", "--json"], (out,), ok_codes=(0, 1))  # 1: no valid point
    out.unlink(missing_ok=True)


@settings(FUZZ, max_examples=60)
@given(option=st.sampled_from(["--tokens", "--budget-usd", "--price-per-gpu-hour", "--max-gpus", "--deadline",
                               "--gpus", "--tp", "--pp", "--top", "--objective", "--gpu", "--workers"]),
       value=NUMBERS)
def test_plan(option, value):
    base = {"-m": "mixtral-8x7b", "-t": "1T", "--gpu": "h100", "--gpus": "8", "--tp": "1", "--pp": "1",
            "--micro-batch-sizes": "1", "--schedules": "1f1b", "--workers": "1"}
    base[option] = value
    check(["plan", *[x for kv in base.items() for x in kv], "--json"], ok_codes=(0, 1))


REPORT_COLUMNS = ["gpus", "step_time_s", "cost_usd", "status", "reason", "dp"]


@settings(FUZZ, max_examples=110)
@given(header=st.lists(st.sampled_from(REPORT_COLUMNS), min_size=1, max_size=4, unique=True),
       rows=st.lists(st.lists(NUMBERS, min_size=1, max_size=4), max_size=3),
       suffix=st.sampled_from([".csv", ".json"]))
def test_report_inputs(work, header, rows, suffix):
    source = work / f"results{suffix}"
    if suffix == ".csv":
        source.write_text("\n".join(",".join(r) for r in [header, *rows]))
    else:
        source.write_text(json.dumps([dict(zip(header, r)) for r in rows]))
    out = work / "report.html"
    out.unlink(missing_ok=True)
    check(["report", str(source), "-o", str(out)], (out,))
    out.unlink(missing_ok=True)
