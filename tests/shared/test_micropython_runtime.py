"""The shared code gives the same results under the real MicroPython unix port as on CPython."""

from __future__ import annotations

import json
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.shared.run_vectors import run_document
from tests.shared.vector_check import VECTORS, assert_matches, load
from tests.support.micropython import REPO, run_script, run_snippet

RUNNER = Path(__file__).resolve().parent / "run_vectors.py"

# Everything in shared/ that the boards import (decode.py and vectorized.py are CPython only).
MICROPYTHON_MODULES = [
    "shared/__init__.py",
    "shared/compat.py",
    "shared/protocol.py",
    "shared/detectors/__init__.py",
    "shared/detectors/threshold.py",
    "shared/detectors/ewma.py",
]


def _on_micropython(micropython_bin: str, vector_file: Path, heap_size: str | None = None) -> Any:
    return json.loads(
        run_script(micropython_bin, RUNNER, args=[str(vector_file)], heap_size=heap_size)
    )


@pytest.mark.parametrize("name", ["threshold", "ewma"])
def test_detector_vectors_give_the_same_results_on_both_runtimes(
    micropython_bin: str, name: str
) -> None:
    doc = load(name)
    on_mp = _on_micropython(micropython_bin, VECTORS / f"{name}.json")
    on_cpython = run_document(doc)
    assert len(on_mp) == len(doc["cases"])
    for case, mp, cp in zip(doc["cases"], on_mp, on_cpython, strict=True):
        what = f"{name}/{case['name']} on MicroPython"
        if name == "threshold":
            assert_matches(mp["events"], case["expected_events"], what)
            assert_matches(mp["state"], case["expected_state"], what + " state")
            assert mp["restored"] == case.get("expected_restored")
            expected_each_split = case["expected_events"]
        else:
            assert_matches(mp["outputs"], case["expected"], what)
            assert_matches(mp["state"], case["expected_state"], what + " state")
            expected_each_split = case["expected"]
        for split, out in enumerate(mp["splits"], start=1):
            assert_matches(out, expected_each_split, f"{what}, restored after sample {split}")
        assert_matches(mp, cp, what + " against CPython")


def test_protocol_golden_vectors_give_the_same_bytes_on_micropython(micropython_bin: str) -> None:
    doc = load("protocol")
    on_mp = _on_micropython(micropython_bin, VECTORS / "protocol.json")
    for case, got in zip(doc["cases"], on_mp, strict=True):
        assert got == case["expected"], case["name"]


def test_every_sixteenth_degree_formats_the_same_on_both_runtimes(
    micropython_bin: str, tmp_path: Path
) -> None:
    # Every DS18B20 step from -55 to +125 °C; the expected text comes from exact decimals.
    steps = range(-55 * 16, 125 * 16 + 1)
    cases = []
    for k in steps:
        exact = Decimal(k) / 16
        text = format(exact.quantize(Decimal("0.0001")).normalize(), "f")
        wanted = text if "." in text else text + ".0"
        cases.append({"name": str(k), "fn": "format_celsius", "args": [k / 16], "expected": wanted})
    doc = {"suite": "protocol", "cases": cases}
    path = tmp_path / "sixteenths.json"
    path.write_text(json.dumps(doc))
    expected = [c["expected"] for c in cases]
    assert run_document(doc) == expected
    # The whole sweep is parsed and answered at once: more heap than the port's default.
    assert _on_micropython(micropython_bin, path, heap_size="16m") == expected


@pytest.mark.parametrize("module", MICROPYTHON_MODULES)
def test_shared_module_compiles_with_mpy_cross(
    mpy_cross_bin: str, module: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.mpy"
    proc = subprocess.run(
        [mpy_cross_bin, "-o", str(out), str(REPO / module)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


def test_detectors_do_not_grow_the_heap_per_sample(micropython_bin: str) -> None:
    # A board-sized heap; after a warm-up, 5000 samples through both detectors must leave the
    # heap as it was (floats are freed by the collector; nothing accumulates).
    code = """
import gc
from shared.detectors.threshold import ThresholdDetector
from shared.detectors.ewma import EwmaDetector
th = ThresholdDetector(high_c=30.0, low_c=5.0, hysteresis_c=0.5, min_duration_s=30)
ew = EwmaDetector()
vals = [20.0, 20.0625, 31.0, 31.5, 31.0, 31.5, 31.0, 20.0, 4.0, None, 4.0, 4.0, 4.0, 4.5]
events = 0
for i in range(100):
    v = vals[i % 14]; th.update(i * 10, v); ew.update(v)
gc.collect()
before = gc.mem_alloc()
for i in range(100, 5100):
    v = vals[i % 14]
    if th.update(i * 10, v) is not None:
        events += 1
    ew.update(v)
gc.collect()
print(gc.mem_alloc() - before, events)
"""
    grown, events = run_snippet(micropython_bin, code, heap_size="48k").split()
    assert int(events) > 0  # the loop really exercised state changes
    assert int(grown) < 256
