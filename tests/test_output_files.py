"""Files moesim writes cannot be hijacked, and every output path follows one rule checked before the work
(issue 25): a symbolic link planted at any output, journal, lock or temporary name is never followed (its target
stays untouched and the run refuses in one line); a folder, device, existing file (without --force), missing or
unwritable folder is refused before anything runs; a full device is one line, not a traceback."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_dense
from tests.test_fuzz_cli import run_cli
from tests.test_robustness import refused
from moesim.workloads import files
from moesim.workloads.errors import ScenarioError

REPO = Path(__file__).parents[1]
VICTIM_TEXT = "the neighbour's file\n"


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(json.loads(tiny_dense().model_dump_json())))
    return path


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file of someone else's that a planted link points to; it must never change."""
    path = tmp_path / "victim" / "precious.txt"
    path.parent.mkdir()
    path.write_text(VICTIM_TEXT)
    return path


def plant(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def untouched(victim: Path, link: Path) -> None:
    assert victim.read_text() == VICTIM_TEXT
    assert link.is_symlink() and os.readlink(link) == str(victim)
    leftovers = [p.name for p in link.parent.iterdir()
                 if p.name.endswith((".tmp", ".new", ".probe")) and not p.is_symlink()]
    assert not leftovers, leftovers


def sweep_spec(folder: Path, tiny: Path, points: list[dict] | None = None) -> Path:
    spec = folder / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "base": {"scenario": str(tiny)},
                                    "points": points or [{"run.seed": 0}, {"run.seed": 1}]}))
    return spec


# --- Build 1: links at every name moesim writes -------------------------------------------------------------
def test_a_link_at_any_output_path_is_refused_and_its_target_untouched(tmp_path, tiny, victim):
    """Every command's output option, a link planted at it (with and without --force)."""
    results = tmp_path / "rows.csv"
    results.write_text("gpus,step_time_s\n4,1.0\n")
    commands = {
        "t.json": ["simulate", str(tiny), "--trace"],
        "r.html": ["simulate", str(tiny), "--report"],
        "g.html": ["schedule", "1f1b", "--html"],
        "d.html": ["topology", "describe", "ft2", "--radix", "8", "--draw"],
        "p.json": ["calibrate", "project", "h800", "--gpu", "h100", "-o"],
        "f.json": ["calibrate", "fit", "h800", "-o"],
        "c.html": ["compare", "mixtral-8x7b-h100", "mixtral-8x7b-h100", "--report"],
        "ids.npy": ["routing", "-p", "deepseek-v2-lite-h800", "--save"],
        "rep.html": ["report", str(results), "-o"],
        "plan.html": ["plan", "-m", "deepseek-v2-lite", "-t", "1T", "--gpus", "16", "--report"],
        "replay.json": ["replay", str(REPO / "tests/data/deepseek-train-excerpt.json"), "--trace"],
    }
    for name, args in commands.items():
        link = plant(tmp_path / name, victim)
        for force in ([], ["--force"]):
            refused([*args, str(link), *force], str(link), "symbolic link")
            untouched(victim, link)


def test_a_sweep_refuses_links_at_its_results_journal_and_lock(tmp_path, tiny, victim):
    spec = sweep_spec(tmp_path, tiny)
    out = tmp_path / "out.csv"
    for planted in (out, tmp_path / "out.csv.partial.jsonl", tmp_path / ".out.csv.lock"):
        link = plant(planted, victim)
        for force in ([], ["--force"]):
            refused(["sweep", str(spec), "-o", str(out), "-w", "1", "-q", *force], "symbolic link")
            untouched(victim, link)
        link.unlink()
    dangling = plant(tmp_path / "out.csv.partial.jsonl", tmp_path / "victim" / "new-file")
    refused(["sweep", str(spec), "-o", str(out), "-w", "1", "-q"], "symbolic link")
    assert dangling.is_symlink() and not (tmp_path / "victim" / "new-file").exists()


