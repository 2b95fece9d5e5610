"""The command line imports only what a command uses: the sub-command map is complete, and `moesim simulate`
loads neither networkx, plotly nor the planner."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

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


def test_help_lists_every_command():
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in [*COMMAND_MODULES, "simulate", "presets"]:
        assert f" {name} " in result.output
