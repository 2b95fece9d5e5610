"""Hostile and careless files (issue 25): each refused in one line naming the file, the place and the fix (exit 2,
no traceback), or read with one warning where only an optional field is wrong. Before, each crashed (exit 70,
RecursionError, ZeroDivisionError) or was silently accepted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_dense
from tests.test_fuzz_cli import run_cli
from tests.test_robustness import refused
from moesim.workloads.documents import MAX_DEPTH, parse_document
from moesim.workloads.files import journal_mark
from moesim.workloads.errors import ScenarioError

TRACE = Path(__file__).parent / "data" / "deepseek-train-excerpt.json"
DEEP = "[" * 200_000 + "]" * 200_000

# A journal moesim created starts with its mark line (workloads/files.py); the cases below are moesim's own.
MARK = journal_mark("sweep").encode()


@pytest.fixture
def tiny(tmp_path) -> dict:
    return json.loads(tiny_dense().model_dump_json())


def trace_with(tmp_path: Path, change, name: str = "trace.json") -> Path:
    """The excerpt trace with ``change(trace)`` applied, written to ``tmp_path / name``."""
    trace = json.loads(TRACE.read_text())
    change(trace)
    path = tmp_path / name
    path.write_text(json.dumps(trace))
    return path


def first_kernel(trace: dict) -> int:
    return next(i for i, e in enumerate(trace["traceEvents"]) if e.get("cat") == "kernel")


# --- the reader: depth, duplicates, numbers, encodings -----------------------------------------------------------
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_200000_levels_of_nesting_are_refused_without_recursion_error(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    path.write_text(DEEP)
    refused(["simulate", str(path)], str(path), f"nested more than {MAX_DEPTH} levels deep", within_s=5)
    refused(["trace", "summarize", str(path)] if suffix == ".json" else ["sweep", str(path), "-o",
                                                                          str(tmp_path / "o.csv")],
            f"nested more than {MAX_DEPTH} levels deep", within_s=5)


def test_a_duplicate_yaml_key_is_refused_with_its_name_and_both_lines(tmp_path, tiny):
    text = yaml.safe_dump(tiny).replace("  pp: 4\n", "  pp: 2\n  pp: 4\n")
    assert text.count("pp:") == 2
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    line = text.splitlines().index("  pp: 4") + 1
    refused(["simulate", str(path)], f"duplicate key 'pp' at line {line} (first at line {line - 1})")


def test_a_duplicate_json_key_is_refused_with_its_name(tmp_path, tiny):
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(tiny)[:-1] + ', "schedule": "gpipe"}')
    refused(["simulate", str(path)], "duplicate key 'schedule'")


def test_yaml_merge_keys_are_not_duplicates():
    assert parse_document("a: &a {x: 1, y: 2}\nb: {<<: *a, x: 3}\n", "f", "yaml")["b"] == {"x": 3, "y": 2}


@pytest.mark.parametrize("token, shown", [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf"),
                                          ("1e400", "inf")])
def test_a_non_finite_number_is_refused_with_the_fields_path(tmp_path, tiny, token, shown):
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(tiny).replace('"hidden": 1024', f'"hidden": {token}'))
    refused(["simulate", str(path)], f"model.hidden is {shown}, not a finite number")


def test_yaml_infinity_and_huge_integers_are_refused_with_the_path():
    with pytest.raises(ScenarioError, match=r"^f: runs\[1\]\.gpus is inf, not a finite number"):
        parse_document("runs: [{gpus: 1}, {gpus: .inf}]", "f", "yaml")
    with pytest.raises(ScenarioError, match=r"^f: a\.b is an integer of 31 digits, out of range"):
        parse_document('{"a": {"b": 1' + "0" * 30 + "}}", "f", "json")
    with pytest.raises(ScenarioError, match="more than 4,300 digits"):
        parse_document("1" * 5000, "f", "json")


def test_an_encoding_error_names_the_file_and_the_byte_offset(tmp_path, tiny):
    raw = yaml.safe_dump(tiny).encode()
    path = tmp_path / "latin.yaml"
    path.write_bytes(raw[:100] + b"\xe9" + raw[100:])
    refused(["simulate", str(path)], str(path), "not UTF-8 text: byte 0xe9 at offset 100")
    trace = tmp_path / "utf16.json"
    trace.write_bytes(TRACE.read_text().encode("utf-16"))
    refused(["trace", "summarize", str(trace)], "byte 0xff at offset 0")


def test_a_byte_order_mark_is_read_as_utf8(tmp_path, tiny):
    plain, bom = tmp_path / "plain.yaml", tmp_path / "bom.yaml"
    plain.write_text(yaml.safe_dump(tiny))
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    results = [run_cli(["simulate", str(path), "--json"]) for path in (plain, bom)]
    assert [code for code, _, _ in results] == [0, 0]
    assert json.loads(results[1][1])["step_time_s"] == json.loads(results[0][1])["step_time_s"]


def test_yaml_aliases_that_explode_or_loop_are_refused_quickly():
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9))
    start = time.perf_counter()
    with pytest.raises(ScenarioError, match="aliases expand it to more than"):
        parse_document(bomb, "f", "yaml")
    with pytest.raises(ScenarioError, match=f"loop.*nested more than {MAX_DEPTH} levels"):
        parse_document("loop: &me [*me]", "f", "yaml")
    assert time.perf_counter() - start < 2
    assert parse_document("a: &a [1, 2]\nb: *a\n", "f", "yaml") == {"a": [1, 2], "b": [1, 2]}


@pytest.mark.parametrize("text, kind", [("3", "a number (3)"), ("[1, 2]", "a list"), ('"pp"', "text ('pp')"),
                                        ("null", "empty")])
def test_a_json_scenario_that_is_not_a_mapping_is_one_line(tmp_path, text, kind):
    path = tmp_path / "number.json"
    path.write_text(text)
    refused(["simulate", str(path)], "a scenario must be a mapping of sections", f"not {kind}")


def test_a_profile_with_a_non_finite_peak_is_refused(tmp_path):
    """pydantic takes NaN for a float; the reader does not (a NaN peak ended in an internal LinAlgError)."""
    profile = json.loads((Path(__file__).parents[1] / "calibration" / "profiles" / "h100.json").read_text())
    profile["peaks"]["bf16_tflops"] = float("nan")
    path = tmp_path / "nan-profile.json"
    path.write_text(json.dumps(profile))
    refused(["simulate", "-p", "mixtral-8x7b-h100", "--profile", str(path)],
            f"--profile {path}: peaks.bf16_tflops is nan, not a finite number")


# --- traces ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dur, words", [(float("inf"), ["].dur is inf, not a finite number"]),
                                        (1e300, ["].dur is 1e+300 µs, more than a day"]),
                                        (-5, ["].dur is negative (-5 µs)"]),
                                        ("12", ["].dur must be a finite number of microseconds, got '12'"])])
def test_a_bad_kernel_duration_is_refused_by_every_trace_command(tmp_path, dur, words):
    def change(trace):
        trace["traceEvents"][first_kernel(trace)]["dur"] = dur
    path = trace_with(tmp_path, change)
    profile = tmp_path / "profile.json"
    index = first_kernel(json.loads(TRACE.read_text()))
    for args in (["trace", "summarize", str(path)], ["replay", str(path), "-p", "deepseek-v2-lite-h800"],
                 ["calibrate", "from-trace", str(path), "-o", str(profile)]):
        refused(args, f"traceEvents[{index}]", *words)
    assert not profile.exists()


def test_a_timeline_no_gpu_could_run_is_refused_by_from_trace(tmp_path):
    """Every event at one instant: launches no longer fall in their phases, and the attributed kernel times are
    faster than the GPU's peak. The profile is refused in one line, not an internal error."""
    def same_instant(trace):
        for event in trace["traceEvents"]:
            if "ts" in event:
                event["ts"] = 5
    path = trace_with(tmp_path, same_instant)
    refused(["calibrate", "from-trace", str(path), "-o", str(tmp_path / "p.json")], "impossible profile",
            "TFLOPS is faster than the", "--traced-as")
    assert not (tmp_path / "p.json").exists()