def test_temporary_names_are_unpredictable_and_never_followed(tmp_path, victim, monkeypatch):
    """Even a link at the very name a temporary file gets (guessed) is not followed: another name is drawn."""
    import itertools
    drawn = itertools.cycle(["0123456789abcdef", "fedcba9876543210"])
    monkeypatch.setattr(files.secrets, "token_hex", lambda n: next(drawn))
    target = tmp_path / "out.json"
    links = [plant(tmp_path / f".out.json.0123456789abcdef{suffix}", victim) for suffix in (".probe", ".tmp")]
    files.write_atomic(target, "mine")
    assert target.read_text() == "mine"
    for link in links:
        untouched(victim, link)


def test_a_sweep_journal_moesim_did_not_create_is_refused(tmp_path, tiny):
    spec = sweep_spec(tmp_path, tiny)
    out = tmp_path / "out.csv"
    journal = tmp_path / "out.csv.partial.jsonl"
    journal.write_text('{"key": "a"}\n')  # no mark: someone else's file
    refused(["sweep", str(spec), "-o", str(out), "-w", "1", "-q"], str(journal), "not created by moesim")
    assert journal.read_text() == '{"key": "a"}\n'
    journal.unlink()
    store_journal = files.open_journal(journal, "sweep")  # a real one, then a hard link to it elsewhere
    store_journal.close()
    os.link(journal, tmp_path / "other-name")
    with pytest.raises(ScenarioError, match="has other names"):
        files.open_journal(journal, "sweep")


def test_a_journal_moesim_created_is_appended_to_and_resumed(tmp_path, tiny):
    """The mark line is written once; rows follow it; a line a kill cut short is skipped (its point reruns)."""
    journal = tmp_path / "j.jsonl"
    for row in ({"key": "a", "x": 1}, {"key": "b", "x": 2}):
        with files.open_journal(journal, "sweep") as f:
            f.write(json.dumps(row) + "\n")
    with open(journal, "a") as f:
        f.write('{"key": "c", "x"')
    from moesim.simulator.sweep.store import read_journal
    assert journal.read_text().startswith(files.journal_mark("sweep"))
    assert read_journal(journal) == [{"key": "a", "x": 1}, {"key": "b", "x": 2}]


# --- Build 3: one rule for every output path, before the work ---------------------------------------------
def test_one_rule_for_every_output_path(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "mine.json").write_text("mine")
    cases = {tmp_path / "folder": "is a directory",
             tmp_path / "mine.json": "the file exists; pass --force",
             Path("/dev/full"): "is not a regular file",
             tmp_path / "no" / "x.json": "does not exist; create it first",
             Path("/proc/moesim-out.json"): "cannot create a file in '/proc'"}
    for path, words in cases.items():
        with pytest.raises(ScenarioError, match=words.replace("(", r"\(")):
            files.check_target(path, force=False, flag="--trace")
    files.check_target(tmp_path / "mine.json", force=True)
    for path in (tmp_path / "folder", Path("/dev/full"), Path("/proc/moesim-out.json")):
        with pytest.raises(ScenarioError):
            files.check_target(path, force=True)
    assert (tmp_path / "mine.json").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "mine.json"]


def test_targets_are_refused_before_the_work_starts(tmp_path, tiny, monkeypatch):
    """simulate, replay and sweep check --trace/--report/-o before simulating anything."""
    import moesim.simulator.replay
    import moesim.simulator.simulate
    import moesim.simulator.sweep.runner

    def no_work(*_, **__):
        raise AssertionError("the work started before the output was checked")
    monkeypatch.setattr(moesim.simulator.simulate, "simulate", no_work)
    monkeypatch.setattr(moesim.simulator.replay, "replay", no_work)
    monkeypatch.setattr(moesim.simulator.sweep.runner, "expand", no_work)
    (tmp_path / "d").mkdir()
    refused(["simulate", str(tiny), "--report", str(tmp_path / "d")], "is a directory")
    (tmp_path / "d" / "rank_0.json").write_text("{}")  # a folder is a per-rank target; its old files are kept
    refused(["simulate", str(tiny), "--trace", str(tmp_path / "d")], "holds 1 rank trace(s)", "pass --force")
    refused(["simulate", str(tiny), "--report", "/dev/full", "--force"], "not a regular file")
    refused(["replay", str(REPO / "tests/data/deepseek-train-excerpt.json"), "--trace", "/proc/t.json"],
            "cannot create a file in '/proc'")
    refused(["sweep", str(sweep_spec(tmp_path, tiny)), "-o", str(tmp_path / "d" / ".." / "d"), "-q"],
            "must end in")
    (tmp_path / "r.csv").mkdir()
    refused(["sweep", str(sweep_spec(tmp_path, tiny)), "-o", str(tmp_path / "r.csv"), "-q"], "is a directory")


