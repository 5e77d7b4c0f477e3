"""Probes behind one interface (:class:`base.Sensor`), built by kind from the config.

Hardware drivers are imported only when a sensor of their kind is configured, so the unix port
(no ``machine``, no ``onewire``) runs the simulated probe.
"""
