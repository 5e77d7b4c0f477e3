"""Loading the JSON test vectors and comparing results to them (CPython side of the tests)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

VECTORS = Path(__file__).resolve().parent / "vectors"

# The unix port computes in double precision like CPython; 1e-9 leaves room for the different
# order of operations in the vectorised code and for MicroPython's shorter float repr in JSON.
TOLERANCE = 1e-9


def load(name: str) -> dict[str, Any]:
    """A vector file by name (``"threshold"``, ``"ewma"``, ``"protocol"``)."""
    doc: dict[str, Any] = json.loads((VECTORS / f"{name}.json").read_text())
    return doc


def case_ids(doc: dict[str, Any]) -> list[str]:
    return [case["name"] for case in doc["cases"]]


def mismatches(actual: Any, expected: Any, where: str = "") -> list[str]:
    """Where ``actual`` differs from ``expected``: floats to ``TOLERANCE``, all else exactly."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return [] if actual is expected else [f"{where}: {actual!r} != {expected!r}"]
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if math.isclose(actual, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            return []
        return [f"{where}: {actual!r} != {expected!r}"]
    if isinstance(expected, dict) and isinstance(actual, dict):
        if sorted(actual) != sorted(expected):
            return [f"{where}: keys {sorted(actual)} != {sorted(expected)}"]
        found_in: list[str] = []
        for key in expected:
            found_in += mismatches(actual[key], expected[key], f"{where}.{key}")
        return found_in
    if isinstance(expected, list) and isinstance(actual, list):
        if len(actual) != len(expected):
            return [f"{where}: length {len(actual)} != {len(expected)}"]
        found: list[str] = []
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            found += mismatches(a, e, f"{where}[{i}]")
        return found
    return (
        []
        if actual == expected and type(actual) is type(expected)
        else [f"{where}: {actual!r} != {expected!r}"]
    )


def assert_matches(actual: Any, expected: Any, what: str) -> None:
    found = mismatches(actual, expected)
    assert not found, f"{what}:\n" + "\n".join(found[:20])
