"""``thermowatch edge ...``: run the gateway agent and inspect it."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file.", exists=True)
]
BundleOption = Annotated[
    Path | None, typer.Option("--bundle", help="Provisioning bundle (JSON).", exists=True)
]


def _settings(config: Path | None, bundle: Path | None, defaults: dict[str, Any]) -> Any:
    # Imported here so that `thermowatch --help` stays quick.
    from edge.config import ConfigError, load_settings

    try:
        return load_settings(config, bundle, defaults)
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    config: ConfigOption = None,
    bundle: BundleOption = None,
    simulate: Annotated[
        int, typer.Option(help="Add N simulated probes sim-0..sim-N-1 (demos and tests).")
    ] = 0,
) -> None:
    """Run the agent until SIGTERM/SIGINT: sample, spool, forward."""
    run_agent(config, bundle, simulate)


def run_agent(config: Path | None, bundle: Path | None, simulate: int) -> None:
    from edge.agent import Agent
    from edge.config import SimulatorConfig
    from edge.journal import setup_logging

    settings = _settings(config, bundle, {"device_id": "edge-sim"} if simulate else {})
    if simulate:
        settings.sensors = settings.sensors + [
            SimulatorConfig.model_validate({"id": f"sim-{i}", "seed": i, "base_c": 18.0 + i})
            for i in range(simulate)
        ]
    setup_logging(settings.log_level)
    agent = Agent(settings)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    agent.run()


@app.command()
def status(
    config: ConfigOption = None,
    bundle: BundleOption = None,
    spool: Annotated[Path | None, typer.Option(help="Spool file (default: from config).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Spool depth, drops, last ack and per-sensor state of the agent."""
    from edge.status import format_status, read_status

    if spool is None:
        spool = _settings(config, bundle, {"device_id": "status"}).spool_path
    try:
        result = read_status(spool)
    except (FileNotFoundError, RuntimeError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(result, indent=2) if as_json else format_status(result))
