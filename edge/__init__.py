"""The Thermowatch edge gateway agent (Raspberry Pi, CPython): see docs/edge.md."""