def _drop(path: str):
    """A change that deletes ``a.b.c`` from the trace."""
    def change(trace):
        *parents, last = path.split(".")
        node = trace
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[last]
    return change


def _grid_number(trace):
    for event in trace["traceEvents"]:
        if event.get("cat") == "kernel":
            event["args"]["grid"] = 7


def _drop_grids(trace):
    for event in trace["traceEvents"]:
        if event.get("cat") == "kernel":
            event["args"].pop("grid", None)


WRONG_OPTIONAL = {  # an optional field of the wrong type, the same trace without it, words of the warning
    "args.grid a number": (_grid_number, _drop_grids, ["args.grid = 7 (not a list", "and 480 more"]),
    "deviceProperties an object": (lambda t: t.update(deviceProperties={"name": "H800", "numSms": 132}),
                                   _drop("deviceProperties"),
                                   ["deviceProperties = {'name'", "(not a list of objects)"]),
    "numSms text": (lambda t: t["deviceProperties"][0].update(numSms="132"), _drop("deviceProperties.0.numSms"),
                    ["deviceProperties[0].numSms = '132' (not an integer"]),
    "rank text": (lambda t: t["distributedInfo"].update(rank="0"), _drop("distributedInfo.rank"),
                  ["distributedInfo.rank = '0' (not an integer 0-63)"]),
}


