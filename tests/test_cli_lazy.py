"""The command line imports only what a command uses: the sub-command map is complete, and `moesim simulate`
loads neither networkx, plotly nor the planner; numpy's BLAS starts no threads of its own."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import moesim.simulator.commands as package
from moesim.simulator.cli import COMMAND_MODULES, app


def test_every_sub_command_is_in_the_map_of_lazy_modules():
    for module in sorted(m.name for m in pkgutil.iter_modules(package.__path__)):
        importlib.import_module(f"moesim.simulator.commands.{module}")
    registered = {(c.name or c.callback.__name__, c.callback.__module__.rpartition(".")[2])
                  for c in app.registered_commands if c.callback.__module__ != "moesim.simulator.cli"}
    groups = {g.name for g in app.registered_groups} - {"presets"}
    assert {name: module for name, module in registered} == {k: v for k, v in COMMAND_MODULES.items()
                                                             if k not in groups}
    assert groups <= set(COMMAND_MODULES)
    for name in groups:  # a group's module is the one that adds it
        group = next(g for g in app.registered_groups if g.name == name)
        command = group.typer_instance.registered_commands[0]
        assert command.callback.__module__ == f"moesim.simulator.commands.{COMMAND_MODULES[name]}"


def test_simulate_imports_neither_networkx_plotly_nor_the_planner():
    code = ("import sys; from moesim.simulator.cli import main; sys.argv = ['moesim', 'simulate', '--json']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('networkx', 'plotly', 'moesim.simulator.planner', 'moesim.simulator.commands.sweep') "
            "if m in sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts the process's threads in Linux's /proc")
def test_numpy_blas_starts_no_threads_unless_the_user_asks():
    """numpy's OpenBLAS starts a thread per core as numpy loads (they spin: CPU time on every command); the command
    line keeps it to the main thread, and an OPENBLAS_NUM_THREADS the user set wins."""
    code = ("import os; import moesim.simulator.cli; import numpy; "
            "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert proc.stdout.split() == ["1", "1"], proc.stderr
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**env, "OPENBLAS_NUM_THREADS": "2"})
    assert proc.stdout.split()[0] == "2", proc.stderr


def test_the_command_freezes_what_its_imports_made_and_main_in_process_leaves_the_collector_alone():
    """The `moesim` command (``entry_point``) moves what its imports made out of the collector's generations (a full
    collection walked it again, ~25 ms of `moesim simulate`); ``main`` called in-process leaves the collector as
    it found it."""
    code = ("import gc, sys; from moesim.simulator import cli; sys.argv = ['moesim', '--version']\n"
            "try:\n    cli.{entry}()\nexcept SystemExit as exit:\n"
            "    print(exit.code, gc.get_freeze_count() > 0, gc.isenabled())")
    for entry, frozen in (("main", "False"), ("entry_point", "True")):
        proc = subprocess.run([sys.executable, "-c", code.format(entry=entry)], capture_output=True, text=True,
                              timeout=60)
        assert proc.stdout.split()[-3:] == ["0", frozen, "True"], (entry, proc.stdout, proc.stderr)


def test_help_lists_every_command():
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in [*COMMAND_MODULES, "simulate", "presets"]:
        assert f" {name} " in result.output
