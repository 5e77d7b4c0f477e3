"""Config pushed by the collector (retained on ``tw/v1/<dev>/config``), applied to the running
board and kept on flash in ``pushed.json`` so that a reboot starts with it.

The collector sends ``{"v":1,"sample_period_s":30,"sensors":{"t1":{"high_c":8.0,...}}}``. Each
value is checked like ``config.json``: a bad one keeps the current value and is reported
(``TW pushed <where>: <why>``, counted in ``Board.push_errors``), the rest is applied. Threshold
detectors are re-created with the new limits and given their old state, so an alert in progress
is neither lost nor raised twice.

``pushed.json`` holds every pushed value in effect. It is rewritten only when that changes: the
broker hands the retained message over again at every (re)connect, and flash wears with writes.
Loaded only when a push arrives (and at start-up) and unloaded again, like ``config``.
"""

import json

_FILE = "pushed.json"
# name: (low, high); the collector's own bounds. Only numbers (not bools) are accepted.
_SENSOR_FIELDS = {
    "high_c": (-200, 1000),
    "low_c": (-200, 1000),
    "hysteresis_c": (0, 100),
    "min_duration_s": (0, 86400),
}
_PERIOD = "sample_period_s"
# Few distinct strings, as in config.py: each one stays in the heap for good.
_BAD = ": invalid, ignored"
_UNKNOWN = ": unknown, ignored"


def _number(value, low, high):
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and low <= value <= high
        and value == value  # NaN
    )


def _path(root):
    return root + "/" + _FILE if root else _FILE


def _read(root):
    try:
        with open(_path(root)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def _report(board, where, why):
    board.push_errors += 1
    print("TW pushed", where + why)


def _check(board, doc):
    """The valid part of ``doc`` as ``(period or None, {sensor id: {field: value}})``."""
    if not isinstance(doc, dict) or doc.get("v") != 1:
        _report(board, "config", _BAD)
        return None, {}
    period = None
    limits = {}  # type: dict[str, dict]
    for key in doc:
        value = doc[key]
        if key == _PERIOD:
            if _number(value, 0.001, 86400):
                period = value
            elif value is not None:
                _report(board, key, _BAD)
        elif key == "sensors":
            if isinstance(value, dict):
                _check_sensors(board, value, limits)
            else:
                _report(board, key, _BAD)
        elif key != "v":
            _report(board, key, _UNKNOWN)
    return period, limits


def _check_sensors(board, sensors, limits):
    for sensor_id in sensors:
        item = sensors[sensor_id]
        where = "sensors." + str(sensor_id)
        if sensor_id not in board.sensor_ids:
            _report(board, where, _UNKNOWN)
            continue
        if not isinstance(item, dict):
            _report(board, where, _BAD)
            continue
        accepted = {}
        for key in item:
            value = item[key]
            bounds = _SENSOR_FIELDS.get(key)
            if value is None:
                continue  # not set: the collector leaves such fields out anyway
            if bounds is None:
                # A board samples all its probes together: only the device's period applies.
                _report(board, where + "." + key, _UNKNOWN)
            elif _number(value, bounds[0], bounds[1]):
                accepted[key] = value
            else:
                _report(board, where + "." + key, _BAD)
        if accepted:
            limits[sensor_id] = accepted


def _threshold(board, index, changes):
    """Re-create the sensor's threshold detector with ``changes``; False if they do not fit."""
    from shared.detectors.threshold import ThresholdDetector

    pair = board.detectors[index]
    old = pair[0] if pair is not None else None
    params = {"hysteresis_c": 0.5, "min_duration_s": 60}
    if old is not None:
        params = {
            "high_c": old.high_c,
            "low_c": old.low_c,
            "hysteresis_c": old.hysteresis_c,
            "min_duration_s": old.min_duration_s,
        }
        if old.clear_duration_s != old.min_duration_s:  # set on its own in config.json
            params["clear_duration_s"] = old.clear_duration_s
    before = params.copy()
    for key in changes:
        params[key] = changes[key]
    if params == before:
        return True
    try:
        new = ThresholdDetector(**params)
    except ValueError as exc:
        _report(board, "sensors." + board.sensor_ids[index], ": " + str(exc))
        return False
    if old is not None:
        new.set_state(old.get_state())
        new.last_limit_c = old.last_limit_c
    board.detectors[index] = (new, pair[1] if pair is not None else None)
    return True


def _apply(board, period, limits):
    """Apply checked values; returns the ones that took effect, in the shape of a push."""
    import time

    applied = {}
    if period is not None:
        board.period_ms = int(period * 1000)
        soonest = time.ticks_add(time.ticks_ms(), board.period_ms)
        if time.ticks_diff(board.next_sample, soonest) > 0:  # a shorter period starts now
            board.next_sample = soonest
        applied[_PERIOD] = period
    sensors = {}
    for sensor_id in limits:
        if _threshold(board, board.sensor_ids.index(sensor_id), limits[sensor_id]):
            sensors[sensor_id] = limits[sensor_id]
    if sensors:
        applied["sensors"] = sensors
    return applied


def load(board, root):
    """At start-up: apply what ``pushed.json`` holds (nothing is written)."""
    saved = _read(root)
    if saved:
        period, limits = _check(board, saved)
        _apply(board, period, limits)
        print("TW pushed loaded")


def take(board, root, payload):
    """Apply one pushed message; write ``pushed.json`` only if the values in effect changed.
    An empty message (the collector cleared the retained config) changes nothing."""
    if not payload:
        return
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = None
    period, limits = _check(board, doc)
    applied = _apply(board, period, limits)
    if not applied:
        return  # nothing valid in it: flash stays as it is
    saved = _read(root)
    merged = {"v": 1}  # type: dict
    for key in saved:
        merged[key] = saved[key]
    if _PERIOD in applied:
        merged[_PERIOD] = applied[_PERIOD]
    old = merged.get("sensors")
    sensors = old.copy() if isinstance(old, dict) else {}
    changes = applied.get("sensors") or {}
    for sensor_id in changes:
        entry = sensors.get(sensor_id)
        entry = entry.copy() if isinstance(entry, dict) else {}
        for key in changes[sensor_id]:
            entry[key] = changes[sensor_id][key]
        sensors[sensor_id] = entry
    if sensors:
        merged["sensors"] = sensors
    # Compared after a round trip through the text, so a float printed with fewer digits cannot
    # make every reconnect look like a change.
    text = json.dumps(merged)
    if json.loads(text) == saved:
        print("TW pushed unchanged")
        return
    try:
        with open(_path(root) + ".tmp", "w") as f:
            f.write(text)
        import os

        os.rename(_path(root) + ".tmp", _path(root))
        board.push_writes += 1
        print("TW pushed saved")
    except OSError as exc:
        _report(board, _FILE, ": " + repr(exc))
