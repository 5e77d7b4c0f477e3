"""``thermowatch replay``: run the detectors over a recorded series."""

from __future__ import annotations


def replay() -> None:
    """Replay a series through the detectors and print the events they raise."""