@pytest.mark.parametrize("case", list(WRONG_OPTIONAL))
def test_an_optional_trace_field_of_the_wrong_type_is_ignored_with_one_warning(tmp_path, case):
    wrong, without, words = WRONG_OPTIONAL[case]
    bad, clean = trace_with(tmp_path, wrong, "bad.json"), trace_with(tmp_path, without, "clean.json")
    code, out, err = run_cli(["trace", "summarize", str(bad), "--json"])
    lines = err.splitlines()
    assert code == 0 and len(lines) == 1 and lines[0].startswith(f"warning: {bad}: ignored optional fields"), err
    assert all(word in lines[0] for word in words), lines[0]
    summary, expected = json.loads(out), json.loads(run_cli(["trace", "summarize", str(clean), "--json"])[1])
    summary["trace"]["path"] = expected["trace"]["path"]
    assert summary == expected  # ignored means: read as if the field were absent
    for args in (["replay", str(bad), "-p", "deepseek-v2-lite-h800", "--json"],
                 ["calibrate", "from-trace", str(bad), "-o", str(tmp_path / "p.json"), "--force", "--json"]):
        code, _, err = run_cli(args)
        assert code == 0 and len(err.splitlines()) == 1 and err.startswith("warning: "), (args, err)


# --- silent acceptance --------------------------------------------------------------------------------------------
def test_a_collective_over_more_gpus_than_the_cluster_is_refused():
    refused(["collective", "all-to-all", "--gpus", "64", "--cluster-gpus", "16"],
            "--gpus 64 is more GPUs than --cluster-gpus 16")
    refused(["collective", "ep-dispatch", "--ep", "64", "--cluster-gpus", "8", "--tokens", "64"],
            "--ep 64 is more GPUs than --cluster-gpus 8")
    assert run_cli(["collective", "all-to-all", "--gpus", "16", "--cluster-gpus", "64", "--json"])[0] == 0


