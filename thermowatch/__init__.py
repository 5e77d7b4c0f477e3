"""The ``thermowatch`` command: one entry point for the collector, the edge agent and the tools."""

__version__ = "0.1.0"
