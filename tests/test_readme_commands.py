"""README.md as a contract: every `$ moesim ...` command it prints runs, from a scratch folder, and prints what
the README shows (tests/readme_commands.py says how lines compare). The slow commands (readme_commands.SLOW) run
in the benchmark suite: `python tests/benchmarks/bench_readme_commands.py` (all of them, with the count)."""

from __future__ import annotations

import re

from tests.readme_commands import SLOW, compare, readme_commands, report, run_all


def test_every_fast_readme_command_prints_what_the_readme_shows():
    commands = readme_commands()
    outcomes = run_all(commands, include_slow=False)
    summary = report(outcomes, skipped=len(commands) - len(outcomes))
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
