"""Deterministic protocol v1 batches for tests: what a fleet of devices would send."""

from __future__ import annotations

import time

from shared.protocol import encode_batch


def make_batches(
    device_id: str,
    *,
    readings: int,
    per_batch: int = 500,
    sensors: int = 4,
    t0: int | None = None,
    seq0: int = 0,
) -> list[bytes]:
    """``readings`` readings in batches of ``per_batch``; one per sensor per second, no repeats."""
    t0 = t0 if t0 is not None else int(time.time()) - readings // sensors - 60
    out: list[bytes] = []
    for start in range(0, readings, per_batch):
        rows = []
        for i in range(start, min(start + per_batch, readings)):
            second, sensor = divmod(i, sensors)
            rows.append((f"s{sensor}", second * 1000, 20.0 + (i % 97) / 16, 0))
        out.append(encode_batch(device_id, seq0 + len(out), "b0", t0, rows))
    return out
