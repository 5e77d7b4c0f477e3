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
_FIELDS = {
    "device_id": (str, "", None, None),
    "transport": (str, "mqtt", None, None),
    "mqtt_host": (str, "", None, None),
    "mqtt_port": (int, 1883, 1, 65535),
    "mqtt_username": (str, "", None, None),
    "mqtt_password": (str, "", None, None),
    "mqtt_keepalive_s": (int, 60, 0, 65535),
    "coap_host": (str, "", None, None),
    "coap_port": (int, 5683, 1, 65535),
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
        problems.append("device_id: missing or not a valid id")
    if cfg.transport == "mqtt" and not cfg.mqtt_host:
        problems.append("mqtt_host: required for transport mqtt")
    if cfg.transport == "coap" and not cfg.coap_host:
        problems.append("coap_host: required for transport coap")
    if not cfg.sensors:
        problems.append("sensors: no usable sensor")
    return problems


def _check(name, value, errors):
    types, default, low, high = _FIELDS[name]
    if isinstance(value, bool) or not isinstance(value, types):
        errors.append(name + ": wrong type, using default")
        return default
    if (low is not None and value < low) or (high is not None and value > high):
        errors.append(name + ": out of range " + str(low) + ".." + str(high) + ", using default")
        return default
    return value


def _sensor(index, raw, errors):
    where = "sensors[" + str(index) + "]"
    if not isinstance(raw, dict):
        errors.append(where + ": not an object, ignored")
        return None
    sensor_id = raw.get("id")
    kind = raw.get("kind")
    if not protocol.valid_id(sensor_id):
        errors.append(where + ": id missing or invalid, ignored")
        return None
    if kind not in SENSOR_KINDS:
        errors.append(where + ": unknown kind " + str(kind) + ", ignored")
        return None
    return raw


def from_dict(raw, board=None):
    """A :class:`Config` from parsed JSON; ``board`` (the profile) supplies pins and defaults."""
    cfg = _defaults()
    merged = {}
    for source in (board, raw):
        if isinstance(source, dict):
            for key in source:
                merged[key] = source[key]
        elif source is not None:
            cfg.errors.append("config: not a JSON object")
    for key in merged:
        if key not in _FIELDS:
            if key not in ("name", "port", "mcu", "description", "pins", "mpy_arch"):
                cfg.errors.append(key + ": unknown setting, ignored")
            continue
        if key == "sensors":
            continue
        setattr(cfg, key, _check(key, merged[key], cfg.errors))
    if cfg.detectors is None:
        cfg.detectors = {}
    if cfg.transport not in TRANSPORTS:
        cfg.errors.append("transport: unknown, using mqtt")
        cfg.transport = "mqtt"
    if cfg.flush_records > cfg.ring_records:
        cfg.errors.append("flush_records: larger than ring_records, using ring_records")
        cfg.flush_records = cfg.ring_records
    sensors = merged.get("sensors")
    if sensors is None:
        sensors = [{"id": "t1", "kind": "ds18b20"}]
    if not isinstance(sensors, list):
        cfg.errors.append("sensors: not a list")
        sensors = []
    seen = []
    for i in range(len(sensors)):
        item = _sensor(i, sensors[i], cfg.errors)
        if item is not None and item["id"] in seen:
            cfg.errors.append("sensors[" + str(i) + "]: duplicate id, ignored")
        elif item is not None:
            seen.append(item["id"])
            cfg.sensors.append(item)
    # The record format stores the sensor's position in one byte.
    if len(cfg.sensors) > 255:
        cfg.errors.append("sensors: more than 255, extra ones ignored")
        cfg.sensors = cfg.sensors[:255]
    return cfg


def _read_json(path, errors):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None
    except ValueError:
        errors.append(path + ": not valid JSON")
        return None


def load(root=""):
    """Load ``board.json`` and ``config.json`` from the board's filesystem root."""
    prefix = root + "/" if root else ""
    errors = []
    board = _read_json(prefix + "board.json", errors)
    raw = _read_json(prefix + "config.json", errors)
    if raw is None and not errors:
        errors.append("config.json: missing")
    cfg = from_dict(raw if raw is not None else {}, board)
    cfg.errors = errors + cfg.errors
    return cfg
