"""Runs a test-vector file through the shared code and prints the results as one JSON document.

The same file runs under CPython and under the MicroPython unix port (``micropython
run_vectors.py FILE``), so both runtimes are held to the same expected outputs. It only reports
what the code returned; the tests compare. Non-finite floats travel as the strings "nan", "inf"
and "-inf", which JSON cannot hold otherwise.
"""

import json
import sys

from shared import protocol
from shared.detectors.ewma import EwmaDetector
from shared.detectors.threshold import ThresholdDetector

_INF = float("inf")


def decode_value(v):
    """A vector's value: the strings "nan", "inf", "-inf" become floats."""
    if v == "nan":
        return float("nan")
    if v == "inf":
        return _INF
    if v == "-inf":
        return -_INF
    return v


def encode_value(v):
    """A result for JSON: non-finite floats become strings, bytes and tuples plain text/lists."""
    if isinstance(v, float):
        if v != v:
            return "nan"
        if v == _INF:
            return "inf"
        if v == -_INF:
            return "-inf"
        return v
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, (list, tuple)):
        return [encode_value(x) for x in v]
    return v


def _roundtrip(state):
    # What the edge agent and the boards do: write the state as JSON, read it back later.
    return json.loads(json.dumps(state))


def _threshold_run(case, split):
    """Events of one case; the detector is saved and restored after ``split`` samples."""
    config = case["config"]
    det = ThresholdDetector(**config)
    restored = None
    if "initial_state" in case:
        restored = det.set_state(case["initial_state"])
    events = []
    for i, sample in enumerate(case["samples"]):
        if i == split:
            saved = _roundtrip(det.get_state())
            det = ThresholdDetector(**config)
            det.set_state(saved)
        kind = det.update(sample[0], decode_value(sample[1]))
        if kind is not None:
            events.append([i, kind, det.last_limit_c])
    return events, det.get_state(), restored


def run_threshold(case):
    events, state, restored = _threshold_run(case, -1)
    splits = [_threshold_run(case, k)[0] for k in range(1, len(case["samples"]))]
    return {"events": events, "state": state, "restored": restored, "splits": splits}


def _ewma_run(case, split):
    config = case["config"]
    det = EwmaDetector(**config)
    out = []
    for i, value in enumerate(case["values"]):
        if i == split:
            saved = _roundtrip(det.get_state())
            det = EwmaDetector(**config)
            det.set_state(saved)
        z, anomaly = det.update(decode_value(value))
        out.append([encode_value(z), anomaly])
    return out, det.get_state()


def run_ewma(case):
    outputs, state = _ewma_run(case, -1)
    splits = [_ewma_run(case, k)[0] for k in range(1, len(case["values"]))]
    return {"outputs": outputs, "state": state, "splits": splits}


def run_protocol(case):
    args = [decode_value(a) for a in case["args"]]
    return encode_value(getattr(protocol, case["fn"])(*args))


_RUNNERS = {"threshold": run_threshold, "ewma": run_ewma, "protocol": run_protocol}


def run_document(doc):
    """Results of every case of a parsed vector file, in order."""
    runner = _RUNNERS[doc["suite"]]
    return [runner(case) for case in doc["cases"]]


def main(path):
    with open(path) as f:
        doc = json.load(f)
    print(json.dumps(run_document(doc)))


if __name__ == "__main__":
    main(sys.argv[1])
