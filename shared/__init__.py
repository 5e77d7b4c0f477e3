"""Code that runs on both sides: the wire protocol and the detectors.

Everything in this package except the modules marked "CPython only" must import and run on
MicroPython (the boards run it), so it avoids run-time ``typing``, dataclasses and f-string tricks.
"""
