"""Detectors that turn a sensor's readings into events, on the boards, the edge and in replay.

``threshold`` (limits with hysteresis and a minimum duration) and ``ewma`` (z-score against an
exponentially weighted mean and variance) run on MicroPython and CPython; ``vectorized`` holds
numpy versions of both for long series (CPython only). See docs/detectors.md.
"""
