"""``moesim dashboard``: the live what-if app (Dash) on this machine's loopback interface."""

from __future__ import annotations

import socket

import typer

from moesim.simulator.cli import app, console, fail


@app.command()
def dashboard(port: int = typer.Option(8050, "--port", help="TCP port on 127.0.0.1."),
              preset: str = typer.Option("deepseek-v2-lite-h800", "--preset", "-p",
                                         help="Preset shown first (any preset can be picked in the app).")) -> None:
    """Serve a live what-if app: pick preset, schedule, pp, ep, micro-batches, dispatch dtype, NIC bandwidth."""
    try:
        from moesim.simulator.report.dashboard import create_app
    except ImportError as err:
        fail(f"the dashboard needs Dash ({err.name} is missing): pip install 'moesim[dashboard]'")
    from moesim.workloads.presets import preset_names

    if preset not in preset_names():
        fail(f"--preset {preset!r} unknown; known: {', '.join(preset_names())}")
    if not 1 <= port <= 65535:
        fail(f"--port {port}: give a port between 1 and 65535")
    try:  # Flask would print a paragraph and exit 1 on a taken port; say it in one line instead
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
    except OSError as err:
        fail(f"--port {port}: {err.strerror or err}; pick another port with --port")
    console.print(f"moesim dashboard on http://127.0.0.1:{port}/  (Ctrl+C stops it)", highlight=False)
    create_app(preset).run(host="127.0.0.1", port=port, debug=False)
