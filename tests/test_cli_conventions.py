"""Command-line conventions: --version, shell completion, -q/-v on every command that shows progress, option help
that names only options its command has, and tables that fit 80 columns without cutting a number."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from rich.console import Console
from rich.table import Table

from moesim.simulator.cli import app
from moesim.simulator.commands.tables import fit_width, min_width
from tests.test_fuzz_cli import run_cli

REPO = Path(__file__).resolve().parent.parent
# The commands that show progress while they work (a bar on a terminal); each takes -q and -v.
PROGRESS_COMMANDS = (("simulate",), ("compare",), ("validate",), ("plan",), ("sweep",), ("calibrate", "run"))


def moesim(*args: str, columns: int = 80, **env) -> subprocess.CompletedProcess:
    """``moesim ARGS`` in a subprocess as a user's terminal of ``columns`` would run it (not a TTY)."""
    environ = dict(os.environ, COLUMNS=str(columns), PYTHONPATH=str(REPO), TERM="dumb", **env)
    environ.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "moesim.simulator.cli", *args], capture_output=True, text=True,
                          env=environ, timeout=300, cwd=REPO)


def click_command(path: tuple[str, ...]) -> click.Command:
    group = typer.main.get_command(app)
    ctx = click.Context(group)
    command = group
    for name in path:
        command = command.get_command(ctx, name)
    return command


def every_command() -> list[tuple[tuple[str, ...], click.Command]]:
    found = []

    def walk(path, command):
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                walk((*path, name), command.get_command(ctx, name))
        else:
            found.append((path, command))

    walk((), typer.main.get_command(app))
    return found


def test_version_prints_the_package_version():
    from importlib.metadata import version

    code, out, err = run_cli(["--version"])
    assert code == 0 and out == f"moesim {version('moesim')}\n", (out, err)


def test_shell_completion_is_on_and_completes_command_names():
    proc = moesim(_MOESIM_COMPLETE="complete_bash", COMP_WORDS="moesim sim", COMP_CWORD="1")
    assert proc.returncode == 0 and proc.stdout.split() == ["simulate"], (proc.stdout, proc.stderr)
    code, out, _ = run_cli(["--help"])
    assert "--install-completion" in out and "--show-completion" in out


@pytest.mark.parametrize("path", PROGRESS_COMMANDS, ids=" ".join)
def test_every_progress_command_takes_quiet_and_verbose(path):
    options = {opt for p in click_command(path).params for opt in p.opts}
    assert {"-q", "--quiet", "-v", "--verbose"} <= options


def test_quiet_and_verbose_together_are_refused():
    code, _, err = run_cli(["validate", "-q", "-v"])
    assert code == 2 and err.startswith("error: -q and -v"), err


def test_verbose_prints_a_line_per_finished_item_and_quiet_none():
    runs = ["--only", "llama2-7b-nemo-24.07", "--only", "llama3-8b-nemo-24.07"]
    loud = moesim("validate", *runs, "-v")
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["published runs 1/2: llama3-8b-nemo-24.07",
                                                       "published runs 2/2: llama2-7b-nemo-24.07"]
    quiet = moesim("validate", *runs, "-q")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == loud.stdout


def test_option_help_names_only_options_of_its_own_command():
    """An option's help that mentions --other names an option this command has (or another command, as
    `moesim simulate --json`)."""
    wrong = []
    for path, command in every_command():
        options = {opt for p in command.params for opt in p.opts}
        for param in command.params:
            text = re.sub(r"moesim [a-z -]+--[a-z-]+(?: --[a-z-]+)*", "", getattr(param, "help", None) or "")
            wrong += [f"moesim {' '.join(path)} {param.opts[0]}: help names {flag}"
                      for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", text) if flag not in options]
    assert not wrong, "\n".join(wrong)


def test_a_ten_column_table_fits_80_columns_without_cutting_a_number():
    table = Table(title="per pipeline stage")
    headers = ("stage", "forward", "bwd input", "bwd weight", "exposed comm", "host bound", "bubble", "optimizer",
               "in flight", "memory")
    for header in headers:
        table.add_column(header, justify="right")
    cells = ("15", "4.370", "6.813", "4.218", "0.965", "0.002", "1.666", "0.0020", "17", "50.2")
    table.add_row(*cells)
    assert min_width(table) > 80  # rich's default borders and padding do not fit: it would cut cells to "…"
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(fit_width(table, 80))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    row = text.splitlines()[-1].split()
    assert row == list(cells)
    for word in "stage forward input weight exposed comm host bound bubble optimizer flight memory".split():
        assert word in text  # headers wrap at their spaces, whole


@pytest.mark.parametrize("args", [["simulate"], ["validate"], ["calibrate", "show", "h800"],
                                  ["compare", "deepseek-v2-lite-h800", "mixtral-8x7b-h100"]], ids=" ".join)
def test_command_tables_at_80_columns_cut_no_number(args):
    proc = moesim(*args)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    cut = [line for line in lines if re.search(r"[\d.%]…", line) and "sha256" not in line]  # a digest is cut on purpose
    assert not cut, "\n".join(cut)
