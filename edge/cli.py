"""``thermowatch edge ...``: run the gateway agent and inspect it."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
