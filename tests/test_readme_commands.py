"""README.md as a contract: every `$ moesim ...` command it prints runs, from a scratch folder, and prints what
the README shows (tests/readme_commands.py says how lines compare). The slow commands (readme_commands.SLOW) run
in the benchmark suite: `python tests/benchmarks/bench_readme_commands.py` (all of them, with the count)."""

from __future__ import annotations

import re

from tests.readme_commands import SHARED, SLOW, compare, readme_commands, report, run_all, runnable


def test_every_fast_readme_command_prints_what_the_readme_shows():
    commands = readme_commands()
    outcomes = run_all(commands, include_slow=False)
    no_shared = sum(not c.slow and not runnable(c, False) for c in commands)
    summary = report(outcomes, slow=sum(c.slow for c in commands), no_shared=no_shared)
    print(summary)  # the count (ran / equal) and every drift, with -s or on failure
    assert all(o.equal for o in outcomes), summary


def test_the_readme_names_no_placeholder():
    commands = readme_commands()
    assert len(commands) >= 80
    for c in commands:
        assert not re.search(r"\.\.\.|<[a-z_-]+>|\bmy-", c.command), f"README.md:{c.line}: {c.text}"
    assert all(any(c.command.startswith(s.rstrip("$")) for c in commands) for s in SLOW)  # no stale entry


def test_comparison_masks_wall_clock_and_catches_a_changed_number():
    shown = ["step time     18.038 s", "...", "simulated in   0.28 s (75,184 engine tasks)"]
    fresh = "name\nstep time        18.038 s\nother\nsimulated in   4.85 s (75,184 engine tasks)\n"
    timings: list[str] = []
    assert compare(shown, fresh, timings) == [] and timings and "0.28 s → 4.85 s" in timings[0]
    drift = compare(shown, fresh.replace("18.038", "18.040"))
    assert len(drift) == 1 and "18.038" in drift[0] and "18.040" in drift[0]
    assert compare(["simulated in 0.28 s (75,184 engine tasks)"], "simulated in 0.3 s (75,185 engine tasks)")


def test_commands_that_read_deepseeks_trace_are_the_ones_skipped_without_it():
    """Without ../shared beside the checkout only the commands that read DeepSeek's trace are left out; with it,
    every fast command runs."""
    needs = {c.command.split(" -o ")[0] for c in readme_commands() if c.needs_shared}
    assert {"moesim trace summarize ../shared/data/deepseek-profile-data/train.json", "moesim calibrate deepep",
            "moesim calibrate validate"} <= needs
    assert not any(c.command == "moesim simulate" or c.command.startswith("moesim sweep") for c in readme_commands()
                   if c.needs_shared)
    assert all(runnable(c, False) == (not c.slow and (SHARED.is_dir() or not c.needs_shared))
               for c in readme_commands())
