"""Thermowatch sensor-board firmware (MicroPython): sample probes, detect, spool, deliver.

Data flow, one module each: ``sensors`` -> shared detectors -> ``records`` (RAM ring) -> ``spool``
(flash) -> ``transport`` (MQTT or CoAP) -> collector ack -> spool deletes. ``app`` runs the loop.
"""

VERSION = "0.1.0"


def forget(name):
    """Drop a start-up-only module so its code can be collected (a 64 KB heap needs it back)."""
    import sys

    sys.modules.pop(name, None)
    parent, _, child = name.rpartition(".")
    package = sys.modules.get(parent)
    if package is not None:
        try:
            delattr(package, child)
        except (AttributeError, KeyError):
            pass
