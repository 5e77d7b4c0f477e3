"""``thermowatch demo``: the whole system on one machine with simulated probes."""

from __future__ import annotations


def demo() -> None:
    """Start a broker, the collector and a simulated edge agent."""