def test_resuming_refuses_what_moesim_did_not_write(tmp_path, tiny):
    spec = sweep_spec(tmp_path, tiny)
    header_only = tmp_path / "header.csv"
    header_only.write_text("gpus,step_time_s\n")
    refused(["sweep", str(spec), "-o", str(header_only), "-q"], "not a moesim sweep results file")
    assert header_only.read_text() == "gpus,step_time_s\n"
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(b"key,status\n\xe9t\xe9,ok\n")
    refused(["sweep", str(spec), "-o", str(latin1), "-q"], "not UTF-8", "offset 11", "pass --force")
    assert run_cli(["sweep", str(spec), "-o", str(latin1), "-q", "--force"])[0] == 0  # --force replaces it


# --- full devices ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux /dev/full")
@pytest.mark.parametrize("args", [["presets", "list"], ["simulate", "-p", "mixtral-8x7b-h100", "--json"],
                                  ["schedule", "1f1b"]])
def test_stdout_on_a_full_device_is_one_line(args):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "moesim.simulator.cli", *args], stdout=full, stderr=subprocess.PIPE,
                              text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == ["error: cannot write (standard output): No space left on device"]


def test_a_file_on_a_full_disk_keeps_the_old_one(tmp_path, monkeypatch):
    """ENOSPC while the bytes go to disk: one line naming the option, the old file intact, no temporary left."""
    target = tmp_path / "profile.json"
    target.write_text("old")

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(ScenarioError, match=r"^-o .*profile.json: cannot write it: No space left on device$"):
        files.write_atomic(target, "new" * 1000, force=True, flag="-o")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]


# --- Build 4: a sweep with no valid point ------------------------------------------------------------------
def test_a_sweep_with_no_valid_point_exits_1_with_the_counts(tmp_path, tiny):
    spec = sweep_spec(tmp_path, tiny, points=[{"parallelism.pp": 3}, {"parallelism.dp": 3}])
    out = tmp_path / "bad.csv"
    for extra in ([], ["--json"]):
        code, _, err = run_cli(["sweep", str(spec), "-o", str(out), "-w", "1", "-q", "--force", *extra])
        assert code == 1
        assert err.splitlines() == [f"error: no valid point: 0 of 2 ok (2 invalid); each row's reason is in {out}"]
    assert out.exists()  # the rows and their reasons are kept


def test_a_file_that_appears_during_the_write_is_not_overwritten_without_force(tmp_path):
    """The check ran before the work; a file created meanwhile at the target is still not clobbered."""
    target = tmp_path / "out.json"
    with pytest.raises(ScenarioError, match="the file exists; pass --force"):
        with files.replacing(target, "-o", clobber=False) as out:
            out.write(b"mine")
            target.write_text("theirs")
    assert target.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_sweep_on_a_full_disk_is_one_line(tmp_path, tiny, monkeypatch):
    """ENOSPC mid-sweep (journal and results file alike): one line, no traceback, no temporary file left."""
    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "out.csv"
    refused(["sweep", str(sweep_spec(tmp_path, tiny)), "-o", str(out), "-w", "1", "-q"], f"-o {out}",
            "No space left on device")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.csv.") and "lock" not in p.name]
