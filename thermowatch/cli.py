"""``thermowatch`` command line: sub-commands come from the package that owns them."""

from __future__ import annotations

import typer

from collector.cli import app as collector_app
from edge.cli import app as edge_app
from thermowatch.demo import demo
from thermowatch.firmware_cli import app as firmware_app
from thermowatch.replay import replay

app = typer.Typer(
    help="Thermowatch: temperature monitoring from probe to alert.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(collector_app, name="collector", help="The cloud service: ingest, storage, API.")
app.add_typer(edge_app, name="edge", help="The gateway agent for a Raspberry Pi.")
app.add_typer(firmware_app, name="firmware", help="Build, flash and check sensor boards.")
app.command("demo", help="Run the whole system locally with simulated probes.")(demo)
app.command("replay", help="Run detectors over a recorded series and print what they raise.")(
    replay
)

if __name__ == "__main__":
    app()
