"""``moesim schema``: the scenario's JSON Schema (for editors' YAML language server) or its Markdown field reference."""

from __future__ import annotations

from typing import Optional

import typer

from moesim.simulator.cli import INPUT_ERRORS, app, console, fail


@app.command()
def schema(output: Optional[str] = typer.Option(None, "--output", "-o", help="Write to this file instead of "
                                                "printing (e.g. scenario.schema.json)."),
           reference: bool = typer.Option(False, "--reference", help="The Markdown field reference "
                                          "(docs/scenario-reference.md) instead of the JSON Schema."),
           force: bool = typer.Option(False, "--force", help="Overwrite an existing --output file.")) -> None:
    """Print the scenario's JSON Schema (every field with its unit and an example), or write it with -o."""
    from moesim.workloads.files import write_atomic
    from moesim.workloads.schema import reference_markdown, schema_text

    text = reference_markdown() if reference else schema_text()
    if output is None:
        print(text, end="")
        return
    try:
        write_atomic(output, text, force=force, flag="--output")
    except INPUT_ERRORS as err:
        fail(str(err))
    except OSError as err:
        fail(f"--output {output}: {err.strerror or err}")
    console.print(f"wrote {output}", highlight=False)
