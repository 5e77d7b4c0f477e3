"""Board configuration: ``config.json`` over the board profile ``board.json``, validated.

A bad or missing value never stops the board: it is replaced by its safe default and reported in
``Config.errors`` (the self-test and the status message show them). Only values the board cannot
guess (its device id, where to send) are fatal (:func:`fatal`).

``Config`` has no methods on purpose: once loaded, the board drops this module from
``sys.modules`` and the ~10 KB of its code go back to the heap (``sensorboard.forget``).
"""

import json

from shared import protocol

TRANSPORTS = ("mqtt", "coap", "none")
SENSOR_KINDS = ("ds18b20", "rp2040", "sim")

# name: (types, default, low, high). Units are in the names; ``None`` bounds are unchecked.
_NUM = (int, float)
_FIELDS = {  # type: dict[str, tuple]
    "device_id": (str, "", None, None),
    "transport": (str, "mqtt", None, None),
    "mqtt_host": (str, "", None, None),
    "mqtt_port": (int, 1883, 1, 65535),
    "mqtt_username": (str, "", None, None),
    "mqtt_password": (str, "", None, None),
    "mqtt_keepalive_s": (int, 60, 0, 65535),
    "coap_host": (str, "", None, None),
    "coap_port": (int, 5683, 1, 65535),
    "coap_token": (str, "", None, None),
    "coap_ack_timeout_s": (_NUM, 2.0, 0.05, 60),
    "coap_max_retransmit": (int, 4, 0, 8),
    "wifi_ssid": (str, "", None, None),
    "wifi_password": (str, "", None, None),
    "wifi_attempts": (int, 6, 1, 100),
    "ntp_host": (str, "pool.ntp.org", None, None),
    "ntp_port": (int, 123, 1, 65535),
    "ntp_resync_s": (int, 3600, 10, 604800),
    "sample_period_s": (_NUM, 10, 0.001, 86400),
    "ring_records": (int, 64, 4, 1024),
    "flush_records": (int, 32, 1, 1024),
    "flush_interval_s": (_NUM, 60, 0, 86400),
    "batch_records": (int, 40, 1, 200),
    "segment_records": (int, 256, 8, 65535),
    "max_segments": (int, 16, 2, 10000),
    "ack_timeout_s": (_NUM, 30, 0.05, 3600),
    "retry_max_s": (_NUM, 60, 0.05, 3600),
    "socket_timeout_s": (_NUM, 5, 0.05, 60),
    "watchdog_s": (int, 30, 0, 3600),
    "deep_sleep_s": (int, 0, 0, 86400),
    "onewire_pin": (int, -1, -1, 64),
    "status_led_pin": (int, -1, -1, 64),
    "board": (str, "unix", None, None),
    "sensors": (list, None, None, None),
    "detectors": (dict, None, None, None),
}


class Config:
    """Validated settings as attributes, plus ``errors``: the problems found while loading."""

    # Declared for the type checker (type comments cost nothing on the board); the values are
    # set per instance by _defaults().
    errors = []  # type: list[str]  # noqa: RUF012
    sensors = []  # type: list[dict]  # noqa: RUF012
    detectors = {}  # type: dict  # noqa: RUF012


def _defaults():
    cfg = Config()
    cfg.errors = []
    for name in _FIELDS:
        setattr(cfg, name, _FIELDS[name][1])
    cfg.sensors = []
    cfg.detectors = {}
    return cfg


def fatal(cfg):
    """Problems that keep the board from doing its job (no id, nowhere to send)."""
    problems = []
    if not protocol.valid_id(cfg.device_id):
        problems.append("device_id" + _MISSING)
    if cfg.transport == "mqtt" and not cfg.mqtt_host:
        problems.append("mqtt_host" + _MISSING)
    if cfg.transport == "coap" and not cfg.coap_host:
        problems.append("coap_host" + _MISSING)
    if not cfg.sensors:
        problems.append("sensors" + _MISSING)
    return problems


# Problems are reported as "<where>: <one of these>": few distinct strings, because every string
# in a module stays in the heap (as a qstr) even after the module is unloaded.
_BAD = ": invalid, default used"
_MISSING = ": missing"
_IGNORED = ": invalid, ignored"
_UNKNOWN = ": unknown, ignored"


def _check(name, value, errors):
    types, default, low, high = _FIELDS[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, types)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        errors.append(name + _BAD)
        return default
    return value


def _sensor(where, raw, errors):
    if (
        not isinstance(raw, dict)
        or not protocol.valid_id(raw.get("id"))
        or raw.get("kind") not in SENSOR_KINDS
    ):
        errors.append(where + _IGNORED)
        return None
    return raw


def from_dict(raw, board=None):
    """A :class:`Config` from parsed JSON; ``board`` (the profile) supplies pins and defaults."""
    cfg = _defaults()
    merged = {}
    if isinstance(board, dict):
        for key in board:
            if key in _FIELDS:  # a profile also describes the board for people: not settings
                merged[key] = board[key]
    if isinstance(raw, dict):
        for key in raw:
            merged[key] = raw[key]
            if key not in _FIELDS:
                cfg.errors.append(key + _UNKNOWN)
    elif raw is not None:
        cfg.errors.append("config.json" + _BAD)
    for key in merged:
        if key in _FIELDS and key != "sensors":
            setattr(cfg, key, _check(key, merged[key], cfg.errors))
    if cfg.detectors is None:
        cfg.detectors = {}
    if cfg.transport not in TRANSPORTS:
        cfg.errors.append("transport" + _BAD)
        cfg.transport = "mqtt"
    if cfg.flush_records > cfg.ring_records:
        cfg.errors.append("flush_records" + _BAD)
        cfg.flush_records = cfg.ring_records
    sensors = merged.get("sensors")
    if sensors is None:
        sensors = [{"id": "t1", "kind": "ds18b20"}]
    if not isinstance(sensors, list):
        cfg.errors.append("sensors" + _IGNORED)
        sensors = []
    seen = []  # type: list[str]
    for i in range(len(sensors)):
        where = "sensors[" + str(i) + "]"
        item = _sensor(where, sensors[i], cfg.errors)
        if item is None:
            continue
        if item["id"] in seen or len(seen) == 255:  # a record stores the index in one byte
            cfg.errors.append(where + _IGNORED)
            continue
        seen.append(item["id"])
        cfg.sensors.append(item)
    return cfg


def _read_json(path, errors):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None
    except ValueError:
        errors.append(path + _BAD)
        return None


def load(root=""):
    """Load ``board.json`` and ``config.json`` from the board's filesystem root."""
    prefix = root + "/" if root else ""
    errors = []  # type: list[str]
    board = _read_json(prefix + "board.json", errors)
    raw = _read_json(prefix + "config.json", errors)
    if raw is None and not errors:
        errors.append("config.json" + _MISSING)
    cfg = from_dict(raw, board)
    cfg.errors = errors + cfg.errors
    return cfg
