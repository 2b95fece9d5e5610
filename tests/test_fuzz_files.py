"""Fuzzing the files users hand moesim, in-process, through the CLI: generated malformed profiler traces (wrong
types, non-finite and out-of-range numbers, deep nesting, duplicate keys, truncation, encodings, gzip) for
``trace summarize``, ``replay`` and ``calibrate from-trace``, and sweep specs, journals and results-CSV states for
a resumed ``moesim sweep``.

Every input must end in exit 0, 1 or 2 with at most two lines on stderr, each ``error:`` or ``warning:``; never
exit 70 (an internal error), a traceback, a numpy warning or a hang (each example has a deadline). A refused
sweep leaves the user's results file and journal byte for byte as they were. Seeds are fixed (``derandomize``).
The counts are printed at the end of the test run (tests/conftest.py, ``fuzz_inputs``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.calibration.profile import Profile
from tests.conftest import tiny_dense
from tests.test_fuzz_cli import FUZZ, run_cli

TRACE = Path(__file__).parent / "data" / "deepseek-train-excerpt.json"
BASE = json.loads(TRACE.read_text())
EVENTS = BASE["traceEvents"]
TEXT = json.dumps(BASE)
# One event of each kind the importer reads (kernels, memcpy, launches, annotations, CPU ops, flow events) and
# every 97th kernel; the fuzz changes one of them, or the file around them.
KINDS = [("kernel", "X"), ("gpu_memcpy", "X"), ("cuda_runtime", "X"), ("cuda_driver", "X"), ("user_annotation", "X"),
         ("cpu_op", "X"), ("ac2g", "s"), ("ac2g", "f")]
PICKS = sorted({i for cat, ph in KINDS for i in [next((i for i, e in enumerate(EVENTS)
                                                      if e.get("cat") == cat and e.get("ph") == ph), None)]
                if i is not None} | set([i for i, e in enumerate(EVENTS) if e.get("cat") == "kernel"][::97]))

# Values of every JSON type, as a careless or hostile producer writes them.
VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 7, 2**63, -(2**64), 1e300, -1e300, 1e-300, 0.5, float("nan"),
                     float("inf"), -float("inf"), "", "abc", "12", "1e400", "NaN", [], [1], [1, 2, 3, 4], ["a"],
                     [[[]]], {}, {"a": 1}, {"stream": "7"}, {"grid": 5}]),
    st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)
EVENT_FIELDS = ["ts", "dur", "ph", "cat", "name", "pid", "tid", "id", "args", "args.grid", "args.stream",
                "args.correlation", "args.device", "args.class"]
META_FIELDS = ["deviceProperties", "deviceProperties.0", "deviceProperties.0.numSms", "deviceProperties.0.name",
               "distributedInfo", "distributedInfo.rank", "distributedInfo.world_size", "traceName", "traceEvents",
               "schemaVersion"]
NUMBER_TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e300", "-1e300", "1e16", "8.64e10",
                 "9007199254740993", "1" + "0" * 30, "1" + "0" * 5000, "-0", "1e-400"]


FAMILIES = {"test_malformed_traces": "malformed traces", "test_malformed_sweep_specs": "sweep specs",
            "test_resumed_sweep_states": "sweep journal/results-CSV states"}


@pytest.fixture
def counter(request) -> list:
    """The number of inputs this test ran (hypothesis sets a fixture up once for all its examples), reported with
    the test; tests/conftest.py sums and prints them."""
    box = [FAMILIES[request.node.originalname], 0]
    request.node.user_properties.append(("fuzz_inputs", box))
    return box


def checked(args: list[str], ok_codes=(0, 1)) -> tuple[int, str]:
    """Run ``moesim ARGS`` in-process; assert the contract of this module; return (exit code, stderr)."""
    code, out, err = run_cli(args)
    assert code in (*ok_codes, 2), f"moesim {args}: exit {code}\n{out[-2000:]}\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) <= 2, f"moesim {args}: {len(lines)} lines on stderr:\n{err}"
    assert all(line.startswith(("error: ", "warning: ")) for line in lines), f"moesim {args}: stderr {err!r}"
    assert (code == 2) == any(line.startswith("error: ") for line in lines), f"moesim {args}: exit {code}, {err!r}"
    return code, err


def _set(node, dotted: str, value) -> None:
    """Set ``a.b.0.c`` in nested dicts/lists, creating dicts on the way (a list index past the end appends)."""
    parts = dotted.split(".")
    for part in parts[:-1]:
        key = int(part) if part.isdigit() else part
        if isinstance(node, list):
            node = node[key] if isinstance(key, int) and key < len(node) else {}
        else:
            child = node.get(key)
            if not isinstance(child, (dict, list)):
                child = node[key] = {}
            node = child
    last = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if isinstance(node, list):
        node[last if last < len(node) else len(node) - 1:] = [value] if node else []
    else:
        node[last] = value


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def malformed_trace(data) -> tuple[bytes, str]:
    """(bytes, suffix) of one malformed trace, drawn from the families in the module docstring."""
    family = data.draw(st.sampled_from(["event", "event", "event", "meta", "every", "number", "depth", "truncate",
                                        "encoding", "duplicate", "structure"]), label="family")
    if family == "every":  # one field of every event of a kind, changed alike: a doctored or foreign timeline
        trace = json.loads(json.dumps(BASE))
        cat = data.draw(st.sampled_from(["kernel", "cuda_runtime", "user_annotation", "ac2g", None]), label="cat")
        field = data.draw(st.sampled_from(["ts", "dur", "pid", "tid", "args.correlation", "args.stream", "id"]),
                          label="field")
        change = data.draw(st.sampled_from(["same", "negate", "tiny", "huge", "text"]), label="change")
        for event in trace["traceEvents"]:
            node, key = (event.get("args"), field[5:]) if field.startswith("args.") else (event, field)
            if (cat is None or event.get("cat") == cat) and isinstance(node, dict) and key in node:
                value = node[key]
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                node[key] = {"same": 5, "negate": -value if number else value, "tiny": value * 1e-6 if number
                             else value, "huge": value * 1e6 if number else value, "text": str(value)}[change]
        return json.dumps(trace).encode(), ".json"
    if family == "event":  # one event changed, spliced into the file's text (cheaper than copying the trace)
        original = EVENTS[data.draw(st.sampled_from(PICKS), label="event")]
        event = json.loads(json.dumps(original))
        _set(event, data.draw(st.sampled_from(EVENT_FIELDS), label="field"), data.draw(VALUES, label="value"))
        return TEXT.replace(json.dumps(original), json.dumps(event), 1).encode(), ".json"
    if family == "meta":
        trace = {**BASE, "deviceProperties": json.loads(json.dumps(BASE["deviceProperties"])),
                 "distributedInfo": dict(BASE["distributedInfo"])}
        _set(trace, data.draw(st.sampled_from(META_FIELDS), label="field"), data.draw(VALUES, label="value"))
        return json.dumps(trace).encode(), ".json"
    text = TEXT
    if family == "number":  # a kernel's time as a JSON token json.dumps would not write
        index = data.draw(st.sampled_from(PICKS), label="event")
        event = json.dumps(EVENTS[index])
        field = data.draw(st.sampled_from([f for f in ("dur", "ts") if f in EVENTS[index]]), label="field")
        token = data.draw(st.sampled_from(NUMBER_TOKENS), label="token")
        start = event.index(f'"{field}": ') + len(field) + 4
        end = min(p for p in (event.find(",", start), event.find("}", start)) if p > 0)
        return text.replace(event, event[:start] + token + event[end:], 1).encode(), ".json"
    if family == "depth":
        depth = data.draw(st.sampled_from([99, 100, 101, 1_000, 200_000]), label="depth")
        where = data.draw(st.sampled_from(["document", "args", "traceEvents"]), label="where")
        if where == "document":
            return _nested(depth).encode(), ".json"
        if where == "args":
            return text.replace('"args": {', f'"args": {{"deep": {_nested(depth)}, ', 1).encode(), ".json"
        return text.replace('"traceEvents": [', f'"traceEvents": [{_nested(depth)}, ', 1).encode(), ".json"
    if family == "truncate":
        return text[:data.draw(st.integers(0, len(text)), label="cut")].encode(), ".json"
    if family == "encoding":
        how = data.draw(st.sampled_from(["utf-16", "utf-32", "latin-1", "bad byte", "bom", "nul", "gzip",
                                         "gzip cut", "not gzip"]), label="encoding")
        named = text.replace('"name": "', '"name": "é ', 1)
        if how in ("utf-16", "utf-32", "latin-1"):
            return named.encode(how), ".json"
        if how == "bad byte":
            raw = text.encode()
            at = data.draw(st.integers(0, len(raw)), label="offset")
            return raw[:at] + data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80"])) + raw[at:], \
                ".json"
        if how == "bom":
            return b"\xef\xbb\xbf" + named.encode(), ".json"
        if how == "nul":
            return text.replace('"name": "', '"name": "\\u0000', 3).encode() + b"\x00", ".json"
        packed = gzip.compress(text.encode())
        if how == "gzip cut":
            packed = packed[:data.draw(st.integers(0, len(packed) - 1), label="cut")]
        return (text.encode() if how == "not gzip" else packed), ".json.gz"
    if family == "duplicate":
        index = data.draw(st.sampled_from(PICKS), label="event")
        event = json.dumps(EVENTS[index])
        key = data.draw(st.sampled_from(["dur", "ts", "cat", "args"]), label="key")
        return text.replace(event, event[:-1] + f', "{key}": 1}}', 1).encode(), ".json"
    shape = data.draw(st.sampled_from(["3", "1e400", '"trace"', "null", "[]", "{}", '{"traceEvents": 3}',
                                       '{"traceEvents": [1, 2]}', '{"traceEvents": {}}', "", " ", "[[]]"]),
                      label="document")
    return shape.encode(), ".json"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz-files")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(json.loads(tiny_dense().model_dump_json())))
    return folder


@settings(FUZZ, max_examples=520)
@given(data=st.data())
def test_malformed_traces(work, counter, data):
    """520 generated traces through summarize, replay and calibrate from-trace."""
    raw, suffix = malformed_trace(data)
    path = work / f"trace{suffix}"
    path.write_bytes(raw)
    profile = work / "profile.json"
    profile.unlink(missing_ok=True)
    # replay and from-trace price a whole layer (0.1-0.2 s each): one input in twelve each
    command = data.draw(st.sampled_from(["summarize"] * 10 + ["replay", "from-trace"]), label="command")
    if command == "summarize":
        checked(["trace", "summarize", str(path), "--json"])
    elif command == "replay":
        checked(["replay", str(path), "-p", "deepseek-v2-lite-h800", "--json"])
    else:
        code, _ = checked(["calibrate", "from-trace", str(path), "-o", str(profile), "--json"])
        assert profile.exists() == (code == 0), "from-trace: a profile exactly when it succeeds"
        if code == 0:  # what it wrote reads back through the one reader: finite numbers, a valid profile
            Profile.load(profile)
    counter[1] += 1


# --- sweeps: specs, and the files a resumed sweep reads -------------------------------------------------------
SPEC = {"name": "fuzz", "base": {"scenario": "tiny.yaml"}, "grid": {"run.seed": [1, 2]}}
SPEC_FIELDS = ["name", "base", "base.scenario", "base.preset", "grid", "grid.run.seed", "grid.parallelism.pp",
               "set", "set.training.tokens", "points", "profile", "extra"]


def malformed_spec(data) -> bytes:
    family = data.draw(st.sampled_from(["field", "field", "duplicate", "number", "depth", "alias", "encoding",
                                        "truncate", "structure"]), label="family")
    spec = json.loads(json.dumps(SPEC))
    if family == "field":
        field = data.draw(st.sampled_from(SPEC_FIELDS), label="field")
        value = data.draw(VALUES, label="value")
        if field.startswith("grid.") or field.startswith("set."):
            spec.setdefault(field.split(".")[0], {})
            if not isinstance(spec[field.split(".")[0]], dict):
                spec[field.split(".")[0]] = {}
            spec[field.split(".")[0]][field.split(".", 1)[1]] = value
        else:
            _set(spec, field, value)
        return yaml.safe_dump(spec, allow_unicode=True).encode()
    text = yaml.safe_dump(spec)
    if family == "duplicate":
        key = data.draw(st.sampled_from(["name: again\n", "grid: {run.seed: [3]}\n", "base: {preset: nope}\n"]))
        return (text + key).encode()
    if family == "number":
        token = data.draw(st.sampled_from([".inf", "-.inf", ".nan", ".NaN", "1e400", "1" + "0" * 30,
                                           "0x7fffffffffffffffff"]))
        where = data.draw(st.sampled_from(["seed", "tokens", "name"]))
        if where == "seed":
            return text.replace("- 2", f"- {token}").encode()
        if where == "tokens":
            return (text + f"set: {{training.tokens: {token}}}\n").encode()
        return text.replace("name: fuzz", f"name: {token}").encode()
    if family == "depth":
        depth = data.draw(st.sampled_from([99, 101, 1_000, 200_000]))
        return (text + f"points: {_nested(depth)}\n").encode()
    if family == "alias":
        lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        levels = data.draw(st.integers(1, 9))
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
        if data.draw(st.booleans()):
            lines.append("loop: &me [*me]")
        return (text + "\n".join(lines) + "\n").encode()
    if family == "encoding":
        how = data.draw(st.sampled_from(["utf-16", "latin-1", "bad byte", "bom", "control"]))
        named = text.replace("name: fuzz", "name: fuzz é")
        if how in ("utf-16", "latin-1"):
            return named.encode(how)
        if how == "bom":
            return b"\xef\xbb\xbf" + named.encode()
        if how == "control":
            return text.replace("fuzz", "fu\x01zz").encode()
        raw = text.encode()
        at = data.draw(st.integers(0, len(raw)))
        return raw[:at] + b"\xff" + raw[at:]
    if family == "truncate":
        return text[:data.draw(st.integers(0, len(text)))].encode()
    return data.draw(st.sampled_from([b"3", b"null", b"[]", b"- 1\n- 2\n", b"'text'", b"", b"{",
                                      b"!!python/object:os.system {}", b"base: !!binary aGk=\n"]))


@settings(FUZZ, max_examples=90)
@given(data=st.data())
def test_malformed_sweep_specs(work, counter, data):
    spec = work / "spec.yaml"
    spec.write_bytes(malformed_spec(data))
    out = work / "specs.csv"
    for path in (out, work / "specs.csv.partial.jsonl"):
        path.unlink(missing_ok=True)
    checked(["sweep", str(spec), "-o", str(out), "--workers", "1", "--json"])
    counter[1] += 1


@pytest.fixture(scope="module")
def finished(work) -> tuple[bytes, list[dict]]:
    """The results CSV of the valid spec, run once, and its rows (as a journal would hold them)."""
    spec = work / "resume.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = work / "finished.csv"
    assert run_cli(["sweep", str(spec), "-o", str(out), "--workers", "1", "--json"])[0] == 0
    from moesim.simulator.sweep.store import read_rows
    return out.read_bytes(), read_rows(out)


def results_state(data, csv_bytes: bytes) -> bytes | None:
    state = data.draw(st.sampled_from(["absent", "valid", "header", "foreign header", "empty", "bad byte",
                                       "truncate", "foreign", "bom", "ragged", "binary", "half"]), label="csv")
    text = csv_bytes.decode()
    header = text.splitlines()[0]
    if state == "absent":
        return None
    if state == "valid":
        return csv_bytes
    if state == "header":
        return (header + "\n").encode()
    if state == "foreign header":
        return b"name,value\n"
    if state == "empty":
        return b""
    if state == "bad byte":
        at = data.draw(st.integers(0, len(csv_bytes)), label="offset")
        return csv_bytes[:at] + b"\xff" + csv_bytes[at:]
    if state == "truncate":
        return csv_bytes[:data.draw(st.integers(0, len(csv_bytes)), label="cut")]
    if state == "foreign":
        return b"key,step_time_s\nsomething else,1.0\n"
    if state == "bom":
        return b"\xef\xbb\xbf" + csv_bytes
    if state == "ragged":
        return (text + "x,y,z,1,2,3," * 40 + "\n" + "only\n").encode()
    if state == "binary":
        return bytes(data.draw(st.binary(max_size=64), label="bytes"))
    return (text.splitlines()[0] + "\n" + text.splitlines()[1] + "\n").encode()  # one of two rows


def journal_state(data, rows: list[dict]) -> bytes | None:
    state = data.draw(st.sampled_from(["absent", "valid", "wrong type", "non-finite", "cut", "bad byte",
                                       "duplicate", "deep", "foreign", "blank", "run together"]), label="journal")
    lines = [json.dumps(row) for row in rows[:data.draw(st.integers(0, len(rows)), label="rows")]]
    if state == "absent":
        return None
    if state == "wrong type":
        lines.insert(0, data.draw(st.sampled_from(["3", "[]", '"row"', "null", "{}", '{"key": 3}', '{"key": null}',
                                                   '{"key": ["a"]}', "true"])))
    elif state == "non-finite":
        lines.append(json.dumps(rows[0]).replace('"gpus": 4', '"gpus": ' + data.draw(
            st.sampled_from(["NaN", "Infinity", "1e400", "1" + "0" * 30]))))
    elif state == "cut" and lines:
        lines[-1] = lines[-1][:data.draw(st.integers(0, len(lines[-1]) - 1))]
    elif state == "bad byte":
        return "\n".join(lines).encode() + b"\n\xfe\xff\n"
    elif state == "duplicate":
        lines.append(json.dumps(rows[-1])[:-1] + ', "key": "again"}')
    elif state == "deep":
        lines.append(_nested(data.draw(st.sampled_from([101, 200_000]))))
    elif state == "foreign":
        lines.append(json.dumps({**rows[0], "key": "not-this-spec"}))
    elif state == "blank":
        lines = ["", *lines, "   ", ""]
    elif state == "run together" and len(lines) > 1:
        lines = [lines[0][:-3] + lines[1], *lines[2:]]
    return ("\n".join(lines) + "\n").encode()


@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_resumed_sweep_states(work, finished, counter, data):
    """A sweep resumed on whatever the results file and its journal hold; a refusal leaves both untouched."""
    csv_bytes, rows = finished
    spec = work / "resume.yaml"
    out = work / "resume.csv"
    journal = work / "resume.csv.partial.jsonl"
    before = {}
    for path, content in ((out, results_state(data, csv_bytes)), (journal, journal_state(data, rows))):
        path.unlink(missing_ok=True)
        if content is not None:
            path.write_bytes(content)
        before[path] = content
    code, _ = checked(["sweep", str(spec), "-o", str(out), "--workers", "1", "--json"])
    if code == 2:
        for path, content in before.items():
            assert (path.read_bytes() if path.exists() else None) == content, f"a refused sweep changed {path}"
    counter[1] += 1
