"""Hostile protocol v1 batches for property-based tests: valid batches mutated at random (a field
replaced by any JSON or CBOR value, a key deleted, a value nested or repeated)."""

from __future__ import annotations

import copy
import datetime
import os
from collections.abc import Iterator
from typing import Any

import cbor2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def fuzz_settings(max_examples: int) -> Any:
    return settings(
        max_examples=max_examples,
        # The same examples on every run, so the suite's verdict does not depend on luck;
        # explore further with THERMOWATCH_FUZZ_RANDOM=1 (new examples each run).
        derandomize=not os.environ.get("THERMOWATCH_FUZZ_RANDOM"),
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    # The edges of what the database and Python can hold.
    | st.sampled_from([2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**400, -(10**400), 10**4000])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=70)
    | st.sampled_from(["s1", "crc", "anomaly", "threshold_high", "", "\x00"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# Tags cbor2 cannot encode from an arbitrary value (string references, shared values, encoded
# CBOR) are left out: the hand-made payloads in the decoder's tests cover them.
_ENCODABLE_TAGS = st.integers(6, 2**32).filter(lambda t: t not in (24, 25, 28, 29, 256))
CBOR_VALUES = st.recursive(
    SCALARS
    | st.binary(max_size=12)
    | st.datetimes(timezones=st.just(datetime.UTC))
    | st.decimals(allow_nan=False, places=3)
    | st.frozensets(st.integers(-5, 5), max_size=3)
    | st.just(cbor2.undefined)
    | st.builds(cbor2.CBORTag, _ENCODABLE_TAGS, SCALARS),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def valid_batches(draw: st.DrawFn, t0: int) -> dict[str, Any]:
    readings: list[list[Any]] = []
    for i in range(draw(st.integers(0, 12))):
        sensor = draw(st.sampled_from(["s1", "s2", "28-0316a2794b2f"]))
        if draw(st.integers(0, 9)) == 0:
            readings.append([sensor, i * 1000, None, 1, "crc"])
        else:
            value = draw(st.floats(-40, 125))
            readings.append([sensor, i * 1000, value, draw(st.sampled_from([0, 2]))])
    events = [["s1", i * 1000, "anomaly", 25.0, 4.5] for i in range(draw(st.integers(0, 3)))]
    return {"v": 1, "dev": "d1", "seq": 7, "boot": "b1", "t0": t0, "r": readings, "ev": events}


def _slots(node: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    """Every (container, key) of a batch, outermost first."""
    if depth > 4:
        return
    if isinstance(node, dict):
        for key in list(node):
            yield node, key
            yield from _slots(node[key], depth + 1)
    elif isinstance(node, list):
        for index in range(len(node)):
            yield node, index
            yield from _slots(node[index], depth + 1)


@st.composite
def mutated_batches(draw: st.DrawFn, values: st.SearchStrategy[Any], t0: int) -> dict[str, Any]:
    """A valid batch with one to four mutations anywhere in it."""
    batch = draw(valid_batches(t0))
    for _ in range(draw(st.integers(1, 4))):
        slots = list(_slots(batch))
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        operation = draw(st.sampled_from(["replace", "replace", "delete", "nest", "repeat"]))
        if operation == "replace":
            container[key] = draw(values)
        elif operation == "delete":
            del container[key]
        elif operation == "nest":
            container[key] = draw(st.sampled_from([[container[key]], {"x": container[key]}]))
        elif isinstance(container, list):
            container.insert(key, copy.deepcopy(container[key]))
    return batch