@pytest.mark.parametrize("name, text, words", [
    ("m.csv", "0,1e400\n5,0\n", ["row 0 column 1 is '1e400'"]),
    ("m.csv", "0,inf\n5,0\n", ["row 0 column 1 is 'inf'"]),
    ("m.csv", "0,1\nnan,0\n", ["row 1 column 0 is 'nan'"]),
    ("m.csv", "0,1\n-2,0\n", ["row 1 column 0 is '-2'"]),
    ("m.json", "[[0, 1], [NaN, 0]]", ["[1][0] is nan, not a finite number"]),
    ("m.json", "[[0, 1], [2]]", ["2 rows of [1, 2] values but --gpus is 2"]),
    ("m.json", '{"rows": 1}', ["give a list of rows"]),
])
def test_a_traffic_matrix_with_a_bad_entry_is_refused_by_row_and_column(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    refused(["collective", "all-to-all", "--gpus", "2", "--matrix", str(path)], f"--matrix {path}", *words)


def test_a_valid_traffic_matrix_matches_the_uniform_all_to_all(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([[0 if i == j else 1e6 for j in range(4)] for i in range(4)]))
    by_matrix = json.loads(run_cli(["collective", "all-to-all", "--gpus", "4", "--matrix", str(path), "--json"])[1])
    # --bytes is all a rank sends, its own share included: 4 × 1e6
    by_bytes = json.loads(run_cli(["collective", "all-to-all", "--gpus", "4", "--bytes", "4e6", "--json"])[1])
    assert by_matrix["time_us"] == pytest.approx(by_bytes["time_us"], rel=1e-9)


# --- a resumed sweep reads what an earlier run (or someone else) left -----------------------------------------------
@pytest.fixture
def sweep(tmp_path, tiny) -> tuple[Path, Path]:
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "resume", "base": {"scenario": "tiny.yaml"},
                                    "grid": {"run.seed": [1, 2]}}))
    return spec, tmp_path / "out.csv"


def _unchanged_after_refusal(args, path: Path, content: bytes, *words):
    path.write_bytes(content)
    refused(args, *words)
    assert path.read_bytes() == content


def test_resuming_on_a_non_utf8_results_file_or_journal_is_refused_untouched(sweep):
    spec, out = sweep
    args = ["sweep", str(spec), "-o", str(out), "--workers", "1"]
    _unchanged_after_refusal(args, out, b"key,gpus\nab\xff,4\n", f"-o {out}", "byte 0xff at offset 11",
                             "choose another -o or pass --force")
    out.unlink()
    journal = out.with_name("out.csv.partial.jsonl")
    _unchanged_after_refusal(args, journal, MARK + b'{"key": "a"}\n\xfe\n', f"byte 0xfe at offset {len(MARK) + 13}",
                             "delete the journal")


@pytest.mark.parametrize("line", ["3", "[]", '"row"', "null", '{"key": 3}', '{"gpus": 4}'])
def test_a_journal_line_of_the_wrong_type_is_refused_with_its_number(sweep, line):
    spec, out = sweep
    journal = out.with_name("out.csv.partial.jsonl")
    _unchanged_after_refusal(["sweep", str(spec), "-o", str(out), "--workers", "1"], journal,
                             MARK + f'{line}\n'.encode(), f"{journal} line 2: not a sweep row")


def test_a_journal_line_a_kill_cut_short_is_run_again(sweep):
    spec, out = sweep
    out.with_name("out.csv.partial.jsonl").write_bytes(MARK + b'{"key": "run.seed=1", "sta')
    code, out_text, err = run_cli(["sweep", str(spec), "-o", str(out), "--workers", "1", "--json"])
    assert code == 0, err
    assert len(out.read_text().splitlines()) == 3  # header and both points


def test_a_header_only_csv_is_refused_unless_it_is_a_sweeps(sweep):
    spec, out = sweep
    args = ["sweep", str(spec), "-o", str(out), "--workers", "1"]
    _unchanged_after_refusal(args, out, b"name,value\n", "is not a moesim sweep results file (no 'key' column)")
    out.write_text("key,status\n")  # a sweep's own header with no rows yet: nothing to keep, both points run
    assert run_cli(args)[0] == 0 and len(out.read_text().splitlines()) == 3
