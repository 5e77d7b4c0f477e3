"""Tiny shims so the same source runs on MicroPython and CPython."""

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


try:
    import ujson as json
except ImportError:
    import json  # noqa: F401

NAN = float("nan")


def isnan(value):
    """True for NaN; works where ``math.isnan`` is missing (some MicroPython builds)."""
    return value != value
